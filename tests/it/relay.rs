//! The relay: every committed row reaches the stream once, whatever crashes.
use std::time::Duration;

use herald::outbox::{NewEvent, enqueue};
use herald_entities::outbox;
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::env::{TestEnv, assert_once_and_ordered};
use herald_tests::process::Herald;
use herald_tests::wait;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::json;

const FAST: &[&str] = &["relay", "--relay-lease", "2s", "--relay-poll", "50ms"];

fn relay_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

/// Parse `published=N duplicates=M` from the relay's stop line.
fn stop_counts(relay: &Herald) -> (u64, u64) {
    let log = relay.log();
    let line = log
        .lines()
        .find(|l| l.contains("relay stopped"))
        .unwrap_or_else(|| panic!("no stop line in relay log:\n{log}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("published"), field("duplicates"))
}

async fn publishes_1000_exactly_once(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 1000, 10).await;
    let mut relay = env.herald.spawn(&relay_args(&[]));
    env.wait_all_published().await;
    let msgs = env.stream_messages().await;
    assert_eq!(msgs.len(), 1000);
    assert_once_and_ordered(&msgs, 1000);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE stream_seq IS NULL")
            .await,
        0,
        "every row records its stream sequence"
    );
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

async fn kill9_mid_batch_loses_nothing(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 3000, 30).await;
    let mut relay = env.herald.spawn(&relay_args(&["--relay-batch", "100"]));
    wait::until(
        "the relay has published some rows",
        wait::DEFAULT,
        || async { env.stream_len().await >= 300 },
    )
    .await;
    relay.kill9();
    assert!(env.unpublished().await > 0, "the kill happened mid-run");
    let mut relay = env.herald.spawn(&relay_args(&["--relay-batch", "100"]));
    env.wait_all_published().await;
    let msgs = env.stream_messages().await;
    assert_eq!(
        msgs.len(),
        3000,
        "re-published rows were dropped as duplicates"
    );
    assert_once_and_ordered(&msgs, 3000);
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// A row whose transaction commits after a later row was published is still published.
async fn late_commit_with_lower_seq_is_published(backend: Backend) {
    let env = TestEnv::start(backend).await;
    let mut relay = env.herald.spawn(&relay_args(&[]));
    if backend == Backend::Postgres {
        // A real interleaving: A takes the lower seq, B commits first.
        let a = env.conn.begin().await.unwrap();
        let id_a = enqueue(&a, NewEvent::new("events.test.a", json!({})))
            .await
            .unwrap();
        let b = env.conn.begin().await.unwrap();
        let id_b = enqueue(&b, NewEvent::new("events.test.b", json!({})))
            .await
            .unwrap();
        b.commit().await.unwrap();
        wait::until("B is published", wait::DEFAULT, || async {
            env.stream_len().await == 1
        })
        .await;
        a.commit().await.unwrap();
        env.wait_all_published().await;
        let msgs = env.stream_messages().await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].msg_id, id_b.to_string());
        assert_eq!(msgs[1].msg_id, id_a.to_string());
        assert!(
            msgs[1].outbox_seq < msgs[0].outbox_seq,
            "A has the lower seq"
        );
    } else {
        // SQLite serialises writers, so commit order is seq order; the same
        // situation arises when a row appears with a seq below published ones.
        let txn = env.conn.begin().await.unwrap();
        let id_b = enqueue(&txn, NewEvent::new("events.test.b", json!({})))
            .await
            .unwrap();
        txn.execute_unprepared("UPDATE herald_outbox SET seq = 1000")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        wait::until("B is published", wait::DEFAULT, || async {
            env.stream_len().await == 1
        })
        .await;
        let txn = env.conn.begin().await.unwrap();
        let id_a = enqueue(&txn, NewEvent::new("events.test.a", json!({})))
            .await
            .unwrap();
        txn.execute_unprepared("UPDATE herald_outbox SET seq = 5 WHERE seq <> 1000")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        env.wait_all_published().await;
        let msgs = env.stream_messages().await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].msg_id, id_b.to_string());
        assert_eq!(msgs[1].msg_id, id_a.to_string());
    }
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

async fn several_relays_share_without_duplicates(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 5000, 50).await;
    let mut relays: Vec<Herald> = (0..3)
        .map(|_| env.herald.spawn(&relay_args(&["--relay-batch", "50"])))
        .collect();
    env.wait_all_published().await;
    let mut published = 0;
    for r in &mut relays {
        assert_eq!(
            r.terminate(Duration::from_secs(30)).await.code(),
            Some(0),
            "SIGTERM exits 0"
        );
        let (p, d) = stop_counts(r);
        assert_eq!(d, 0, "no event was published by two relays");
        published += p;
    }
    assert_eq!(
        published, 5000,
        "PubAcks with duplicate=false, summed over relays"
    );
    let msgs = env.stream_messages().await;
    assert_eq!(msgs.len(), 5000);
    assert_once_and_ordered(&msgs, 5000);
}

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
    publishes_1000_exactly_once,
    kill9_mid_batch_loses_nothing,
    late_commit_with_lower_seq_is_published,
    several_relays_share_without_duplicates,
    poison_row_is_parked_others_flow,
    nats_outage_relay_keeps_running,
);

/// A batch larger than async-nats' default cap on acks in flight (5,000)
/// must not wait forever for a free slot.
async fn batch_larger_than_ack_cap_completes(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.created", 6000, 60).await;
    let mut relay = env.herald.spawn(&relay_args(&["--relay-batch", "6000"]));
    env.wait_all_published().await;
    assert_eq!(env.stream_len().await, 6000);
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

both_backends!(batch_larger_than_ack_cap_completes);

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

/// A row with a subject no stream covers (written before the database
/// refused such rows, or with the checks off) used to stay pending forever
/// with `attempts 0` and no error. It is parked at once, naming the cause,
/// and only its own aggregate waits behind it.
async fn a_subject_no_stream_covers_is_parked_at_once(backend: Backend) {
    let env = TestEnv::start(backend).await;
    let sql =
        |s: &str| sea_orm::Statement::from_string(env.conn.get_database_backend(), s.to_string());
    // Write the row as an old schema (or plain SQL without the checks) could.
    match backend {
        Backend::Postgres => {
            env.conn
                .execute_raw(sql(
                    "ALTER TABLE herald_outbox DROP CONSTRAINT herald_outbox_subject_under_events",
                ))
                .await
                .unwrap();
        }
        Backend::Sqlite => {}
    }
    let txn = env.conn.begin().await.unwrap();
    if backend == Backend::Sqlite {
        txn.execute_raw(sql("PRAGMA ignore_check_constraints = ON"))
            .await
            .unwrap();
    }
    txn.execute_raw(sql(
        "INSERT INTO herald_outbox (subject, payload, aggregate_type, aggregate_id) \
         VALUES ('orders.created', '{}', 'order', '1')",
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();
    if backend == Backend::Sqlite {
        env.conn
            .execute_raw(sql("PRAGMA ignore_check_constraints = OFF"))
            .await
            .unwrap();
    }
    let txn = env.conn.begin().await.unwrap();
    for (agg, n) in [("1", 1), ("2", 2)] {
        enqueue(
            &txn,
            NewEvent::new("events.order.updated", json!({"n": n})).aggregate("order", agg),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    let mut relay = env.herald.spawn(&relay_args(&[]));
    wait::until("the bad row is parked", wait::DEFAULT, || async {
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    // order/2 is published; order/1's later event waits behind the parked row.
    wait::until(
        "the other aggregate is published",
        wait::DEFAULT,
        || async { env.stream_len().await == 1 },
    )
    .await;
    let row = outbox::Entity::find()
        .filter(outbox::Column::Subject.eq("orders.created"))
        .one(&env.conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 1, "parked at once");
    let err = row.last_error.unwrap_or_default();
    assert!(
        err.contains("no stream covers subject \"orders.created\""),
        "{err}"
    );
    assert_eq!(env.unpublished().await, 2);
    let status = env.herald.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["held"]["outbox"][0]["aggregate"], "order/1",
        "{status}"
    );
    assert_eq!(status["held"]["outbox"][0]["waiting"], 1, "{status}");
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

both_backends!(a_subject_no_stream_covers_is_parked_at_once);

/// An idle relay notices that the stream is gone (deleted by hand, lost with
/// a cluster's storage) and recreates it within seconds, without waiting for
/// the next event: the workers' consumers need it.
async fn an_idle_relay_recreates_a_lost_stream(backend: Backend) {
    let env = TestEnv::start(backend).await;
    let _relay = env.herald.spawn(&relay_args(&[]));
    let js = env.nats.jetstream().await;
    wait::until("the relay created the stream", wait::DEFAULT, || async {
        js.get_stream("HERALD").await.is_ok()
    })
    .await;
    js.delete_stream("HERALD").await.unwrap();
    wait::until(
        "the idle relay recreated the stream",
        wait::DEFAULT,
        || async { js.get_stream("HERALD").await.is_ok() },
    )
    .await;
}

both_backends!(an_idle_relay_recreates_a_lost_stream);

/// A second stream name on a server whose `events.>` another stream
/// already takes (two installs, or a second `--stream`, on one server):
/// relay and worker exit 1 at once naming the overlap and what to do,
/// instead of waiting as if a cluster were electing its leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_subjects_another_takes_is_refused_at_once() {
    let env = TestEnv::start(Backend::Sqlite).await;
    let js = env.nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OTHER".into(),
        subjects: vec!["events.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mail = tempfile::tempdir().unwrap();
    let capture = format!("file://{}", mail.path().display());
    let workflows = herald_tests::example_workflows().display().to_string();
    for args in [
        &["relay", "--stream", "MINE"][..],
        &[
            "worker",
            "--stream",
            "MINE",
            "--smtp-url",
            &capture,
            "--workflows",
            &workflows,
            "--public-url",
            "https://mail.example.org",
            "--unsubscribe-secret",
            "0123456789abcdef-test-secret",
        ],
    ] {
        let mut p = env.herald.spawn(args);
        let st = p.wait(Duration::from_secs(20)).await;
        assert_eq!(st.code(), Some(1), "{args:?}: {}", p.log());
        assert!(
            p.log()
                .contains("another stream on this NATS server already takes events.>"),
            "{args:?}: {}",
            p.log()
        );
    }
}
