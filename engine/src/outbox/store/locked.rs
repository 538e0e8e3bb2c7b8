//! The relay's claim on PostgreSQL: a batch held by row locks in one
//! transaction, from the claim to the published mark, instead of a lease
//! written to every row and cleared again.
//!
//! Each row is then written once (the published mark) where a lease cost a
//! second non-HOT UPDATE per row: with the producer contract's CHECKs and
//! five indexes, that UPDATE was half of a batch's database time (measured:
//! 16–25 ms for 500 rows, against 1.6 ms to lock them).
//!
//! A crash, a lost connection or a stalled relay ends the transaction
//! (`idle_in_transaction_session_timeout` is set to the lease time), which
//! releases every row at once; what was published is published again with the
//! same `Nats-Msg-Id` and dropped by JetStream as a duplicate.
//!
//! Order per aggregate, with several relays or several batches of one relay
//! in flight: a row is published only when every earlier unpublished row of
//! its aggregate is in the same batch. The claim cannot see that by itself
//! (two claims running at once split an aggregate's rows between them, and
//! its snapshot may miss a failure another batch commits meanwhile), so
//! after locking, a second statement finds each aggregate's first
//! unpublished row the batch does not hold, and the batch keeps only its
//! rows of the aggregate below that one. Any snapshot taken after the claim
//! will do: an earlier row it shows unpublished cuts the batch there, one it
//! shows published is in the stream already. The relay passes the aggregates of its own other batch in
//! flight, so that a batch does not fill up with rows it would drop.
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};

use super::{Claimed, claimed_from};

const CLAIM_SQL: &str = "SELECT seq, event_id, subject, ordering_key, payload, headers, created_at, attempts \
     FROM herald_outbox o \
     WHERE o.published_at IS NULL AND o.parked_at IS NULL \
       AND (o.lease_until IS NULL OR o.lease_until < $1) \
       AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= $1) \
       AND (o.ordering_key IS NULL OR ( \
         o.ordering_key NOT IN ( \
           SELECT h.ordering_key FROM herald_outbox h \
           WHERE h.published_at IS NULL \
             AND (h.lease_until IS NOT NULL OR h.next_attempt_at IS NOT NULL) \
             AND h.ordering_key IS NOT NULL \
             AND (h.parked_at IS NOT NULL OR h.lease_until >= $1 OR h.next_attempt_at > $1)) \
         AND o.ordering_key NOT IN (SELECT json_array_elements_text($3::json)))) \
     ORDER BY o.seq LIMIT $2 FOR UPDATE OF o SKIP LOCKED";

/// For each aggregate of the batch (with the seqs the batch holds of it),
/// its first unpublished row that the batch does not hold, if any. One
/// probe of `idx_herald_outbox_ordering` per aggregate (the scalar
/// subquery with its ORDER BY keeps the planner on that index).
const FOREIGN_SQL: &str = "SELECT k.key, (SELECT h.seq FROM herald_outbox h \
       WHERE h.ordering_key = k.key AND h.published_at IS NULL \
         AND h.seq NOT IN (SELECT json_array_elements_text(k.seqs)::bigint) \
       ORDER BY h.ordering_key, h.seq LIMIT 1) AS first_foreign \
     FROM json_to_recordset($1::json) AS k(key varchar, seqs json)";

/// A claimed batch: its rows, locked until the transaction ends.
pub struct LockedBatch {
    pub txn: DatabaseTransaction,
    pub rows: Vec<Claimed>,
}

/// Open the batch's transaction and lock up to `limit` publishable rows, in
/// seq order, keeping only the aggregates this batch may publish. Rows of
/// the `busy` aggregates (those this relay's other batch in flight holds)
/// are not claimed: they could only be dropped.
pub async fn claim_locked(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: u32,
    busy: &[&str],
    hold_at_most: Duration,
) -> Result<LockedBatch, DbErr> {
    let txn = db.begin().await?;
    // Bookkeeping needs no WAL flush (a lost commit republishes, and the
    // stream drops the duplicate). JIT costs more than the claim. The claim
    // must walk the pending index in seq order and stop at `limit`: with
    // statistics older than a burst of inserts, PostgreSQL chose a bitmap
    // scan of the whole backlog and a sort instead (measured: 38 ms against
    // 0.9 ms for 500 of 20,000 rows). A relay that stalls must not hold its
    // rows for longer than a lease.
    let timeout_ms = hold_at_most.as_millis().clamp(1_000, i32::MAX as u128);
    txn.execute_unprepared(&format!(
        "SET LOCAL synchronous_commit = off; SET LOCAL jit = off; \
         SET LOCAL enable_bitmapscan = off; \
         SET LOCAL idle_in_transaction_session_timeout = {timeout_ms}"
    ))
    .await?;
    let values: Vec<Value> = vec![
        now.into(),
        i64::from(limit).into(),
        serde_json::json!(busy).to_string().into(),
    ];
    let found = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM_SQL,
            values,
        ))
        .await?;
    let mut rows = Vec::with_capacity(found.len());
    for r in &found {
        rows.push(claimed_from(r)?);
    }
    rows.sort_by_key(|c| c.seq);
    let foreign = first_foreign(&txn, &rows).await?;
    if !foreign.is_empty() {
        rows.retain(
            |r| match r.ordering_key.as_ref().and_then(|k| foreign.get(k)) {
                Some(&first) => r.seq < first,
                None => true,
            },
        );
    }
    Ok(LockedBatch { txn, rows })
}

/// For each aggregate of `rows` that has one, its first unpublished row
/// outside the batch, read with a snapshot taken after the rows were
/// locked. The batch may publish an aggregate's rows only below it: SKIP
/// LOCKED can split an aggregate between two claims running at once (one
/// batch holding seqs 1 and 3, the other 2), and a row that failed in
/// another batch is seen here even when the claim's snapshot missed it.
async fn first_foreign(
    txn: &DatabaseTransaction,
    rows: &[Claimed],
) -> Result<HashMap<String, i64>, DbErr> {
    let mut held: HashMap<&str, Vec<i64>> = HashMap::new();
    for r in rows {
        if let Some(k) = r.ordering_key.as_deref() {
            held.entry(k).or_default().push(r.seq);
        }
    }
    if held.is_empty() {
        return Ok(HashMap::new());
    }
    // One JSON parameter: the keys are the application's text.
    let pairs: Vec<serde_json::Value> = held
        .into_iter()
        .map(|(k, seqs)| serde_json::json!({"key": k, "seqs": seqs}))
        .collect();
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        FOREIGN_SQL,
        [Value::from(serde_json::Value::Array(pairs).to_string())],
    );
    let mut out = HashMap::new();
    for r in txn.query_all_raw(stmt).await? {
        if let Some(first) = r.try_get::<Option<i64>>("", "first_foreign")? {
            out.insert(r.try_get::<String>("", "key")?, first);
        }
    }
    Ok(out)
}

/// Refresh PostgreSQL's statistics of the outbox. A burst of inserts makes
/// the old statistics claim that almost no row is pending, and with them the
/// planner walked the whole backlog for every aggregate of the order check
/// (measured: 48 ms a batch of 500 against 2 ms once analyzed). Autovacuum
/// analyzes only after a tenth of the table changed and its next nap; the
/// relay calls this when it finds a backlog. Sampling costs tens of ms; a
/// role that may not analyze the table gets a warning, not an error.
pub async fn refresh_statistics(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("ANALYZE herald_outbox").await?;
    Ok(())
}
