//! Poison rows and NATS outages leave the relay running; its health and metrics
//! endpoints.

use super::relay_args;
use herald::outbox::{NewEvent, enqueue};
use herald_entities::outbox;
use herald_tests::db::Backend;
use herald_tests::env::{TestEnv, assert_once_and_ordered};
use herald_tests::{both_backends, wait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::json;
use std::time::Duration;

async fn poison_row_is_parked_others_flow(backend: Backend) {
    let env = TestEnv::start_with(backend, "max_payload: 8192").await;
    env.enqueue_many("events.test.small", 50, 5).await;
    let txn = env.conn.begin().await.unwrap();
    let poison = enqueue(
        &txn,
        NewEvent::new("events.test.big", json!({ "blob": "x".repeat(20_000) })),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    env.enqueue_many("events.test.small", 50, 5).await;
    let mut relay = env
        .herald
        .spawn(&relay_args(&["--relay-max-attempts", "2"]));
    wait::until("the poison row is parked", wait::DEFAULT, || async {
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    wait::until("the 100 others are published", wait::DEFAULT, || async {
        env.unpublished().await == 1
    })
    .await;
    assert_eq!(env.stream_len().await, 100);
    let row = outbox::Entity::find()
        .filter(outbox::Column::EventId.eq(poison.as_uuid()))
        .one(&env.conn)
        .await
        .unwrap()
        .unwrap();
    let err = row.last_error.unwrap_or_default();
    assert!(
        err.contains("max_payload"),
        "the error names the cause: {err}"
    );
    // Larger than the server takes: parked at once, not retried as transient.
    assert_eq!(row.attempts, 1);
    assert!(row.parked_at.is_some());
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

async fn nats_outage_relay_keeps_running(backend: Backend) {
    let mut env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 200, 10).await;
    let mut relay = env.herald.spawn(&relay_args(&[]));
    env.wait_all_published().await;
    env.nats.kill();
    env.enqueue_many("events.test.created", 200, 10).await;
    wait::until("the relay notices the outage", wait::DEFAULT, || async {
        relay.log().contains("relay cannot publish")
    })
    .await;
    assert!(
        relay.try_status().is_none(),
        "the relay does not exit while NATS is down"
    );
    env.nats.restart().await;
    env.wait_all_published().await;
    let msgs = env.stream_messages().await;
    assert_once_and_ordered(&msgs, 400);
    assert!(relay.log().contains("relay recovered"));
    let warnings = relay.log().matches("relay cannot publish").count();
    assert!(
        warnings <= 3,
        "logged per state change, not per row ({warnings} lines)"
    );
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

both_backends!(
    poison_row_is_parked_others_flow,
    nats_outage_relay_keeps_running
);

/// `--http`: liveness, readiness and Prometheus metrics of a running relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_serves_health_and_metrics() {
    let env = TestEnv::start(Backend::Sqlite).await;
    env.enqueue_many("events.test.created", 25, 5).await;
    let port = herald_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut relay = env.herald.spawn(&relay_args(&["--http", &addr]));
    env.wait_all_published().await;
    let get = |path: &'static str| herald_tests::http_get(addr.clone(), path);
    wait::until("the relay reports 25 published", wait::DEFAULT, || async {
        get("/metrics")
            .await
            .is_some_and(|m| m.contains("herald_outbox_published_total{role=\"relay\"} 25"))
    })
    .await;
    assert!(get("/healthz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.unwrap().starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await.unwrap();
    for name in [
        "herald_publish_latency_seconds_bucket",
        "herald_outbox_backlog",
        "herald_outbox_publish_failures_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(get("/nope").await.unwrap().starts_with("HTTP/1.1 404"));
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// A relay frozen past its lease (a failpoint pauses it 5 s right after
/// its claim; the lease is 2 s) does not publish its stale batch when it
/// wakes. By then another relay has published those rows and later rows
/// of the same aggregates, and the duplicate window (cut to 1 s on the
/// server here: relays refuse a lease over half their window) has passed:
/// publishing them again would put each event in the stream twice, the
/// second copy behind later events of its aggregate.
async fn a_relay_frozen_past_its_lease_leaves_its_batch(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 20, 2).await;
    let mut frozen_env = env.herald.clone();
    frozen_env.set("HERALD_FAILPOINT", "pause-once:5000:relay_after_claim");
    let args = relay_args(&[]);
    let mut frozen = frozen_env.spawn(&args);
    wait::until(
        "the first relay has claimed and froze",
        wait::DEFAULT,
        || async { frozen.log().contains("relay_after_claim: pausing") },
    )
    .await;
    let mut other = env.herald.spawn(&args);
    env.wait_all_published().await;
    // Both relays have applied their settings; the window is cut now.
    let js = env.nats.jetstream().await;
    let mut stream = js.get_stream("HERALD").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.duplicate_window = Duration::from_secs(1);
    js.update_stream(config).await.unwrap();
    env.enqueue_many("events.test.created", 20, 2).await;
    env.wait_all_published().await;
    wait::until("the frozen relay wakes", wait::DEFAULT, || async {
        frozen.log().contains("relay_after_claim: resuming")
    })
    .await;
    // A graceful stop finishes the batch in hand first.
    frozen.terminate(Duration::from_secs(30)).await;
    assert_eq!(env.stream_len().await, 40, "no event twice");
    assert_once_and_ordered(&env.stream_messages().await, 40);
    assert!(
        frozen.log().contains("outlived its lease"),
        "the frozen relay says why it left its batch:\n{}",
        frozen.log()
    );
    other.terminate(Duration::from_secs(30)).await;
}

both_backends!(a_relay_frozen_past_its_lease_leaves_its_batch);
