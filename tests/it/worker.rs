//! The worker end to end: relay and worker as processes, real nats-server,
//! real SMTP sink over TCP, both databases.
use std::time::Duration;

use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::{Herald, HeraldEnv};
use herald_tests::scenario::{Scenario, World};
use herald_tests::smtp::{Reply, SmtpSink};
use herald_tests::wait;
use serde_json::json;

/// `notify` (FAST_RETRY) with a relay and a worker running, and a first
/// email through: everything is bound and flowing.
async fn flowing(backend: Backend) -> (World, Herald, Herald) {
    let w = notify(backend).await;
    let relay = w.relay();
    let worker = w.worker();
    w.emit(
        "events.test.first",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    w.wait_emails(1).await;
    (w, relay, worker)
}

/// The `notify` workflow (FAST_RETRY), nothing running yet.
async fn notify(backend: Backend) -> World {
    Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await
}

pub(crate) const FAST_RETRY: &str = r#"
name: notify
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.email}}"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
  html: "<p>Hi {{event.name}}</p>"
retry:
  max_attempts: 3
  backoff: { initial: 100ms, max: 200ms }
"#;

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

async fn transient_4xx_then_success_sends_once(backend: Backend) {
    let w = notify(backend).await;
    w.sink.script([
        Reply::Code(451, "4.3.0 try later".into()),
        Reply::Code(451, "4.3.0 try later".into()),
    ]);
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    w.wait_emails(1).await;
    w.wait_sent(1).await;
    assert_eq!(w.sink.count(), 1, "exactly one email");
    assert_eq!(w.sink.data_commands(), 3);
    assert_eq!(
        w.count("SELECT CAST(attempts AS BIGINT) FROM herald_deliveries")
            .await as i32,
        3
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

async fn permanent_5xx_dead_letters_and_others_flow(backend: Backend) {
    let w = notify(backend).await;
    w.sink
        .script([Reply::Code(550, "5.1.1 no such user".into())]);
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.test.a",
        json!({"email": "gone@example.com", "name": "A"}),
    )
    .await;
    wait::until("a dead letter", wait::DEFAULT, || async {
        w.count("SELECT COUNT(*) FROM herald_dead_letters").await == 1
    })
    .await;
    w.emit(
        "events.test.b",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    w.wait_emails(1).await;
    let conn = &w.env.conn;
    use sea_orm::EntityTrait;
    let dl = herald_entities::dead_letter::Entity::find()
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dl.smtp_reply.as_deref(), Some("550 5.1.1 no such user"));
    assert_eq!(dl.kind.as_str(), "permanent");
    assert_eq!(
        w.sink.received()[0].rcpt_to,
        vec!["b@example.com".to_string()]
    );
}

/// Run relay and a worker that aborts at `failpoint` while handling one
/// event; returns once that worker has died (the relay keeps running).
async fn crash_worker_at(backend: Backend, failpoint: &str) -> (World, Herald) {
    let w = notify(backend).await;
    let relay = w.relay();
    let mut crashing = w.h.clone();
    crashing.set("HERALD_FAILPOINT", failpoint);
    let mut worker = crashing.spawn(&["worker", "--ack-wait", "2s"]);
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    let status = worker.wait(Duration::from_secs(60)).await;
    assert!(!status.success(), "the failpoint aborted the worker");
    (w, relay)
}

/// Kill the worker after the ledger says `sent` but before the ack: the
/// redelivered message finds the ledger row and sends nothing.
async fn crash_after_ledger_before_ack_sends_once(backend: Backend) {
    let (w, _relay) = crash_worker_at(backend, "after_ledger_sent").await;
    assert_eq!(w.sink.count(), 1);
    let _worker = w.worker();
    wait::until(
        "the redelivered message is acked",
        wait::DEFAULT,
        || async { stream_ack_floor(&w.env).await >= 1 },
    )
    .await;
    assert_eq!(w.sink.count(), 1, "no second email");
}

/// Kill the worker after SMTP accepted but before the ledger write: the
/// message is sent again with the same Message-ID (the documented window).
async fn crash_after_accept_before_ledger_resends_same_message_id(backend: Backend) {
    let (w, _relay) = crash_worker_at(backend, "after_smtp_accept").await;
    let _worker = w.worker();
    w.wait_emails(2).await;
    w.wait_sent(1).await;
    let got = w.sink.received();
    assert_eq!(
        got.len(),
        2,
        "one duplicate inside the accepted-but-not-recorded window"
    );
    assert_eq!(
        got[0].message_id(),
        got[1].message_id(),
        "a duplicate is recognisable downstream"
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

async fn stream_ack_floor(env: &TestEnv) -> u64 {
    let js = env.nats.jetstream().await;
    let Ok(stream) = js.get_stream("HERALD").await else {
        return 0;
    };
    let Ok(mut c) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-notify")
        .await
    else {
        return 0;
    };
    c.info()
        .await
        .map(|i| i.ack_floor.stream_sequence)
        .unwrap_or(0)
}

both_backends!(
    example_workflows_send_expected_emails,
    transient_4xx_then_success_sends_once,
    permanent_5xx_dead_letters_and_others_flow,
    crash_after_ledger_before_ack_sends_once,
    crash_after_accept_before_ledger_resends_same_message_id,
    render_problems_dead_letter_and_escape,
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

/// A message that is not a Herald event (no Nats-Msg-Id) is dead-lettered
/// whole and does not block the event behind it.
async fn foreign_message_dead_letters_and_others_flow(backend: Backend) {
    let (w, _relay, _worker) = flowing(backend).await;
    let js = w.env.nats.jetstream().await;
    js.publish("events.test.foreign", r#"{"email":"x@example.com"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    w.emit(
        "events.test.after",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    w.wait_emails(2).await;
    wait::until(
        "the foreign message is dead-lettered",
        wait::DEFAULT,
        || async { w.count("SELECT COUNT(*) FROM herald_dead_letters").await == 1 },
    )
    .await;
    use sea_orm::EntityTrait;
    let dl = herald_entities::dead_letter::Entity::find()
        .one(&w.env.conn)
        .await
        .unwrap()
        .unwrap();
    assert!(dl.reason.contains("no Nats-Msg-Id"), "{}", dl.reason);
    assert_eq!(dl.subject, "events.test.foreign");
    assert!(dl.payload.contains("x@example.com"), "kept whole");
}

both_backends!(foreign_message_dead_letters_and_others_flow);

/// A nats-server older than 2.10 ignores multi-subject consumer filters, so
/// the relay and the worker refuse it at start-up. Uses the Debian 2.9 server
/// when the machine has one (the rust-svc machines do).
#[tokio::test]
async fn old_nats_server_is_refused() {
    let old = std::path::PathBuf::from("/usr/sbin/nats-server");
    let version = std::process::Command::new(&old).arg("--version").output();
    let Ok(version) = version else {
        eprintln!("no /usr/sbin/nats-server here: nothing old to refuse");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    if herald::jetstream::server_supported(version.trim().trim_start_matches("nats-server: ")) {
        eprintln!("/usr/sbin/nats-server is {version}: not old");
        return;
    }
    let nats = herald_tests::nats::NatsServer::start_bin(old, "").await;
    let db = herald_tests::db::TestDb::new(Backend::Sqlite).await;
    let mut env = HeraldEnv::default();
    let mail = tempfile::tempdir().unwrap();
    env.set("HERALD_DATABASE_URL", db.url.clone())
        .set("HERALD_NATS_URL", nats.url())
        .set(
            "HERALD_SMTP_URL",
            format!("file://{}", mail.path().display()),
        )
        .set(
            "HERALD_WORKFLOWS",
            herald_tests::example_workflows().display().to_string(),
        )
        .set("HERALD_PUBLIC_URL", "https://herald.test")
        .set("HERALD_UNSUBSCRIBE_SECRET", "test-unsubscribe-secret-0123");
    for cmd in ["relay", "worker"] {
        let out = env.run(&[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("too old"), "{cmd}: {err}");
    }
    // Refused before creating anything: the old server has no stream.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let streams: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(async_nats::jetstream::new(client).stream_names())
            .await;
    assert!(
        streams.is_empty(),
        "created on a server it refuses: {streams:?}"
    );
}

/// Connections are pooled, not opened per email; a pooled connection the
/// server closed while idle is replaced before use, costing no attempt.
async fn smtp_connections_are_pooled_and_checked(backend: Backend) {
    let mut w = notify(backend).await;
    w.h.set(
        "HERALD_SMTP_URL",
        format!("{}?pool=4&idle_check=0s", w.sink.url()),
    );
    let _relay = w.relay();
    let _worker = w.h.spawn(&["worker", "--concurrency", "4"]);
    w.emit_users("events.test.a", 30).await;
    assert!(
        w.sink.connections() <= 4,
        "{} connections for 30 emails",
        w.sink.connections()
    );
    w.sink.close_idle();
    w.emit(
        "events.test.b",
        json!({"email": "late@example.com", "name": "L"}),
    )
    .await;
    w.wait_emails(31).await;
    w.wait_sent(31).await;
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts > 1")
            .await,
        0,
        "no attempt was spent on a dead pooled connection"
    );
}

both_backends!(smtp_connections_are_pooled_and_checked);

/// `?connections=2`: eight deliveries in flight, slow replies, and never
/// more than two SMTP sessions (without the cap the worker opens one per
/// delivery in flight).
async fn smtp_connections_are_capped(backend: Backend) {
    let mut w = notify(backend).await;
    w.h.set("HERALD_SMTP_URL", format!("{}?connections=2", w.sink.url()));
    w.sink
        .script((0..12).map(|_| herald_tests::smtp::Reply::Delay(Duration::from_millis(150))));
    // All twelve wait in the stream before the worker starts.
    w.emit_users("events.test.a", 12).await;
    let _relay = w.relay();
    let _worker = w.h.spawn(&["worker", "--concurrency", "8"]);
    w.wait_sent(12).await;
    assert!(
        w.sink.connections() <= 2,
        "{} connections with ?connections=2",
        w.sink.connections()
    );
}

both_backends!(smtp_connections_are_capped);

/// The worker killed -9 at several points while 500 events flow, restarted
/// each time: every event is delivered; duplicates can only come from the
/// accepted-but-not-recorded window, and keep their Message-ID.
async fn worker_killed_repeatedly_delivers_everything(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow(
            "notify.yaml",
            &FAST_RETRY
                .replace("{{event.email}}", "u{{event.n}}@example.com")
                .replace("{{event.name}}", "{{event.n}}"),
        )
        .start()
        .await;
    let _relay = w.relay();
    w.env.enqueue_many("events.test.n", 500, 25).await;
    // Four kill points anywhere in the run, a random one possibly before the
    // previous worker had even bound its consumer.
    let mut rng = herald_tests::rng("worker_killed_repeatedly_delivers_everything");
    let mut kills: Vec<usize> = (0..4).map(|_| rng.usize(10..490)).collect();
    kills.sort_unstable();
    eprintln!("kill -9 after {kills:?} emails");
    for &at in &kills {
        let mut worker = w.worker();
        wait::until(&format!("{at} emails"), wait::DEFAULT, || async {
            w.sink.count() >= at
        })
        .await;
        worker.kill9();
    }
    let _worker = w.worker();
    wait::until(
        "all 500 deliveries recorded sent",
        Duration::from_secs(120),
        || async {
            w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
                .await
                == 500
        },
    )
    .await;
    let got = w.sink.received();
    let mut by_id = std::collections::HashMap::new();
    for m in &got {
        *by_id.entry(m.message_id()).or_insert(0) += 1;
    }
    assert_eq!(by_id.len(), 500, "every event delivered");
    let duplicates = got.len() - 500;
    eprintln!(
        "worker killed {} times: {duplicates} duplicate email(s), all with the original Message-ID",
        kills.len()
    );
    // Each kill can interrupt at most `concurrency` sends between SMTP accept and the ledger write.
    assert!(duplicates <= kills.len() * 16, "{duplicates} duplicates");
    // And every duplicate came through that window: its delivery was claimed
    // again after its worker died (attempts > 1), never twice at once.
    for (mid, n) in by_id.iter().filter(|(_, n)| **n > 1) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let event_id = mid.trim_start_matches('<').split('.').next().unwrap();
        let row = herald_entities::delivery::Entity::find()
            .filter(
                herald_entities::delivery::Column::EventId
                    .eq(uuid::Uuid::parse_str(event_id).unwrap()),
            )
            .one(&w.env.conn)
            .await
            .unwrap()
            .unwrap();
        assert!(
            row.attempts >= 2,
            "{mid} sent {n} times on attempt {}",
            row.attempts
        );
    }
}

both_backends!(worker_killed_repeatedly_delivers_everything);

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

/// The embedded default transport: one complete .eml per message, named
/// after its Message-ID, written atomically (no temp file left behind).
async fn file_transport_writes_eml_files(backend: Backend) {
    let mut w = notify(backend).await;
    let mail = tempfile::tempdir().unwrap();
    w.h.set(
        "HERALD_SMTP_URL",
        format!("file://{}", mail.path().display()),
    );
    let _relay = w.relay();
    let _worker = w.worker();
    let id = w
        .emit(
            "events.test.a",
            json!({"email": "a@example.com", "name": "A"}),
        )
        .await;
    let file = mail.path().join(format!("{id}.notify.0_test.example.eml"));
    wait::until("the .eml file exists", wait::DEFAULT, || async {
        file.exists()
    })
    .await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("Message-ID: <{id}.notify.0@test.example>")),
        "{text}"
    );
    assert!(text.contains("Subject: Hello A"), "{text}");
    let names: Vec<_> = std::fs::read_dir(mail.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the .eml, no temp file: {names:?}");
}

both_backends!(file_transport_writes_eml_files);

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

/// smtp://user:pass@host authenticates (AUTH PLAIN), percent-decoding the URL.
async fn smtp_credentials_are_used(backend: Backend) {
    let mut w = notify(backend).await;
    let url = format!(
        "smtp://herald%40app:p%40ss%3Aword@127.0.0.1:{}",
        w.sink.port
    );
    w.h.set("HERALD_SMTP_URL", url);
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    w.wait_emails(1).await;
    assert_eq!(
        w.sink.auth(),
        Some(("herald@app".to_string(), "p@ss:word".to_string()))
    );
}

both_backends!(smtp_credentials_are_used);

/// smtp:// upgrades with STARTTLS when the server offers it; smtps:// speaks
/// TLS from the first byte. (The test server's certificate is self-signed,
/// hence ?tls_insecure=true.)
async fn smtp_tls_starttls_and_implicit(backend: Backend) {
    use herald_tests::smtp::Tls;
    let mut w = notify(backend).await;
    let starttls = SmtpSink::start_with(Tls::StartTls).await;
    let implicit = SmtpSink::start_with(Tls::Implicit).await;
    let _relay = w.relay();
    w.h.set(
        "HERALD_SMTP_URL",
        format!("smtp://u:p@127.0.0.1:{}?tls_insecure=true", starttls.port),
    );
    let mut worker = w.worker();
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    wait::until(
        "the STARTTLS server has the email",
        wait::DEFAULT,
        || async { starttls.count() == 1 },
    )
    .await;
    assert!(starttls.received()[0].tls, "sent after STARTTLS");
    assert_eq!(
        starttls.auth(),
        Some(("u".into(), "p".into())),
        "authenticated inside TLS"
    );
    worker.terminate(Duration::from_secs(30)).await;

    w.h.set(
        "HERALD_SMTP_URL",
        format!("smtps://127.0.0.1:{}?tls_insecure=true", implicit.port),
    );
    let _worker = w.worker();
    w.emit(
        "events.test.b",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    wait::until("the smtps server has the email", wait::DEFAULT, || async {
        implicit.count() == 1
    })
    .await;
    assert!(implicit.received()[0].tls);
}

both_backends!(smtp_tls_starttls_and_implicit);

/// A send slower than the ack wait: progress acks keep the message, so it is
/// not redelivered and sent a second time.
async fn slow_smtp_is_covered_by_progress_acks(backend: Backend) {
    let w = notify(backend).await;
    w.sink.script([Reply::Delay(Duration::from_secs(5))]);
    let _relay = w.relay();
    let _worker = w.worker(); // --ack-wait 2s
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    w.wait_sent(1).await;
    assert_eq!(
        w.sink.data_commands(),
        1,
        "no second attempt while the first was in progress"
    );
    assert_eq!(
        w.count("SELECT CAST(attempts AS BIGINT) FROM herald_deliveries")
            .await,
        1
    );
}

both_backends!(slow_smtp_is_covered_by_progress_acks);

/// A long-running process opens its PostgreSQL connections at start-up
/// instead of on demand: opening one mid-run put ~90 ms on the path of
/// whichever event needed it (BENCHMARKS.md). Each role names its
/// connections, so `pg_stat_activity` tells an operator who holds what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_are_opened_at_start_and_named() {
    let w = notify(Backend::Postgres).await;
    let held = |role: &'static str| {
        let w = &w;
        async move {
            w.count(&format!(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{role}'"
            ))
            .await
        }
    };
    let _worker =
        w.h.spawn(&["worker", "--ack-wait", "2s", "--db-connections", "5"]);
    let _relay = w.relay();
    // Before any event: the pools are already full.
    wait::until("the worker holds 5 connections", wait::DEFAULT, || async {
        held("herald worker").await == 5
    })
    .await;
    wait::until(
        "the relay holds its 4 connections",
        wait::DEFAULT,
        || async { held("herald relay").await >= 4 },
    )
    .await;
    w.emit_users("events.test.a", 20).await;
    assert_eq!(
        held("herald worker").await,
        5,
        "the pool neither grew nor shrank"
    );
}

/// An operator deletes a workflow's durable consumer while the worker runs
/// (by mistake, or to reset it): the worker binds a new one and carries on.
async fn deleted_consumer_is_recreated(backend: Backend) {
    let (w, _relay, worker) = flowing(backend).await;
    let js = w.env.nats.jetstream().await;
    let stream = js.get_stream("HERALD").await.unwrap();
    stream.delete_consumer("herald-notify").await.unwrap();
    w.emit(
        "events.test.b",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    wait::until(
        "the worker re-creates its consumer and sends the next email",
        wait::DEFAULT,
        || async { w.sink.count() >= 2 },
    )
    .await;
    assert!(
        worker.log().to_lowercase().contains("consumer deleted"),
        "the worker says why it re-binds:\n{}",
        worker.log()
    );
    // The re-created consumer starts from the stream's start; the ledger
    // skips the first event: once both messages are acked, two emails.
    w.wait_sent(2).await;
    wait::until("the new consumer acked both", wait::DEFAULT, || async {
        stream_ack_floor(&w.env).await >= 2
    })
    .await;
    assert_eq!(w.sink.count(), 2, "the first event was not sent again");
}

both_backends!(deleted_consumer_is_recreated);

/// A delivery another worker has just claimed (it may be sending it right
/// now) is not sent by this one: the message waits (nak with delay) until the
/// other records it, then is acked with nothing sent.
async fn delivery_claimed_elsewhere_is_not_sent_twice(backend: Backend) {
    let w = notify(backend).await;
    let _relay = w.relay();
    let id = w
        .emit(
            "events.test.a",
            json!({"email": "a@example.com", "name": "A"}),
        )
        .await;
    w.env.wait_all_published().await;
    let key = herald::internals::ledger::Key {
        event_id: id.parse().unwrap(),
        workflow: "notify",
        recipient: "a@example.com",
    };
    // The other worker claims it, then the message reaches this one.
    herald::internals::ledger::claim(
        &w.env.conn,
        &key,
        0,
        "Hello A",
        Duration::from_secs(60),
        true,
    )
    .await
    .unwrap();
    // A lease far longer than the worker's start-up, so the claim is fresh
    // when the message arrives; the worker looks again every 2 s at most.
    let worker = w.h.spawn(&["worker", "--ack-wait", "30s"]);
    wait::until(
        "the worker defers to the other claim",
        wait::DEFAULT,
        || async {
            worker
                .log()
                .contains("another worker is sending this email")
        },
    )
    .await;
    // The other worker's send succeeds and is recorded.
    herald::internals::ledger::mark_sent(&w.env.conn, &key, "<other>", "250 ok")
        .await
        .unwrap();
    wait::until("the message is acked", wait::DEFAULT, || async {
        stream_ack_floor(&w.env).await == 1
    })
    .await;
    assert_eq!(w.sink.count(), 0, "this worker sent nothing");
}

both_backends!(delivery_claimed_elsewhere_is_not_sent_twice);

/// One contract transition as the league's admin route makes it (USE-CASES.md
/// case 4): the audit row and the event in the route's one transaction,
/// committed, or rolled back when the route fails after writing both.
#[allow(clippy::too_many_arguments)] // one transition's fields, named at each call
async fn offer_transition(
    db: &sea_orm::DatabaseConnection,
    audit_id: i64,
    subject: &str,
    from: Option<&str>,
    tier: &str,
    previous_tier: Option<&str>,
    commit: bool,
) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let mut payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            herald_tests::example_workflows().join("samples/events.contract.offered.json"),
        )
        .unwrap(),
    )
    .unwrap();
    payload["transition"] = json!({"from": from, "to": "offered"});
    payload["offer"]["tier"] = json!(tier);
    if let Some(p) = previous_tier {
        payload["previous"] = json!({ "tier": p });
    }
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO contract_audit (id, contract_id, event_type, old_state, new_state, actor) \
         VALUES ({audit_id}, 7, '{subject}', {}, 'offered', 'admin@league.example')",
        from.map_or("NULL".to_string(), |f| format!("'{f}'"))
    ))
    .await
    .unwrap();
    herald::outbox::enqueue(
        &txn,
        herald::outbox::NewEvent::new(subject, payload).aggregate("contract", 7),
    )
    .await
    .unwrap();
    if commit {
        txn.commit().await.unwrap();
    } else {
        txn.rollback().await.unwrap();
    }
}

/// USE-CASES.md case 4: every transition that mints an offer is an event
/// committed with its audit row, and the contract-offers workflow emails the
/// parent for each; a transition the route rolls back leaves no audit row,
/// no event and no email.
async fn contract_offer_transitions_email_with_their_audit_rows(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let w = Scenario::new(backend).examples().start().await;
    w.env
        .conn
        .execute_unprepared(
            "CREATE TABLE contract_audit (id BIGINT PRIMARY KEY, contract_id BIGINT NOT NULL, \
             event_type TEXT NOT NULL, old_state TEXT, new_state TEXT NOT NULL, actor TEXT NOT NULL)",
        )
        .await
        .unwrap();
    let _relay = w.relay();
    let _worker = w.worker();
    let db = &w.env.conn;
    offer_transition(db, 1, "events.contract.offered", None, "Gold", None, true).await;
    // A forced re-offer whose route fails after the audit row and the event.
    offer_transition(
        db,
        2,
        "events.contract.reoffered",
        Some("offered"),
        "Gold",
        None,
        false,
    )
    .await;
    offer_transition(
        db,
        3,
        "events.contract.reoffered",
        Some("declined"),
        "Gold",
        None,
        true,
    )
    .await;
    offer_transition(
        db,
        4,
        "events.contract.tier_changed",
        Some("signed"),
        "Platinum",
        Some("Gold"),
        true,
    )
    .await;
    w.wait_sent(3).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM contract_audit").await, 3);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_outbox").await, 3);
    let got = w.sink.received();
    assert_eq!(got.len(), 3, "one email per committed transition");
    let mut subjects: Vec<String> = got.iter().filter_map(|m| m.header("Subject")).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Contract offer for Jordan Park (U14 Hawks)",
            "Contract offer for Jordan Park (U14 Hawks)",
            "New contract tier for Jordan Park: Platinum",
        ]
    );
    assert!(got.iter().all(|m| m.rcpt_to == ["casey@example.com"]));
    assert!(
        got.iter()
            .any(|m| m.decoded().contains("whose link no longer works")),
        "the re-offer says the old link is void"
    );
    assert!(
        got.iter().any(|m| m
            .decoded()
            .contains("from the Gold tier to the Platinum tier")),
        "the tier change names both tiers"
    );
}

both_backends!(contract_offer_transitions_email_with_their_audit_rows);
