//! Robustness: nothing a workflow, a payload, a stream message, an outage
//! or a flag contains may panic the worker, stop a consumer silently, lose
//! order, or leak a secret. Each test here is a symptom a new user hit.
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use std::time::{Duration, Instant};

use herald_tests::scenario::{Scenario, World};
use herald_tests::smtp::{Outage, Reply};
use herald_tests::wait;
use serde_json::json;

fn workflows(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

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
                "{BASE}  subject: \"{{{{date event.shipped_at \\\"%Q\\\"}}}}\"\n  text: \"{{{{money event.price \\\"EUR\\\"}}}}\"\n  html_file: templates/body.hbs\n"
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
        format!("{w}:6:12: email.subject: date: invalid date pattern \"%Q\""),
        format!("{w}:7:9: email.text: unknown helper \"money\""),
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

/// One email per `{"n": i}` event, a small retry budget: an outage that
/// counted attempts would dead-letter everything.
const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 200ms }
"#;

async fn readyz(addr: &str) -> Option<String> {
    herald_tests::http_get(addr.to_string(), "/readyz").await
}

/// After an outage: every event emailed exactly once, nothing dead-lettered,
/// no attempt counted for it.
async fn delivered_once_nothing_counted(w: &World, n: usize) {
    w.wait_sent(n as i64).await;
    assert_eq!(w.sink.count(), n, "each email once");
    assert_eq!(w.sink.distinct_recipients().len(), n);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts <> 1")
            .await,
        0,
        "the outage cost no attempt"
    );
}

/// An SMTP server refusing connections for ~3 seconds used to dead-letter
/// every event in flight (each burnt its attempts on "Connection refused").
/// Now the transport is down, deliveries wait, nothing is counted.
async fn smtp_refusing_connections_briefly_dead_letters_nothing(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--http", &addr]);
    w.wait_count("SELECT COUNT(*) FROM herald_outbox", 0).await;
    w.sink.set_outage(Some(Outage::Refuse));
    w.env.enqueue_many("events.test.n", 20, 4).await;
    wait::until("/readyz names the SMTP outage", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing"))
    })
    .await;
    let since = Instant::now();
    wait::until("the outage has lasted 3 s", wait::DEFAULT, || async {
        since.elapsed() >= Duration::from_secs(3)
    })
    .await;
    w.sink.set_outage(None);
    delivered_once_nothing_counted(&w, 20).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// Down for 30 s, in every way a server is down (connections dropped, a 421
/// greeting, connections refused), with `max_attempts: 2`: afterwards every
/// email is delivered once, nothing is dead-lettered, and `/readyz` said 503
/// (naming the SMTP transport) during the outage and says 200 after. The
/// worker logged the outage once per change of state.
async fn smtp_down_for_30s_then_everything_delivered_once(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let worker = w.worker_with(&["--http", &addr]);
    w.sink.set_outage(Some(Outage::Drop));
    w.env.enqueue_many("events.test.n", 60, 6).await;
    let since = Instant::now();
    wait::until("/readyz names the SMTP outage", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing"))
    })
    .await;
    for (until, outage) in [
        (10, Some(Outage::Greet421)),
        (20, Some(Outage::Refuse)),
        (30, None),
    ] {
        wait::until(
            &format!("{until} s of outage, /readyz 503"),
            wait::DEFAULT,
            || async {
                let r = readyz(&addr).await.unwrap_or_default();
                assert!(
                    !r.starts_with("HTTP/1.1 200"),
                    "ready during the outage: {r}"
                );
                since.elapsed() >= Duration::from_secs(until)
            },
        )
        .await;
        w.sink.set_outage(outage);
    }
    delivered_once_nothing_counted(&w, 60).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    let log = worker.log();
    let outages = log.matches("SMTP transport unreachable").count();
    assert!(
        (1..=3).contains(&outages),
        "logged once per change of state, not per message: {outages}\n{log}"
    );
}

both_backends!(
    smtp_refusing_connections_briefly_dead_letters_nothing,
    smtp_down_for_30s_then_everything_delivered_once,
);

fn uncertain_workflow(policy: &str) -> String {
    format!(
        "{}on_uncertain: {policy}\n",
        NUMBERED.replace("max_attempts: 2", "max_attempts: 3")
    )
}

/// The connection drops after the final "." and the server had the message:
/// `on_uncertain: resend` (the default) sends it again with the same
/// Message-ID, so the copy can be recognised; counted as uncertain.
async fn uncertain_delivery_is_resent_with_the_same_message_id(backend: Backend) {
    let mut w = Scenario::new(backend)
        .workflow("wf.yaml", &uncertain_workflow("resend"))
        .start()
        .await;
    let smtp = format!("{}?timeout=1s", w.sink.url());
    w.h.set("HERALD_SMTP_URL", smtp);
    w.sink.script([Reply::AcceptThenDrop, Reply::Stall]);
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--http", &addr]);
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_sent(1).await;
    let got = w.sink.received();
    assert_eq!(
        got.len(),
        2,
        "accepted, then resent after the drop (the stall was not recorded)"
    );
    assert_eq!(
        got[0].message_id(),
        got[1].message_id(),
        "one Message-ID for the copies"
    );
    assert_eq!(w.sink.data_commands(), 3);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    let metrics = herald_tests::http_get(addr, "/metrics")
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains("herald_uncertain_total{role=\"worker\"} 2"),
        "{metrics}"
    );
}

/// `on_uncertain: hold`: the delivery is recorded `uncertain` and becomes a
/// dead letter for an operator, not sent again; a re-drive sends it with the
/// same Message-ID.
async fn uncertain_delivery_is_held_for_an_operator(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", &uncertain_workflow("hold"))
        .start()
        .await;
    w.sink.script([Reply::DropConnection]);
    let _relay = w.relay();
    let _worker = w.worker();
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_dead_letters WHERE kind = 'uncertain'",
        1,
    )
    .await;
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'uncertain'")
            .await,
        1
    );
    assert_eq!(w.sink.data_commands(), 1, "not sent again by itself");
    let out = w.run(&["dlq", "retry", "--all"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_sent(1).await;
    assert_eq!(w.sink.count(), 1);
    assert!(
        w.sink.received()[0].message_id().starts_with('<'),
        "a Message-ID"
    );
}

both_backends!(
    uncertain_delivery_is_resent_with_the_same_message_id,
    uncertain_delivery_is_held_for_an_operator,
);
