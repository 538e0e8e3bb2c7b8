//! The relay's row-lock claim on PostgreSQL (`outbox/store/locked.rs`):
//! batches in flight together never split an aggregate.
use std::time::Duration;

use herald::internals::outbox::claim_locked;
use herald::outbox::{NewEvent, enqueue};
use herald_tests::db::{Backend, TestDb};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

/// Seqs of rows enqueued as (aggregate id) in this order: 1..=n.
async fn enqueue_rows(db: &sea_orm::DatabaseConnection, aggregates: &[&str]) {
    let txn = db.begin().await.unwrap();
    for (i, a) in aggregates.iter().enumerate() {
        enqueue(
            &txn,
            NewEvent::new("events.t.x", json!({"i": i})).aggregate("t", *a),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
}

fn seqs(b: &herald::internals::outbox::LockedBatch) -> Vec<i64> {
    b.rows.iter().map(|r| r.seq).collect()
}

#[tokio::test]
async fn a_second_batch_takes_nothing_of_an_aggregate_the_first_holds() {
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    // x: 1, 2, 4, 5; y: 3, 6.
    enqueue_rows(&db, &["x", "x", "y", "x", "x", "y"]).await;
    let now = chrono::Utc::now();
    let first = claim_locked(&db, now, 2, &[], LEASE).await.unwrap();
    assert_eq!(seqs(&first), [1, 2]);
    // Rows 4 and 5 are not locked, but 1 and 2 are unpublished outside the
    // second batch: publishing 4 before them would reorder x.
    let second = claim_locked(&db, now, 100, &[], LEASE).await.unwrap();
    assert_eq!(seqs(&second), [3, 6]);
    second.txn.rollback().await.unwrap();
    // The first batch failed (rolled back): everything is claimable again.
    first.txn.rollback().await.unwrap();
    let third = claim_locked(&db, now, 100, &[], LEASE).await.unwrap();
    assert_eq!(seqs(&third), [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_batch_leaves_out_the_aggregates_its_relay_has_in_flight() {
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    enqueue_rows(&db, &["x", "y", "x", "z", "z"]).await;
    let now = chrono::Utc::now();
    // The other batch holds rows 1 (x) and 4 (z).
    let b = claim_locked(&db, now, 100, &[1, 4], LEASE).await.unwrap();
    assert_eq!(seqs(&b), [2]);
    b.txn.rollback().await.unwrap();
}

#[tokio::test]
async fn a_batch_never_holds_an_aggregate_with_a_gap() {
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    // x: 1, 2, 3; y: 4.
    enqueue_rows(&db, &["x", "x", "x", "y"]).await;
    // Row 2 is locked elsewhere (as by a claim running at the same moment,
    // which SKIP LOCKED splits an aggregate with): this batch gets 1 and 3
    // of x, and must not publish 3 before 2.
    let other = db.begin().await.unwrap();
    other
        .execute_unprepared("SELECT seq FROM herald_outbox WHERE seq = 2 FOR UPDATE")
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let b = claim_locked(&db, now, 100, &[], LEASE).await.unwrap();
    assert_eq!(seqs(&b), [1, 4]);
    other.rollback().await.unwrap();
}
