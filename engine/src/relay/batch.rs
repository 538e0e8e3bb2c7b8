//! One relay iteration: claim a batch, publish it, record the outcome.
//!
//! Order per aggregate: a batch is published in rounds. Round `r` holds the
//! `r`-th row of each aggregate in the batch (rows without an aggregate all
//! go in round 0); a round is published pipelined and its acks awaited
//! before the next. So a row is never published while an earlier row of its
//! aggregate is unacknowledged, and when a row fails, the rows of its
//! aggregate behind it in the batch are released unpublished: the failed
//! row (backing off or parked) then holds its aggregate at the next claim.
use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::publish::PublishAck;
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};

use super::fence::Fence;
use super::publish::{self, PublishFailure};
use super::{BatchOutcome, Relay, RelayError, RelayErrorKind};
use crate::outbox::store::{self, Claimed};
use crate::telemetry::RelayBatch;

/// How a batch holds its rows until they are written back.
enum Hold {
    /// Row locks in this transaction (PostgreSQL): committed with the marks.
    Locked(DatabaseTransaction),
    /// Leases on the rows, owned by this relay (SQLite).
    Leased,
}

/// A batch's rows in rounds, each round in seq order.
fn rounds(rows: Vec<(&Claimed, HeaderMap)>) -> Vec<Vec<(&Claimed, HeaderMap)>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<(&Claimed, HeaderMap)>> = Vec::new();
    for (row, h) in rows {
        let r = match row.ordering_key.as_deref() {
            Some(k) => {
                let n = seen.entry(k).or_insert(0);
                *n += 1;
                *n - 1
            }
            None => 0,
        };
        if out.len() <= r {
            out.resize_with(r + 1, Vec::new);
        }
        out[r].push((row, h));
    }
    out
}

/// What happened to the rows of one batch, written back in one place.
#[derive(Default)]
struct Results<'a> {
    acks: Vec<(i64, u64)>,
    /// Failed this attempt (counted): backs off, parks at max attempts.
    failed: Vec<(&'a Claimed, String)>,
    /// Can never be published: parked now.
    park: Vec<(&'a Claimed, String)>,
    /// Untouched: their lease is given back, no attempt counted.
    release: Vec<i64>,
    transport_error: Option<String>,
    stream_missing: bool,
    /// Rows were left unpublished because the batch outlived its lease.
    expired: bool,
}

/// Precheck every claimed row: the ones ready to publish, with their
/// headers; a row that can never be published is parked now and holds its
/// aggregate.
fn precheck_all<'r>(
    rows: &'r [Claimed],
    max_payload: usize,
    trace: &mut RelayBatch,
    res: &mut Results<'r>,
    held: &mut HashSet<&'r str>,
) -> Vec<(&'r Claimed, HeaderMap)> {
    let mut ready = Vec::with_capacity(rows.len());
    for row in rows {
        let traced = |extra: &_, h: &mut _| {
            trace.publish(row.seq, &row.event_id.to_string(), &row.subject, extra, h)
        };
        match publish::precheck_with(row, max_payload, traced) {
            Ok(h) => ready.push((row, h)),
            Err(f) => {
                trace.failed(row.seq, "parked", f.message());
                if let Some(k) = row.ordering_key.as_deref() {
                    held.insert(k);
                }
                res.park.push((row, f.message().to_string()));
            }
        }
    }
    ready
}

impl Relay {
    /// Claim, publish and mark one batch.
    ///
    /// ```no_run
    /// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald::{metrics::Metrics, relay::{Relay, RelayConfig}};
    /// # let db = herald::db::connect("sqlite://herald.db").await?;
    /// let relay = Relay::new(db, js, RelayConfig::default(), Metrics::new());
    /// let done = relay.run_once().await?; // e.g. in a test, instead of `run`
    /// println!("{} claimed, {} published, {} parked", done.claimed, done.published, done.parked);
    /// # Ok(()) }
    /// ```
    pub async fn run_once(&self) -> Result<BatchOutcome, RelayError> {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let (hold, rows) = self.claim().await?;
        let fence = Fence::new(started, started_at, self.cfg.lease);
        let _busy = self.busy.hold(&rows);
        let mut out = BatchOutcome {
            claimed: rows.len(),
            claim_ms: elapsed_ms(started),
            ..Default::default()
        };
        if rows.is_empty() {
            if let Hold::Locked(txn) = hold {
                txn.commit().await?;
            }
            return Ok(out);
        }
        // Test builds only: the process frozen right after claiming rows.
        if let Some(d) = crate::worker::failpoint::pause("relay_after_claim") {
            tracing::warn!(
                ms = d.as_millis() as u64,
                "failpoint relay_after_claim: pausing"
            );
            tokio::time::sleep(d).await;
            tracing::warn!("failpoint relay_after_claim: resuming");
        }
        let max_payload = self.js.client().server_info().max_payload;
        let mut trace = RelayBatch::start(started_at, rows.len());
        let mut res = Results::default();
        // Aggregates with a row that did not go out in this batch.
        let mut held: HashSet<&str> = HashSet::new();
        let ready = precheck_all(&rows, max_payload, &mut trace, &mut res, &mut held);
        for round in rounds(ready) {
            let (go, hold): (Vec<_>, Vec<_>) = round.into_iter().partition(|(row, _)| {
                res.transport_error.is_none()
                    && row
                        .ordering_key
                        .as_deref()
                        .is_none_or(|k| !held.contains(k))
            });
            res.release.extend(hold.iter().map(|(row, _)| row.seq));
            // Test builds only: a row the server "refused" before it was
            // published, to prove that its aggregate waits behind it.
            let (go, injected): (Vec<_>, Vec<_>) = go.into_iter().partition(|(row, _)| {
                row.attempts > 0 || !crate::worker::failpoint::fails("relay_publish")
            });
            for (row, _) in injected {
                if let Some(k) = row.ordering_key.as_deref() {
                    held.insert(k);
                }
                res.failed
                    .push((row, "injected failure (failpoint)".into()));
            }
            if go.is_empty() {
                continue;
            }
            for (row, r) in publish::publish_all(&self.js, go, || fence.expired()).await {
                self.note_published(row, r, &mut trace, &mut res, &mut held, &mut out);
            }
        }
        if res.expired {
            tracing::warn!(
                lease_ms = self.cfg.lease.as_millis() as u64,
                released = res.release.len(),
                "this batch outlived its lease (was the relay paused or starved?): its rows not yet published are left to the next claim, by this relay or another"
            );
        }
        out.publish_ms = elapsed_ms(started) - out.claim_ms;
        let recorded = self.record(&mut out, res, hold).await;
        match &recorded {
            Ok(o) => trace.end(o.published, o.duplicates, o.failed, o.parked),
            // A database error may quote the values of a row: the log has it.
            Err(e) if e.kind() == super::RelayErrorKind::Database => {
                trace.abort("database error (the relay's log says which)")
            }
            Err(e) => trace.abort(&e.to_string()),
        }
        recorded
    }

    /// One row's publish result: an ack is counted and recorded; a failure
    /// holds the row's aggregate for the rest of the batch and is recorded
    /// by its class (parked, failed, or released untouched).
    fn note_published<'r>(
        &self,
        row: &'r Claimed,
        r: Result<PublishAck, PublishFailure>,
        trace: &mut RelayBatch,
        res: &mut Results<'r>,
        held: &mut HashSet<&'r str>,
        out: &mut BatchOutcome,
    ) {
        let failure = match r {
            Ok(ack) => {
                trace.published(row.seq, ack.sequence, ack.duplicate);
                res.acks.push((row.seq, ack.sequence));
                if ack.duplicate {
                    out.duplicates += 1;
                    self.metrics.outbox_duplicates.inc();
                } else {
                    out.published += 1;
                    self.metrics.outbox_published.inc();
                }
                let lat = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                self.metrics.publish_latency.observe(lat);
                return;
            }
            Err(f) => f,
        };
        let outcome = match failure {
            PublishFailure::Permanent(_) => "parked",
            PublishFailure::Row(_) => "failed",
            PublishFailure::NoStream(_)
            | PublishFailure::Transport(_)
            | PublishFailure::Expired(_) => "released",
        };
        trace.failed(row.seq, outcome, failure.message());
        if let Some(k) = row.ordering_key.as_deref() {
            held.insert(k);
        }
        match failure {
            PublishFailure::Permanent(m) => res.park.push((row, m)),
            PublishFailure::Row(m) => res.failed.push((row, m)),
            PublishFailure::NoStream(m) => {
                res.stream_missing = true;
                res.release.push(row.seq);
                res.transport_error.get_or_insert(m);
            }
            PublishFailure::Transport(m) => {
                res.release.push(row.seq);
                res.transport_error.get_or_insert(m);
            }
            PublishFailure::Expired(_) => {
                res.release.push(row.seq);
                res.expired = true;
            }
        }
    }

    /// Claim a batch: on PostgreSQL by row locks held in the batch's
    /// transaction (one write per row), elsewhere by leases on the rows.
    async fn claim(&self) -> Result<(Hold, Vec<Claimed>), RelayError> {
        let now = Utc::now();
        if self.db.get_database_backend() == DbBackend::Postgres {
            let busy = self.busy.others();
            let b = store::claim_locked(&self.db, now, self.cfg.batch_size, &busy, self.cfg.lease)
                .await?;
            return Ok((Hold::Locked(b.txn), b.rows));
        }
        let until = now
            + chrono::Duration::from_std(self.cfg.lease).unwrap_or(chrono::Duration::seconds(30));
        let rows = store::claim(
            &self.db,
            &self.cfg.instance,
            now,
            until,
            self.cfg.batch_size,
        )
        .await?;
        Ok((Hold::Leased, rows))
    }

    async fn record(
        &self,
        out: &mut BatchOutcome,
        res: Results<'_>,
        hold: Hold,
    ) -> Result<BatchOutcome, RelayError> {
        let mark_started = Instant::now();
        match hold {
            // The commit releases the rows that were not marked.
            Hold::Locked(txn) => {
                self.write_back(&txn, None, out, &res).await?;
                txn.commit().await?;
            }
            Hold::Leased => {
                let owner = Some(self.cfg.instance.as_str());
                self.write_back(&self.db, owner, out, &res).await?;
                store::release(&self.db, &self.cfg.instance, &res.release).await?;
            }
        }
        out.mark_ms = elapsed_ms(mark_started);
        if res.stream_missing {
            return Err(RelayError::new(
                RelayErrorKind::NoStream,
                format!(
                    "the events stream is missing: {}",
                    res.transport_error.unwrap_or_default()
                ),
            ));
        }
        if let Some(e) = res.transport_error
            && res.acks.is_empty()
        {
            return Err(RelayError::new(
                RelayErrorKind::Unreachable,
                format!("NATS: {e}"),
            ));
        }
        Ok(out.clone())
    }

    /// Write the batch's results (the published mark, parked and failed
    /// rows) through `c`: the batch's transaction, or the pool with the
    /// lease `owner`.
    async fn write_back(
        &self,
        c: &impl ConnectionTrait,
        owner: Option<&str>,
        out: &mut BatchOutcome,
        res: &Results<'_>,
    ) -> Result<(), RelayError> {
        let at = Utc::now();
        store::mark_published(c, owner, at, &res.acks).await?;
        for (row, msg) in &res.park {
            out.parked += 1;
            self.metrics.outbox_parked.inc();
            tracing::error!(seq = row.seq, event_id = %row.event_id, subject = %row.subject, error = %msg,
                "outbox row parked: it cannot be published; its aggregate waits behind it (`herald outbox retry` re-drives it)");
            store::record_failure(c, owner, row.seq, msg, at, Some(at)).await?;
        }
        for (row, msg) in &res.failed {
            out.failed += 1;
            self.metrics.outbox_publish_failures.inc();
            let attempt = u32::try_from(row.attempts).unwrap_or(0) + 1;
            let delay = self.cfg.retry.delay(attempt);
            let next = at + chrono::Duration::from_std(delay).unwrap_or_default();
            let park = (attempt >= self.cfg.retry.max_attempts).then_some(at);
            if park.is_some() {
                out.parked += 1;
                self.metrics.outbox_parked.inc();
                tracing::error!(seq = row.seq, event_id = %row.event_id, subject = %row.subject, error = %msg,
                    attempts = attempt, "outbox row parked after its last attempt; `herald outbox retry` re-drives it");
            } else {
                tracing::warn!(seq = row.seq, event_id = %row.event_id, subject = %row.subject, error = %msg,
                    retry_in_ms = delay.as_millis() as u64, "publish failed");
            }
            store::record_failure(c, owner, row.seq, msg, next, park).await?;
        }
        Ok(())
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, key: Option<&str>) -> Claimed {
        Claimed {
            seq,
            event_id: uuid::Uuid::nil(),
            subject: "events.a".into(),
            ordering_key: key.map(str::to_string),
            payload: "{}".into(),
            headers: "{}".into(),
            created_at: Utc::now(),
            attempts: 0,
        }
    }

    #[test]
    fn rounds_take_one_row_per_aggregate_each() {
        let rows = [
            row(1, Some("a")),
            row(2, Some("a")),
            row(3, None),
            row(4, Some("b")),
            row(5, Some("a")),
            row(6, None),
        ];
        let r = rounds(rows.iter().map(|r| (r, HeaderMap::new())).collect());
        let seqs: Vec<Vec<i64>> = r
            .iter()
            .map(|round| round.iter().map(|(r, _)| r.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![1, 3, 4, 6], vec![2], vec![5]]);
    }
}
