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
         AND o.ordering_key NOT IN (SELECT b.ordering_key \
           FROM unnest($3::bigint[], $4::bigint[]) AS r(lo, hi) \
           CROSS JOIN LATERAL (SELECT ordering_key FROM herald_outbox \
             WHERE seq BETWEEN r.lo AND r.hi AND ordering_key IS NOT NULL OFFSET 0) AS b))) \
     ORDER BY o.seq LIMIT $2 FOR UPDATE OF o SKIP LOCKED";

/// For each aggregate of the batch (the runs of seqs `$1..=$2` it holds),
/// its first unpublished row that the batch does not hold, if any. One
/// probe of `idx_herald_outbox_ordering` per aggregate (the scalar
/// subquery with its ORDER BY keeps the planner on that index; the
/// LATERAL subquery, fenced by OFFSET 0 so that it is not pulled up into a
/// join, reads the runs on the primary key: pulled up, PostgreSQL scanned
/// the whole aggregate index instead, 1.2 s a claim at a 1,000,000-row
/// backlog against 12 ms).
const FOREIGN_SQL: &str = "SELECT k.ordering_key AS key, (SELECT h.seq FROM herald_outbox h \
       WHERE h.ordering_key = k.ordering_key AND h.published_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[], $2::bigint[]) AS m(lo, hi) \
                         WHERE h.seq BETWEEN m.lo AND m.hi) \
       ORDER BY h.ordering_key, h.seq LIMIT 1) AS first_foreign \
     FROM (SELECT DISTINCT b.ordering_key FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) \
           CROSS JOIN LATERAL (SELECT ordering_key FROM herald_outbox \
             WHERE seq BETWEEN r.lo AND r.hi AND ordering_key IS NOT NULL OFFSET 0) AS b) AS k";

/// `seqs` (sorted) as runs of consecutive numbers, as two PostgreSQL array
/// literals (first, last). Statements carry seqs, not the aggregates' text:
/// a batch's seqs are a few runs, its keys up to tens of kilobytes, and a
/// parameter that large is written in pieces that wait on Nagle and the
/// server's delayed ACK (sqlx sets no TCP_NODELAY): 40 ms a statement,
/// measured.
fn seq_runs(seqs: &[i64]) -> (String, String) {
    let mut lo: Vec<String> = Vec::new();
    let mut hi: Vec<String> = Vec::new();
    let mut run: Option<(i64, i64)> = None;
    for &s in seqs {
        run = match run {
            Some((a, b)) if s == b + 1 => Some((a, s)),
            Some((a, b)) => {
                lo.push(a.to_string());
                hi.push(b.to_string());
                Some((s, s))
            }
            None => Some((s, s)),
        };
    }
    if let Some((a, b)) = run {
        lo.push(a.to_string());
        hi.push(b.to_string());
    }
    (
        format!("{{{}}}", lo.join(",")),
        format!("{{{}}}", hi.join(",")),
    )
}

/// A claimed batch: its rows, locked until the transaction ends.
pub struct LockedBatch {
    pub txn: DatabaseTransaction,
    pub rows: Vec<Claimed>,
}

/// Open the batch's transaction and lock up to `limit` publishable rows, in
/// seq order, keeping only the rows this batch may publish. No row of an
/// aggregate that a row in `busy` belongs to (the seqs this relay's other
/// batches in flight hold, sorted) is claimed: it could only be dropped.
pub async fn claim_locked(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: u32,
    busy: &[i64],
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
    let (busy_lo, busy_hi) = seq_runs(busy);
    let values: Vec<Value> = vec![
        now.into(),
        i64::from(limit).into(),
        busy_lo.into(),
        busy_hi.into(),
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
    if rows.iter().all(|r| r.ordering_key.is_none()) {
        return Ok(HashMap::new());
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let (lo, hi) = seq_runs(&seqs);
    let stmt =
        Statement::from_sql_and_values(DbBackend::Postgres, FOREIGN_SQL, [lo.into(), hi.into()]);
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

/// Make the space of pruned rows reusable (and refresh the statistics):
/// `VACUUM (ANALYZE)`, which does not block inserts or the relay's updates.
/// Autovacuum would do it, where it is on and keeps up; after each prune the
/// relay does not depend on it. A role that may not vacuum the table gets a
/// warning from PostgreSQL, not an error.
pub async fn vacuum(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("VACUUM (ANALYZE) herald_outbox")
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::seq_runs;

    #[test]
    fn seqs_travel_as_runs() {
        assert_eq!(seq_runs(&[]), ("{}".into(), "{}".into()));
        assert_eq!(
            seq_runs(&[3, 4, 5, 9, 11, 12]),
            ("{3,9,11}".into(), "{5,9,12}".into())
        );
    }
}
