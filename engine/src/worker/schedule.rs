//! Deliveries that wait, kept in the database (`herald_schedule`), never in
//! memory: a restart loses nothing and sends nothing twice.
//! - `delay: 1h`, `send_at: "{{…}}"` and `quiet_hours`: the event is stored
//!   whole with the time it is due; its deliveries are recorded `scheduled`.
//! - `digest`: events whose key renders the same join one open digest (from
//!   its first event, for `window`, or until `max`); each event is acked only
//!   once its membership is committed. When due, the digest is one email
//!   whose ledger key and Message-ID are the digest's own id.
//!
//! A scheduled event settles its place in its aggregate's order (the later
//! events of the aggregate do not wait for the delay). The schedule loop of
//! each worker claims due rows with a lease, as the relay claims outbox rows,
//! so several workers share them and a dead one's are taken over.
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use serde_json::json;

use super::process::ProcessOutcome;
use super::{Disposition, Event, Worker};
use crate::EventId;
use crate::ledger::{self, Key};
use crate::workflow::render::{Outcome, RenderError};
use crate::workflow::{QuietHours, TimeZone, Workflow};
use herald_entities::delivery::DeliveryState;

use crate::db::ph;

/// What the schedule decided for an event.
pub(crate) enum Decision {
    /// Send it now, the normal way.
    Now,
    /// Stored; the message may be acked.
    Scheduled(ProcessOutcome),
    /// The event is a digest itself (re-driven from its dead letter): send
    /// the digest held in this schedule row.
    Digest(i64),
}

/// An event's row in the schedule, if it has one.
struct Stored {
    id: i64,
    digest: bool,
    done: bool,
}

/// The first moment at or after `at` outside the quiet hours (in `tz`).
pub(crate) fn after_quiet_hours(
    at: DateTime<Utc>,
    q: &QuietHours,
    tz: chrono_tz::Tz,
) -> DateTime<Utc> {
    let local = at.with_timezone(&tz);
    let t = local.time();
    let quiet = if q.from < q.to {
        t >= q.from && t < q.to
    } else {
        t >= q.from || t < q.to
    };
    if !quiet {
        return at;
    }
    let mut day = local.date_naive();
    if q.from > q.to && t >= q.from {
        // Quiet across midnight, in its evening part: it ends tomorrow.
        day = day.succ_opt().unwrap_or(day);
    }
    // The end of the quiet hours on that day; a time a DST change skips
    // resolves to the first valid instant after it.
    let end = day.and_time(q.to);
    let mut probe = end;
    for _ in 0..4 {
        if let Some(resolved) = tz.from_local_datetime(&probe).earliest() {
            return resolved.with_timezone(&Utc);
        }
        probe += chrono::Duration::minutes(30);
    }
    at
}

impl Worker {
    /// For a workflow that schedules: store the event (or add it to its
    /// digest) unless it is due now. Render errors of the settings
    /// (`send_at`, `quiet_hours.tz`, `digest.key`) are the event's
    /// (permanent); a database error is returned (processed again).
    pub(crate) async fn schedule(
        &self,
        wf: &Workflow,
        ev: &Event,
        payload: &serde_json::Value,
    ) -> Result<Result<Decision, RenderError>, DbErr> {
        match self.stored(wf, ev).await? {
            Some(Stored {
                id, digest: true, ..
            }) => return Ok(Ok(Decision::Digest(id))),
            // Sent already (this is a re-drive of its dead letter): send now,
            // the ledger skips what went.
            Some(Stored { done: true, .. }) => return Ok(Ok(Decision::Now)),
            // A redelivery of an event stored before its ack was lost.
            Some(_) => return Ok(Ok(Decision::Scheduled(ProcessOutcome::scheduled()))),
            None => {}
        }
        let meta = ev.meta(&wf.name);
        let d = &wf.delivery;
        if let Some(dg) = &d.digest {
            let key = match self.catalog().render_setting(wf, &dg.key, payload, &meta) {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            let o = self.join_digest(wf, ev, &key, dg.window, dg.max).await?;
            return Ok(Ok(Decision::Scheduled(o)));
        }
        let now = Utc::now();
        let mut due = now;
        if let Some(delay) = d.delay {
            due = now + chrono::Duration::from_std(delay).unwrap_or_default();
        }
        if let Some(id) = &d.send_at {
            let text = match self.catalog().render_setting(wf, id, payload, &meta) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            match DateTime::parse_from_rfc3339(&text) {
                // A time in the past sends at once: never silently dropped.
                Ok(t) => due = t.with_timezone(&Utc).max(now),
                Err(e) => {
                    return Ok(Err(RenderError::Template {
                        template: "send_at".into(),
                        message: format!("{text:?} is not an RFC 3339 time: {e}"),
                    }));
                }
            }
        }
        if let Some(q) = &d.quiet_hours {
            let tz = match &q.tz {
                TimeZone::Fixed(z) => *z,
                TimeZone::Template(id) => {
                    let name = match self.catalog().render_setting(wf, id, payload, &meta) {
                        Ok(n) => n,
                        Err(e) => return Ok(Err(e)),
                    };
                    match crate::workflow::helpers::check_time_zone(&name) {
                        Ok(z) => z,
                        Err(e) => {
                            return Ok(Err(RenderError::Template {
                                template: "quiet_hours.tz".into(),
                                message: e,
                            }));
                        }
                    }
                }
            };
            due = after_quiet_hours(due, q, tz);
        }
        if due <= now + chrono::Duration::milliseconds(500) {
            return Ok(Ok(Decision::Now));
        }
        let o = self.store_delayed(wf, ev, payload, due).await?;
        Ok(Ok(Decision::Scheduled(o)))
    }

    async fn stored(&self, wf: &Workflow, ev: &Event) -> Result<Option<Stored>, DbErr> {
        let b = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                b,
                format!(
                    "SELECT id, kind, done_at FROM herald_schedule WHERE workflow = {} AND event_id = {}",
                    ph(b, 1),
                    ph(b, 2)
                ),
                [Value::from(wf.name.as_str()), Value::from(ev.id.as_uuid())],
            ))
            .await?;
        row.map(|r| {
            Ok(Stored {
                id: r.try_get("", "id")?,
                digest: r.try_get::<String>("", "kind")? == "digest",
                done: r.try_get::<Option<DateTime<Utc>>>("", "done_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// Store a delayed event (idempotent: a redelivery finds it stored) and
    /// record its deliveries `scheduled`.
    async fn store_delayed(
        &self,
        wf: &Workflow,
        ev: &Event,
        payload: &serde_json::Value,
        due: DateTime<Utc>,
    ) -> Result<ProcessOutcome, DbErr> {
        let b = self.db.get_database_backend();
        let sql = format!(
            "INSERT INTO herald_schedule (workflow, event_id, kind, due_at, subject, payload, headers, \
             aggregate, stream_seq, items, created_at) VALUES ({}, {}, 'delay', {}, {}, {}, {}, {}, {}, 1, {}) \
             ON CONFLICT (workflow, event_id) DO NOTHING",
            ph(b, 1),
            ph(b, 2),
            ph(b, 3),
            ph(b, 4),
            ph(b, 5),
            ph(b, 6),
            ph(b, 7),
            ph(b, 8),
            ph(b, 9)
        );
        let values: Vec<Value> = vec![
            wf.name.as_str().into(),
            ev.id.as_uuid().into(),
            due.into(),
            ev.subject.as_str().into(),
            ev.payload.as_str().into(),
            ev.headers.as_str().into(),
            ev.aggregate.clone().into(),
            ev.stream_seq.and_then(|s| i64::try_from(s).ok()).into(),
            Utc::now().into(),
        ];
        self.db
            .execute_raw(Statement::from_sql_and_values(b, sql, values))
            .await?;
        // The deliveries, as they would go now, recorded `scheduled`.
        if let Ok(Outcome::Emails(emails)) = self.catalog().render(wf, payload, &ev.meta(&wf.name))
        {
            for (recipient, e) in super::process::recipient_keys(&emails) {
                let key = Key {
                    event_id: ev.id,
                    workflow: &wf.name,
                    recipient: &recipient,
                };
                ledger::record_scheduled(&self.db, &key, e.index, &e.subject).await?;
            }
        }
        tracing::info!(workflow = %wf.name, event_id = %ev.id, due = %due.to_rfc3339(), "scheduled");
        Ok(ProcessOutcome::scheduled())
    }

    /// Add `ev` to the open digest of (`wf`, `key`), opening one if there is
    /// none; seal it (due now) once it holds `max`. All in one transaction:
    /// the event is acked only after this commits.
    async fn join_digest(
        &self,
        wf: &Workflow,
        ev: &Event,
        key: &str,
        window: Duration,
        max: u32,
    ) -> Result<ProcessOutcome, DbErr> {
        let b = self.db.get_database_backend();
        for _ in 0..5 {
            let now = Utc::now();
            let txn = crate::db::begin_write(&self.db).await?;
            // A redelivered event already in a digest (open or sent) joins
            // no other: it must not be mailed twice.
            let member = txn
                .query_one_raw(Statement::from_sql_and_values(
                    b,
                    format!(
                        "SELECT 1 AS one FROM herald_digest_items i JOIN herald_schedule s ON s.id = i.schedule_id \
                         WHERE s.workflow = {} AND i.event_id = {}",
                        ph(b, 1),
                        ph(b, 2)
                    ),
                    [Value::from(wf.name.as_str()), Value::from(ev.id.as_uuid())],
                ))
                .await?;
            if member.is_some() {
                txn.rollback().await?;
                return Ok(ProcessOutcome::scheduled());
            }
            let open = txn
                .query_one_raw(Statement::from_sql_and_values(
                    b,
                    format!(
                        "SELECT id, event_id FROM herald_schedule WHERE workflow = {} AND digest_key = {} \
                         AND kind = 'digest' AND sealed_at IS NULL",
                        ph(b, 1),
                        ph(b, 2)
                    ),
                    [Value::from(wf.name.as_str()), Value::from(key)],
                ))
                .await?;
            let (id, digest_id) = match open {
                Some(r) => (
                    r.try_get::<i64>("", "id")?,
                    r.try_get::<uuid::Uuid>("", "event_id")?,
                ),
                None => {
                    let digest_id = EventId::new();
                    let due = now + chrono::Duration::from_std(window).unwrap_or_default();
                    let inserted = txn
                        .query_one_raw(Statement::from_sql_and_values(
                            b,
                            format!(
                                "INSERT INTO herald_schedule (workflow, event_id, kind, digest_key, due_at, subject, \
                                 payload, headers, items, created_at) VALUES ({}, {}, 'digest', {}, {}, {}, '{{}}', '{{}}', 0, {}) \
                                 ON CONFLICT DO NOTHING RETURNING id",
                                ph(b, 1),
                                ph(b, 2),
                                ph(b, 3),
                                ph(b, 4),
                                ph(b, 5),
                                ph(b, 6)
                            ),
                            [
                                Value::from(wf.name.as_str()),
                                Value::from(digest_id.as_uuid()),
                                Value::from(key),
                                Value::from(due),
                                Value::from(ev.subject.as_str()),
                                Value::from(now),
                            ],
                        ))
                        .await?;
                    match inserted {
                        Some(r) => (r.try_get::<i64>("", "id")?, digest_id.as_uuid()),
                        // Another worker opened it first: join theirs.
                        None => {
                            txn.rollback().await?;
                            continue;
                        }
                    }
                }
            };
            let added = txn
                .execute_raw(Statement::from_sql_and_values(
                    b,
                    format!(
                        "INSERT INTO herald_digest_items (schedule_id, event_id, stream_seq, subject, payload, headers, created_at) \
                         VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT DO NOTHING",
                        ph(b, 1),
                        ph(b, 2),
                        ph(b, 3),
                        ph(b, 4),
                        ph(b, 5),
                        ph(b, 6),
                        ph(b, 7)
                    ),
                    [
                        Value::from(id),
                        Value::from(ev.id.as_uuid()),
                        Value::from(ev.stream_seq.and_then(|s| i64::try_from(s).ok())),
                        Value::from(ev.subject.as_str()),
                        Value::from(ev.payload.as_str()),
                        Value::from(ev.headers.as_str()),
                        Value::from(now),
                    ],
                ))
                .await?
                .rows_affected();
            if added > 0 {
                let still_open = txn
                    .execute_raw(Statement::from_sql_and_values(
                        b,
                        format!(
                            // Full: sealed here, not when the schedule loop
                            // claims it, or events arriving in between would
                            // join a digest already at `max`.
                            "UPDATE herald_schedule SET items = items + 1, \
                             due_at = CASE WHEN items + 1 >= {m} THEN {n} ELSE due_at END, \
                             sealed_at = CASE WHEN items + 1 >= {m} THEN {n} ELSE sealed_at END \
                             WHERE id = {i} AND sealed_at IS NULL",
                            m = ph(b, 1),
                            n = ph(b, 2),
                            i = ph(b, 3)
                        ),
                        [
                            Value::from(i64::from(max)),
                            Value::from(now),
                            Value::from(id),
                        ],
                    ))
                    .await?
                    .rows_affected();
                if still_open == 0 {
                    // Sealed between our read and our write: a new digest.
                    txn.rollback().await?;
                    continue;
                }
            }
            let member = Key {
                event_id: ev.id,
                workflow: &wf.name,
                recipient: &format!("digest:{digest_id}"),
            };
            ledger::record_scheduled(&txn, &member, 0, &ev.subject).await?;
            txn.commit().await?;
            return Ok(ProcessOutcome::scheduled());
        }
        Err(DbErr::Custom(format!(
            "could not add event {} to a digest of {} after 5 tries",
            ev.id, wf.name
        )))
    }

    /// The schedule loop: claim what is due for this worker's workflows and
    /// send it, until `stop`.
    pub(super) async fn run_schedule(
        self: std::sync::Arc<Self>,
        selection: Option<std::collections::BTreeSet<String>>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let owner = format!("worker-{}", uuid::Uuid::new_v4().simple());
        loop {
            // The current set's workflows that schedule (a reload may change them).
            let workflows: Vec<String> = self
                .catalog()
                .workflows
                .iter()
                .filter(|w| w.schedules() && selection.as_ref().is_none_or(|s| s.contains(&w.name)))
                .map(|w| w.name.clone())
                .collect();
            let next = match self.due(&workflows, &owner).await {
                Ok(rows) if !rows.is_empty() => {
                    for r in rows {
                        if stop.is_cancelled() {
                            break;
                        }
                        if let Err(e) = self.send_due(&r, &owner).await {
                            tracing::warn!(workflow = %r.workflow, error = %crate::db::describe(&e),
                                "scheduled delivery failed; it is tried again");
                        }
                    }
                    Duration::ZERO
                }
                Ok(_) => Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %crate::db::describe(&e), "cannot read the schedule; trying again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Claim up to 16 due rows of `workflows` (sealing digests as it goes).
    async fn due(&self, workflows: &[String], owner: &str) -> Result<Vec<DueRow>, DbErr> {
        if workflows.is_empty() {
            return Ok(Vec::new());
        }
        let b = self.db.get_database_backend();
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.cfg.ack_wait).unwrap_or_default();
        let names: Vec<String> = (0..workflows.len()).map(|i| ph(b, i + 4)).collect();
        let lock = if b == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE herald_schedule SET lease_owner = {o}, lease_until = {u}, sealed_at = COALESCE(sealed_at, {n}) \
             WHERE id IN (SELECT id FROM herald_schedule WHERE done_at IS NULL AND due_at <= {n} \
               AND (lease_until IS NULL OR lease_until < {n}) AND workflow IN ({names}) \
               ORDER BY due_at LIMIT 16{lock}) \
             RETURNING id, workflow, event_id, kind, digest_key, subject, payload, headers, aggregate, stream_seq",
            o = ph(b, 1),
            u = ph(b, 2),
            n = ph(b, 3),
            names = names.join(", ")
        );
        let mut values: Vec<Value> = vec![owner.into(), until.into(), now.into()];
        values.extend(workflows.iter().map(|w| Value::from(w.as_str())));
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(b, sql, values))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueRow {
                    id: r.try_get("", "id")?,
                    workflow: r.try_get("", "workflow")?,
                    event_id: r.try_get::<uuid::Uuid>("", "event_id")?.into(),
                    digest: r.try_get::<String>("", "kind")? == "digest",
                    digest_key: r.try_get("", "digest_key")?,
                    subject: r.try_get("", "subject")?,
                    payload: r.try_get("", "payload")?,
                    headers: r.try_get("", "headers")?,
                    aggregate: r.try_get("", "aggregate")?,
                    stream_seq: r.try_get("", "stream_seq")?,
                })
            })
            .collect()
    }

    /// Send one due row through the normal path and record what happened.
    async fn send_due(&self, r: &DueRow, owner: &str) -> Result<(), DbErr> {
        let catalog = self.catalog();
        let Some(wf) = catalog.get(&r.workflow) else {
            // Its workflow was removed: leave it for a worker that has it.
            return self
                .record_due(
                    r.id,
                    owner,
                    &Disposition::Busy {
                        after: Duration::from_secs(60),
                    },
                )
                .await;
        };
        let ev = Event {
            id: r.event_id,
            subject: r.subject.clone(),
            payload: r.payload.clone(),
            aggregate: r.aggregate.clone(),
            occurred_at: String::new(),
            stream_seq: r.stream_seq.and_then(|s| u64::try_from(s).ok()),
            outbox_seq: None,
            headers: r.headers.clone(),
        };
        let o = if r.digest {
            self.send_digest(wf, &ev, r.id).await?
        } else {
            self.process_due(wf, &ev).await?
        };
        self.record_due(r.id, owner, &o.disposition).await
    }

    /// Render and send the digest held in schedule row `id` (its event is
    /// `ev`, with the digest's own id), then record its events' part.
    pub(super) async fn send_digest(
        &self,
        wf: &Workflow,
        ev: &Event,
        id: i64,
    ) -> Result<ProcessOutcome, DbErr> {
        let items = self.digest_items(id).await?;
        let events: Vec<serde_json::Value> = items
            .iter()
            .map(|(_, p)| serde_json::from_str(p).unwrap_or_else(|_| json!({})))
            .collect();
        let (o, state, note) = match self
            .catalog()
            .render_digest(wf, &events, &ev.meta(&wf.name))
        {
            Ok(Outcome::Skipped { guard }) => {
                ledger::record_skipped(&self.db, ev.id, &wf.name, &guard).await?;
                (
                    ProcessOutcome::whole(Disposition::Ack, 1, 0),
                    DeliveryState::Skipped,
                    format!("digest {} skipped: {guard}", ev.id),
                )
            }
            Ok(Outcome::Emails(emails)) => {
                let o = self.deliver_all(wf, ev, &emails).await?;
                let state = if o.dead_lettered > 0 {
                    DeliveryState::Dead
                } else {
                    DeliveryState::Sent
                };
                (o, state, format!("in digest {}", ev.id))
            }
            Err(e) => {
                let o = self.render_failed(wf, ev, e).await?;
                (
                    o,
                    DeliveryState::Dead,
                    format!("digest {} dead-lettered", ev.id),
                )
            }
        };
        if matches!(
            o.disposition,
            Disposition::Ack | Disposition::Terminate { .. }
        ) {
            let recipient = format!("digest:{}", ev.id);
            for (member, _) in &items {
                let key = Key {
                    event_id: *member,
                    workflow: &wf.name,
                    recipient: &recipient,
                };
                ledger::mark_settled(&self.db, &key, state, &note, None).await?;
            }
        }
        Ok(o)
    }

    async fn digest_items(&self, id: i64) -> Result<Vec<(EventId, String)>, DbErr> {
        let b = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                b,
                format!(
                    "SELECT event_id, payload FROM herald_digest_items WHERE schedule_id = {} \
                     ORDER BY stream_seq, created_at",
                    ph(b, 1)
                ),
                [Value::from(id)],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<uuid::Uuid>("", "event_id")?.into(),
                    r.try_get("", "payload")?,
                ))
            })
            .collect()
    }

    /// Done, or due again later (a retry), or back to the queue (paused).
    async fn record_due(&self, id: i64, owner: &str, d: &Disposition) -> Result<(), DbErr> {
        let b = self.db.get_database_backend();
        let now = Utc::now();
        let (set, value): (&str, Value) = match d {
            Disposition::Ack | Disposition::Terminate { .. } => ("done_at", now.into()),
            Disposition::Retry { after } | Disposition::Busy { after } => (
                "due_at",
                (now + chrono::Duration::from_std(*after).unwrap_or_default()).into(),
            ),
            _ => ("due_at", now.into()),
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                b,
                format!(
                    "UPDATE herald_schedule SET {set} = {}, lease_owner = NULL, lease_until = NULL \
                     WHERE id = {} AND lease_owner = {}",
                    ph(b, 1),
                    ph(b, 2),
                    ph(b, 3)
                ),
                [value, Value::from(id), Value::from(owner)],
            ))
            .await?;
        Ok(())
    }
}

/// A claimed schedule row.
struct DueRow {
    id: i64,
    workflow: String,
    event_id: EventId,
    digest: bool,
    #[allow(dead_code)]
    digest_key: Option<String>,
    subject: String,
    payload: String,
    headers: String,
    aggregate: Option<String>,
    stream_seq: Option<i64>,
}

/// What `herald status` shows of the schedule.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Scheduled {
    /// Delayed events (delay, send time, quiet hours) not yet sent.
    pub delayed: i64,
    /// Open or due digests, and the events they hold.
    pub digests: i64,
    pub digest_events: i64,
    /// The earliest due time, RFC 3339.
    pub next_due: Option<String>,
}

/// The schedule's figures.
pub async fn scheduled(db: &DatabaseConnection) -> Result<Scheduled, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT \
               COUNT(CASE WHEN kind = 'delay' THEN 1 END) AS delayed, \
               COUNT(CASE WHEN kind = 'digest' THEN 1 END) AS digests, \
               COALESCE(SUM(CASE WHEN kind = 'digest' THEN items END), 0) AS digest_events, \
               MIN(due_at) AS next_due \
             FROM herald_schedule WHERE done_at IS NULL",
        ))
        .await?;
    let Some(r) = row else {
        return Ok(Scheduled::default());
    };
    Ok(Scheduled {
        delayed: r.try_get("", "delayed")?,
        digests: r.try_get("", "digests")?,
        digest_events: r.try_get::<Option<i64>>("", "digest_events")?.unwrap_or(0),
        next_due: r
            .try_get::<Option<DateTime<Utc>>>("", "next_due")?
            .map(|t| t.to_rfc3339()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn parse_hm(s: &str) -> Option<NaiveTime> {
        NaiveTime::parse_from_str(s, "%H:%M").ok()
    }

    fn q(from: &str, to: &str) -> QuietHours {
        QuietHours {
            from: parse_hm(from).unwrap(),
            to: parse_hm(to).unwrap(),
            tz: TimeZone::Fixed(chrono_tz::UTC),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quiet_hours_across_midnight() {
        let night = q("21:00", "08:00");
        let tz = chrono_tz::UTC;
        assert_eq!(
            after_quiet_hours(at("2026-11-24T12:00:00Z"), &night, tz),
            at("2026-11-24T12:00:00Z")
        );
        assert_eq!(
            after_quiet_hours(at("2026-11-24T22:30:00Z"), &night, tz),
            at("2026-11-25T08:00:00Z")
        );
        assert_eq!(
            after_quiet_hours(at("2026-11-25T03:00:00Z"), &night, tz),
            at("2026-11-25T08:00:00Z")
        );
        assert_eq!(
            after_quiet_hours(at("2026-11-25T08:00:00Z"), &night, tz),
            at("2026-11-25T08:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_within_a_day_and_in_a_zone() {
        let lunch = q("12:00", "13:30");
        assert_eq!(
            after_quiet_hours(at("2026-11-24T12:10:00Z"), &lunch, chrono_tz::UTC),
            at("2026-11-24T13:30:00Z")
        );
        // 22:30 UTC is 23:30 in Paris (winter): quiet until 08:00 Paris = 07:00 UTC.
        let night = q("21:00", "08:00");
        assert_eq!(
            after_quiet_hours(at("2026-11-24T22:30:00Z"), &night, chrono_tz::Europe::Paris),
            at("2026-11-25T07:00:00Z")
        );
    }
}
