//! Rendering that can fail: what `workflows validate` refuses, patterns from the
//! payload, display names with commas, quotes and UTF-8.

use super::workflows;
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::Scenario;
use serde_json::json;

const BASE: &str = "name: w\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: \"{{event.email}}\"\n";

/// `workflows validate` does everything rendering would do that can fail
/// without the payload: a bad date pattern, an unknown helper, partials that
/// include each other (which overflowed the stack and aborted the process),
/// a missing partial. Each is reported at its file:line:col, exit 2; and
/// `workflows render` refuses the same directory instead of panicking.
#[test]
fn validate_refuses_what_rendering_would_fail_on() {
    let d = workflows(&[
        (
            "w.yaml",
            &format!(
                "{BASE}  subject: \"{{{{date event.shipped_at \\\"%Q\\\"}}}}\"\n  text: \"{{{{currency event.price \\\"EUR\\\"}}}}\"\n  html_file: templates/body.hbs\n"
            ),
        ),
        ("templates/partials/pa.hbs", "a{{> pb}}"),
        ("templates/partials/pb.hbs", "b{{> pa}}"),
        ("templates/body.hbs", "<p>\n{{> pa}} {{> nope}}</p>"),
    ]);
    let dir = d.path().to_str().unwrap();
    let out = HeraldEnv::default().run(&["workflows", "validate", dir]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let w = d.path().join("w.yaml").display().to_string();
    let body = d.path().join("templates/body.hbs").display().to_string();
    let pb = d
        .path()
        .join("templates/partials/pb.hbs")
        .display()
        .to_string();
    for expected in [
        format!("{w}:6:13: email.subject: date: invalid date pattern \"%Q\""),
        format!("{w}:7:10: email.text: unknown helper \"currency\""),
        format!("{pb}:1:1: partials include each other in a cycle: pa -> pb -> pa"),
        format!("{body}:2:"),
        "unknown partial \"nope\"".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let mut env = HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", dir);
    let out = env.run(&[
        "workflows",
        "render",
        "w",
        "--payload",
        r#"{"email":"a@example.com","shipped_at":"2026-01-01T00:00:00Z","price":1}"#,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pattern that arrives in the payload is checked at render time: an
/// error naming it, not a panic (exit 101).
#[test]
fn a_date_pattern_from_the_payload_is_an_error_not_a_panic() {
    let d = workflows(&[(
        "w.yaml",
        &format!("{BASE}  subject: \"{{{{date event.at event.pattern}}}}\"\n  text: t\n"),
    )]);
    let mut env = HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", d.path().to_str().unwrap());
    let out = env.run(&[
        "workflows",
        "render",
        "w",
        "--payload",
        r#"{"email":"a@example.com","at":"2026-01-01T00:00:00Z","pattern":"%Q"}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid date pattern \"%Q\""), "{err}");
}

const PEOPLE: &str = r#"
name: people
on: { subjects: ["events.people.>"] }
email:
  from: "Club \"Tigers\" <noreply@club.example>"
  to: "{{event.name}} <{{event.email}}>"
  cc: "{{event.cc}}"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
"#;

/// Display names as RFC 5322 has them: a comma or quotes in a name stay in
/// the name (it used to dead-letter as `invalid address "Lovelace"`), UTF-8
/// becomes an encoded word, and a rendered list with a quoted name holding
/// a comma is two addresses. Compared with golden files.
async fn display_names_with_commas_quotes_and_utf8(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("people.yaml", PEOPLE)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let ada = w
        .emit(
            "events.people.joined",
            json!({"name": "Lovelace, Ada", "email": "ada@example.com",
                   "cc": "\"Doe, J.\" <j@example.org>, k@example.org"}),
        )
        .await;
    let jurgen = w
        .emit(
            "events.people.joined",
            json!({"name": "Jürgen \"Jay\" Müller", "email": "j@xn--mller-kva.example", "cc": ""}),
        )
        .await;
    w.wait_sent(2).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    let got = w.sink.received();
    let find = |to: &str| got.iter().find(|m| m.rcpt_to[0] == to).unwrap().clone();
    let m = find("ada@example.com");
    assert_eq!(
        m.rcpt_to,
        vec!["ada@example.com", "j@example.org", "k@example.org"]
    );
    golden("address.display-name-comma", &normalize(&m.data, &ada));
    let m = find("j@xn--mller-kva.example");
    golden("address.display-name-utf8", &normalize(&m.data, &jurgen));
}

both_backends!(display_names_with_commas_quotes_and_utf8);

/// Template syntax errors are reported where the author wrote the cause,
/// in the YAML file: an unclosed `{{#if}}` at the tag that opens it (the
/// parser stopped at the template's end and listed its grammar rules), an
/// unclosed `{{` in a quoted value, a block closed by another name naming
/// the file line of its opening, and an unquoted `{{` that YAML read as a
/// mapping, with the quoted value to write.
#[test]
fn template_syntax_errors_point_at_their_cause_in_the_file() {
    let d = workflows(&[
        (
            "a.yaml",
            &format!(
                "{BASE}  subject: 'It''s {{{{event.name}}'\n  text: |\n\n    Hello,\n      {{{{#if event.vip}}}}\n    VIP\n"
            ),
        ),
        (
            "b.yaml",
            &format!(
                "{}  subject: hi\n  text: >\n    {{{{#each event.items}}}}\n      {{{{this}}}}\n    {{{{/if}}}}\n",
                BASE.replace("name: w", "name: b")
            ),
        ),
        (
            "d.yaml",
            "name: d\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: hi\n  text: hi\n  headers:\n    X-Good: \"{{event.a}}\"\n    Subject: nope\n    X-Bad: \"{{nope event.a}}\"\n",
        ),
        (
            "c.yaml",
            "name: c\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: {{event.email}}\n",
        ),
    ]);
    let out = HeraldEnv::default().run(&["workflows", "validate", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = |name: &str| d.path().join(name).display().to_string();
    for expected in [
        format!(
            "{}:6:19: email.subject: invalid template: this `{{{{` is never closed with `}}}}`",
            f("a.yaml")
        ),
        format!(
            "{}:10:7: email.text: invalid template: `{{{{#if}}}}` is never closed (no `{{{{/if}}}}` after it)",
            f("a.yaml")
        ),
        format!(
            "{}:10:5: email.text: invalid template: `{{{{/if}}}}` closes `{{{{#each}}}}` opened at line 8, column 5",
            f("b.yaml")
        ),
        // Header problems on the header's own line (they were at `email:`).
        format!(
            "{}:10:5: email.headers: \"Subject\" is not an allowed header name",
            f("d.yaml")
        ),
        format!(
            "{}:11:13: email.headers.X-Bad: unknown helper \"nope\"",
            f("d.yaml")
        ),
        format!(
            "{}:5:7: invalid type: map, expected an address template (\"{{{{event.email}}}}\") or a list of them (a value that begins with {{{{ must be quoted, or YAML reads it as a mapping: write \"{{{{event.email}}}}\")",
            f("c.yaml")
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("expected escape"), "{err}");
}

/// A duplicate key is named without the YAML library's advice about its
/// own options; a backoff whose first wait is longer than its longest is
/// refused (every wait would silently be the longest).
#[test]
fn yaml_and_retry_mistakes_are_named_plainly() {
    let d = workflows(&[
        (
            "dup.yaml",
            &format!("{BASE}  subject: hi\n  subject: again\n  text: hi\n"),
        ),
        (
            "retry.yaml",
            &format!(
                "{}  subject: hi\n  text: hi\nretry:\n  backoff: {{ initial: 10s, max: 1s }}\n",
                BASE.replace("name: w", "name: r")
            ),
        ),
    ]);
    let out = HeraldEnv::default().run(&["workflows", "validate", d.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let f = |name: &str| d.path().join(name).display().to_string();
    for expected in [
        format!(
            "{}:7:3: duplicate mapping key: subject (each key may appear once)",
            f("dup.yaml")
        ),
        format!(
            "{}:9:3: retry.backoff.initial 10s is longer than retry.backoff.max 1s",
            f("retry.yaml")
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
}
