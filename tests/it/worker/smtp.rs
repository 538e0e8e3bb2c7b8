//! The worker's SMTP side: 4xx and 5xx replies, pooled and capped connections,
//! credentials, TLS, the file transport, slow servers.

use super::notify;
use herald_tests::db::Backend;
use herald_tests::smtp::{Reply, SmtpSink};
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;

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

both_backends!(
    transient_4xx_then_success_sends_once,
    permanent_5xx_dead_letters_and_others_flow
);

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
