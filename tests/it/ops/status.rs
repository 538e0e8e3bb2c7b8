//! What an operator reads: `status`, `trace`, the worker's health and metrics,
//! and `outbox prune`.

use super::{BROKEN, numbered, ok_stdout, with_workflow};
use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;

async fn status_shows_parked_rows_and_stream(backend: Backend) {
    let env = TestEnv::start_with(backend, "max_payload: 8192").await;
    env.enqueue_many("events.test.small", 20, 2).await;
    let h = &env.herald;
    ok_stdout(&h.run(&[
        "emit",
        "--subject",
        "events.test.big",
        "--payload",
        &json!({ "blob": "x".repeat(20_000) }).to_string(),
    ]));
    let mut relay = h.spawn(&["relay", "--relay-poll", "50ms", "--relay-max-attempts", "1"]);
    wait::until("the poison row is parked", wait::DEFAULT, || async {
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    env.wait_until_unpublished(1).await;
    let status: serde_json::Value =
        serde_json::from_str(&ok_stdout(&h.run(&["status", "--json"]))).unwrap();
    assert_eq!(status["outbox"]["parked"], 1, "{status}");
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    assert_eq!(status["stream"]["messages"], 20, "{status}");
    assert_eq!(status["deliveries"]["sent"], 0, "{status}");
    assert_eq!(status["dead_letters"], 0, "{status}");
    let text = ok_stdout(&h.run(&["status"]));
    assert!(text.contains("parked 1"), "{text}");
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    assert!(ok_stdout(&h.run(&["outbox", "retry"])).contains("re-queued 1"));
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await,
        0
    );
}

/// Before any relay ran there is no stream: status says so, and what
/// creates it, instead of only NATS's "stream not found".
#[tokio::test]
async fn status_before_any_relay_says_what_creates_the_stream() {
    let env = TestEnv::start(Backend::Sqlite).await;
    let out = env.herald.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("stream not found")
            && text.contains("a relay creates the stream when it starts"),
        "{text}"
    );
}

async fn prune_deletes_only_old_published_rows(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.a", 30, 3).await;
    let mut relay = env.herald.spawn(&["relay", "--relay-poll", "50ms"]);
    env.wait_all_published().await;
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    env.enqueue_many("events.test.b", 5, 0).await;
    let out = ok_stdout(&env.herald.run(&["outbox", "prune", "--older-than", "1h"]));
    assert!(out.contains("pruned 0"), "{out}");
    let out = ok_stdout(&env.herald.run(&["outbox", "prune", "--older-than", "0s"]));
    assert!(out.contains("pruned 30"), "{out}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM herald_outbox").await,
        5,
        "unpublished rows stay"
    );
}

both_backends!(
    status_shows_parked_rows_and_stream,
    prune_deletes_only_old_published_rows
);

/// `herald trace` follows one event through outbox, publish and delivery.
async fn trace_shows_an_events_life(backend: Backend) {
    let w = with_workflow(
        backend,
        &BROKEN.replace("{{event.greeting}}", "Hello {{event.name}}"),
    )
    .await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let _worker = w.h.spawn(&["worker"]);
    let id = ok_stdout(
        &w.run(&[
            "emit",
            "--subject",
            "events.test.hello",
            "--payload",
            r#"{"email": "t@example.com", "name": "T"}"#,
        ])
        .await,
    )
    .trim()
    .to_string();
    wait::until("the email is sent", wait::DEFAULT, || async {
        w.sink.count() == 1
    })
    .await;
    wait::until("the delivery is recorded", wait::DEFAULT, || async {
        w.env
            .scalar("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
            .await
            == 1
    })
    .await;
    let t: serde_json::Value =
        serde_json::from_str(&ok_stdout(&w.run(&["trace", &id, "--json"]).await)).unwrap();
    assert_eq!(t["outbox"]["subject"], "events.test.hello", "{t}");
    assert!(t["outbox"]["published_at"].is_string(), "{t}");
    assert_eq!(t["deliveries"][0]["workflow"], "greet", "{t}");
    assert_eq!(t["deliveries"][0]["state"], "sent", "{t}");
    assert_eq!(t["deliveries"][0]["recipient"], "t@example.com", "{t}");
    assert!(
        t["deliveries"][0]["smtp_response"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{t}"
    );
    let out = w.run(&["trace", &uuid::Uuid::now_v7().to_string()]).await;
    assert_eq!(out.status.code(), Some(2));
}

both_backends!(trace_shows_an_events_life);

/// The worker's --http: ready once its consumers are bound; counters move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_health_and_metrics() {
    let w = numbered(Backend::Sqlite).await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _worker = w.h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 3, 0).await;
    wait::until("3 emails", wait::DEFAULT, || async { w.sink.count() == 3 }).await;
    let get = |path: &'static str| herald_tests::http_get(addr.clone(), path);
    wait::until("the worker reports 3 sent", wait::DEFAULT, || async {
        get("/metrics").await.is_some_and(|m| {
            m.contains("herald_emails_sent_total{role=\"worker\",workflow=\"numbered\"} 3")
        })
    })
    .await;
    assert!(get("/readyz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get("/healthz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(
        get("/metrics")
            .await
            .unwrap()
            .contains("herald_send_latency_seconds_bucket")
    );
}
