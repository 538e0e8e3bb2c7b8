//! Digests, delays and send windows (`send_at`, quiet hours), across worker kills
//! and restarts.

use herald::outbox::{NewEvent, enqueue};
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::scenario::{Scenario, World};
use sea_orm::TransactionTrait;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Enqueue events with these payloads, in one transaction each batch.
async fn enqueue_all(w: &World, subject: &str, payloads: impl IntoIterator<Item = Value>) {
    let txn = w.env.conn.begin().await.unwrap();
    for p in payloads {
        enqueue(&txn, NewEvent::new(subject, p)).await.unwrap();
    }
    txn.commit().await.unwrap();
}

const DIGEST: &str = r#"
name: vault-digest
on: { subjects: [events.vault.updated] }
digest: { key: "{{event.parent}}", window: 10s, max: 50 }
email:
  from: vault@example.com
  to: "{{event.parent}}@example.com"
  subject: "{{len events}} updates"
  text: "{{#each events}}[{{this.n}}]{{/each}}"
"#;

/// The event numbers a digest's body lists (`[n]` each).
fn listed(body: &str) -> Vec<usize> {
    body.split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next()?.parse().ok())
        .collect()
}

/// 30 events for 3 keys inside one window, with the worker killed (-9)
/// halfway: 3 emails, each listing its 10 events once, in stream order;
/// nothing lost, nothing sent twice.
async fn a_digest_survives_a_worker_kill(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("digest.yaml", DIGEST)
        .start()
        .await;
    let _relay = w.relay();
    let mut worker = w.worker();
    let payload = |n: usize| json!({"parent": format!("p{}", n % 3), "n": n});
    enqueue_all(&w, "events.vault.updated", (0..15).map(payload)).await;
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 15)
        .await;
    worker.kill9();
    let _worker = w.worker();
    enqueue_all(&w, "events.vault.updated", (15..30).map(payload)).await;
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 30)
        .await;
    assert_eq!(w.sink.count(), 0, "nothing goes before the window ends");
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NOT NULL",
        3,
    )
    .await;
    w.wait_emails(3).await;
    let got = w.sink.received();
    assert_eq!(got.len(), 3);
    let mut all = Vec::new();
    for m in &got {
        let body = m.decoded();
        let numbers = listed(&body);
        assert_eq!(numbers.len(), 10, "{body}");
        let key = numbers[0] % 3;
        assert!(
            numbers.iter().all(|n| n % 3 == key),
            "one key per digest: {numbers:?}"
        );
        assert!(
            numbers.windows(2).all(|p| p[0] < p[1]),
            "stream order: {numbers:?}"
        );
        assert_eq!(m.header("Subject").unwrap(), "10 updates");
        all.extend(numbers);
    }
    all.sort();
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    let ids: std::collections::HashSet<String> = got.iter().map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE recipient LIKE 'digest:%' AND state = 'sent'")
            .await,
        30,
        "each event's part recorded"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

/// The same digest, sealed at four events and otherwise open ten minutes.
fn digest_max() -> String {
    DIGEST.replace("window: 10s, max: 50", "window: 10m, max: 4")
}

/// `max: 4` seals a digest as soon as it holds four events, long before
/// its ten-minute window: ten events for one key make two emails of four
/// at once; the last two wait for the window.
async fn a_full_digest_goes_before_its_window(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("digest.yaml", &digest_max())
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    enqueue_all(
        &w,
        "events.vault.updated",
        (0..10).map(|n| json!({"parent": "p", "n": n})),
    )
    .await;
    w.wait_emails(2).await;
    let mut seen = Vec::new();
    for m in w.sink.received() {
        assert_eq!(m.header("Subject").unwrap(), "4 updates");
        seen.extend(listed(&m.decoded()));
    }
    // Events without an aggregate are processed concurrently: which eight
    // go first is not fixed, but none twice.
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "eight events, each once: {seen:?}");
    assert!(seen.iter().all(|n| *n < 10));
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 10)
        .await;
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NULL")
            .await,
        1,
        "the last two wait in an open digest"
    );
    assert_eq!(w.sink.count(), 2);
}

const DELAYED: &str = r#"
name: reminder
on: { subjects: [events.reminder.>] }
delay: 2s
email:
  from: r@example.com
  to: "{{event.email}}"
  subject: "Reminder"
  text: "Don't forget."
"#;

/// `delay: 2s` with the worker stopped and a new one started during the
/// delay: the email goes once, at least 2 s after the event. The schedule is
/// in the database, and `herald status` shows it.
async fn a_delay_survives_a_worker_restart(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("reminder.yaml", DELAYED)
        .start()
        .await;
    let _relay = w.relay();
    let mut worker = w.worker();
    let emitted = Instant::now();
    w.emit("events.reminder.set", json!({"email": "ada@example.com"}))
        .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'scheduled'",
        1,
    )
    .await;
    let status = w.run(&["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("scheduled    delayed 1"), "{text}");
    worker.terminate(Duration::from_secs(10)).await;
    assert_eq!(w.sink.count(), 0);
    let _worker = w.worker();
    w.wait_emails(1).await;
    assert!(emitted.elapsed() >= Duration::from_secs(2));
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(w.sink.count(), 1);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
            .await,
        1
    );
}

/// When the quiet workflow's scheduled email is due.
async fn quiet_schedule_due_at(w: &World) -> chrono::DateTime<chrono::Utc> {
    use sea_orm::ConnectionTrait;
    let row = w
        .env
        .conn
        .query_one_raw(sea_orm::Statement::from_string(
            w.env.conn.get_database_backend(),
            "SELECT due_at FROM herald_schedule WHERE workflow = 'quiet'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "due_at").unwrap()
}

/// A `send_at` in the past sends at once (it is never dropped); one inside
/// quiet hours waits until they end, in the recipient's time zone.
async fn send_at_and_quiet_hours(backend: Backend) {
    let now = chrono::Utc::now();
    let hm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let (from, to) = (
        hm(now - chrono::Duration::hours(1)),
        hm(now + chrono::Duration::hours(2)),
    );
    let quiet = format!(
        r#"
name: quiet
on: {{ subjects: [events.q.>] }}
quiet_hours: {{ from: "{from}", to: "{to}", tz: "{{{{event.tz}}}}" }}
email:
  from: r@example.com
  to: "{{{{event.email}}}}"
  subject: "Later"
  text: "x"
"#
    );
    let past = r#"
name: at
on: { subjects: [events.at.>] }
send_at: "{{event.remind_at}}"
email:
  from: r@example.com
  to: "{{event.email}}"
  subject: "At"
  text: "x"
"#;
    let w = Scenario::new(backend)
        .workflow("quiet.yaml", &quiet)
        .workflow("at.yaml", past)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.at.x",
        json!({"email": "a@example.com", "remind_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    w.wait_emails(1).await;
    w.emit(
        "events.q.x",
        json!({"email": "b@example.com", "tz": "Etc/UTC"}),
    )
    .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE workflow = 'quiet'",
        1,
    )
    .await;
    let due = quiet_schedule_due_at(&w).await;
    assert_eq!(hm(due), to, "due when the quiet hours end");
    assert!(due > now + chrono::Duration::minutes(90));
    // A bad send_at is the event's error, dead-lettered with what it was.
    w.emit(
        "events.at.x",
        json!({"email": "a@example.com", "remind_at": "next tuesday"}),
    )
    .await;
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = w.run(&["dlq", "list", "--json"]).await;
    let text = String::from_utf8_lossy(&dl.stdout);
    assert!(text.contains("not an RFC 3339 time"), "{text}");
    assert_eq!(w.sink.count(), 1);
}

both_backends!(
    a_full_digest_goes_before_its_window,
    a_digest_survives_a_worker_kill,
    a_delay_survives_a_worker_restart,
    send_at_and_quiet_hours
);
