//! Every committed row is published once: kills mid-batch, late commits, several
//! relays, batches larger than the ack cap.

use super::relay_args;
use herald::outbox::{NewEvent, enqueue};
use herald_tests::db::Backend;
use herald_tests::env::{TestEnv, assert_once_and_ordered};
use herald_tests::process::Herald;
use herald_tests::{both_backends, wait};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use std::time::Duration;

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

both_backends!(
    publishes_1000_exactly_once,
    kill9_mid_batch_loses_nothing,
    late_commit_with_lower_seq_is_published,
    several_relays_share_without_duplicates
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
