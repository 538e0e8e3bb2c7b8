//! Streams the relay needs: a subject no stream covers, a lost stream recreated,
//! subjects another stream takes.

use super::relay_args;
use herald::outbox::{NewEvent, enqueue};
use herald_entities::outbox;
use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::{both_backends, wait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::json;
use std::time::Duration;

/// A row under `orders.` (no stream covers it), written as an old schema
/// (or plain SQL without the checks) could.
async fn write_a_row_outside_the_stream(env: &TestEnv, backend: Backend) {
    let sql =
        |s: &str| sea_orm::Statement::from_string(env.conn.get_database_backend(), s.to_string());
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
}

/// A row with a subject no stream covers (written before the database
/// refused such rows, or with the checks off) used to stay pending forever
/// with `attempts 0` and no error. It is parked at once, naming the cause,
/// and only its own aggregate waits behind it.
async fn a_subject_no_stream_covers_is_parked_at_once(backend: Backend) {
    let env = TestEnv::start(backend).await;
    write_a_row_outside_the_stream(&env, backend).await;
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
