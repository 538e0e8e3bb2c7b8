//! Workflows end to end: the shipped examples send what their golden files hold,
//! the schema, invalid workflows reported at file:line:col, render problems.

use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::Scenario;
use herald_tests::smtp::Received;
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;

/// contract-signed-welcome: one email, to the parent, with its Message-ID.
fn one_welcome_email_to_the_parent(got: &[Received], id: &str) {
    let welcome: Vec<_> = got
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.starts_with("Welcome"))
        })
        .collect();
    assert_eq!(welcome.len(), 1);
    let m = welcome[0];
    assert_eq!(
        m.header("Subject").unwrap(),
        "Welcome to U12 Tigers, Sam Lee"
    );
    assert_eq!(m.rcpt_to, vec!["alex@example.com".to_string()]);
    assert_eq!(
        m.message_id(),
        format!("<{id}.contract-signed-welcome.0@club.example>")
    );
    assert!(m.data.contains("https://groupme.com/join_group/123/abc"));
}

/// The campaign wave: 50 distinct members, each with its own code.
fn each_member_got_its_own_code(got: &[Received]) {
    let mut codes: Vec<String> = got
        .iter()
        .filter(|m| m.header("X-Campaign").is_some())
        .map(|m| {
            let to = m.rcpt_to[0].clone();
            let n: usize = to
                .trim_start_matches('m')
                .split('@')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                m.data.contains(&format!("CODE-{n:03}")),
                "{to} got its own code"
            );
            to
        })
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 50, "50 distinct recipients");
}

async fn example_workflows_send_expected_emails(backend: Backend) {
    let w = Scenario::new(backend).examples().start().await;
    let _relay = w.relay();
    let mut worker = w.worker();
    let signed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            herald_tests::example_workflows().join("samples/events.contract.signed.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let id = w.emit("events.contract.signed", signed.clone()).await;
    let mut no_email = signed.clone();
    no_email["parent"]["email"] = serde_json::Value::Null;
    w.emit("events.contract.signed", no_email).await;
    let recipients: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("Member {i}"), "email": format!("m{i}@example.com"), "code": format!("CODE-{i:03}")}))
        .collect();
    let wave = w
        .emit(
            "events.campaign.wave_sent",
            json!({"campaign": "Spring", "recipients": recipients}),
        )
        .await;
    w.wait_emails(51).await;
    wait::until("the guard skip is recorded", wait::DEFAULT, || async {
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'skipped'")
            .await
            == 1
    })
    .await;
    let got = w.sink.received();
    one_welcome_email_to_the_parent(&got, &id);
    each_member_got_its_own_code(&got);
    // What the application asks in place of its own per-member email status.
    w.wait_sent(51).await;
    let wave = herald::ledger::deliveries_of(&w.env.conn, wave.parse().unwrap())
        .await
        .unwrap();
    let states: Vec<(String, &str)> = wave
        .iter()
        .map(|d| (d.recipient.clone(), d.state.as_str()))
        .collect();
    let expected: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("m{i}@example.com"), "sent"))
        .collect();
    assert_eq!(
        states, expected,
        "one sent delivery per member, in fan-out order"
    );
    assert_eq!(w.sink.count(), 51, "nothing else was sent");
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

async fn render_problems_dead_letter_and_escape(backend: Backend) {
    let wf = r#"
name: careful
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.email}}"
  subject: "{{event.subject}}"
  text: "Hi {{event.name}}"
  html: "<p>Hi {{event.name}}</p>"
"#;
    let w = Scenario::new(backend)
        .workflow("careful.yaml", wf)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    // Missing variable: event.subject.
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    // Header injection in the subject.
    w.emit(
        "events.test.b",
        json!({"email": "b@example.com", "name": "B", "subject": "hi\r\nBcc: x@evil.example"}),
    )
    .await;
    // Script in a name: escaped in HTML.
    w.emit(
        "events.test.c",
        json!({"email": "c@example.com", "name": "<script>alert(1)</script>", "subject": "ok"}),
    )
    .await;
    wait::until("two dead letters", wait::DEFAULT, || async {
        w.count("SELECT COUNT(*) FROM herald_dead_letters").await == 2
    })
    .await;
    w.wait_emails(1).await;
    use sea_orm::{EntityTrait, QueryOrder};
    let dls = herald_entities::dead_letter::Entity::find()
        .order_by_asc(herald_entities::dead_letter::Column::Id)
        .all(&w.env.conn)
        .await
        .unwrap();
    let reasons: Vec<_> = dls.iter().map(|d| d.reason.clone()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("missing variable event.subject")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("CR or LF")),
        "{reasons:?}"
    );
    let m = &w.sink.received()[0];
    assert!(
        m.data.contains("&lt;script&gt;"),
        "HTML escaped: {}",
        m.data
    );
    assert!(!m.data.to_lowercase().contains("bcc:"));
}

both_backends!(
    example_workflows_send_expected_emails,
    render_problems_dead_letter_and_escape
);

#[test]
fn invalid_workflows_report_file_line_col() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.yaml"), "name: Bad_Name\non:\n  subjects: [\"orders.x\"]\nemail:\n  from: a@b.example\n  to: \"{{x\"\n  subject: s\n  text: t\n").unwrap();
    std::fs::write(
        d.path().join("b.yaml"),
        "name: b\non:\n  subjects: [events.x]\n  extra: 1\n",
    )
    .unwrap();
    let out = HeraldEnv::default().run(&["workflows", "validate", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let a = d.path().join("a.yaml").display().to_string();
    let b = d.path().join("b.yaml").display().to_string();
    assert!(
        err.contains(&format!("{a}:1:7: name \"Bad_Name\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{a}:3:")) && err.contains("orders.x"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{a}:6:")) && err.contains("invalid template"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{b}:4:3: unknown field `extra`")),
        "{err}"
    );
}

/// Each example workflow with its sample payload renders exactly its golden email.
async fn example_workflows_match_golden_files(backend: Backend) {
    let w = Scenario::new(backend).examples().start().await;
    let _relay = w.relay();
    let _worker = w.worker();
    let samples = herald_tests::example_workflows().join("samples");
    let mut ids = Vec::new();
    for subject in [
        "events.contract.signed",
        "events.vault.archived",
        "events.campaign.wave_sent",
        "events.contract.offered",
    ] {
        let payload: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(samples.join(format!("{subject}.json"))).unwrap(),
        )
        .unwrap();
        ids.push((subject, w.emit(subject, payload).await));
    }
    w.wait_emails(5).await;
    let got = w.sink.received();
    for (subject, id) in &ids {
        let mut mine: Vec<_> = got
            .iter()
            .filter(|m| m.message_id().contains(id.as_str()))
            .collect();
        mine.sort_by_key(|m| m.message_id());
        assert!(!mine.is_empty(), "no email for {subject}");
        for (i, m) in mine.iter().enumerate() {
            golden(&format!("{subject}.{i}"), &normalize(&m.data, id));
        }
    }
}

both_backends!(example_workflows_match_golden_files);

#[test]
fn workflow_schema_describes_the_format() {
    let out = HeraldEnv::default().run(&["workflows", "schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = &schema["properties"];
    for key in [
        "name",
        "on",
        "when",
        "for_each",
        "email",
        "retry",
        "on_uncertain",
        "rate",
        "category",
        "ignore_suppression",
        "digest",
        "delay",
        "send_at",
        "quiet_hours",
        "locale",
    ] {
        assert!(props.get(key).is_some(), "schema lacks {key}: {schema}");
    }
    assert!(
        schema.to_string().contains("additionalProperties"),
        "unknown keys are refused in the schema too"
    );
}
