//! Storing an event that waits: a delayed row, or its membership of a digest.
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement, Value};

use crate::EventId;
use crate::ledger::{self, Key};
use crate::worker::process::ProcessOutcome;
use crate::worker::{Event, Worker};
use crate::workflow::Workflow;
use crate::workflow::render::Outcome;

use crate::db::ph;

impl Worker {
    /// Store a delayed event (idempotent: a redelivery finds it stored) and
    /// record its deliveries `scheduled`.
    pub(super) async fn store_delayed(
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
            for (recipient, e) in crate::worker::process::recipient_keys(&emails) {
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
    pub(super) async fn join_digest(
        &self,
        wf: &Workflow,
        ev: &Event,
        key: &str,
        window: Duration,
        max: u32,
    ) -> Result<ProcessOutcome, DbErr> {
        for _ in 0..5 {
            let now = Utc::now();
            let txn = crate::db::begin_write(&self.db).await?;
            // A redelivered event already in a digest (open or sent) joins
            // no other: it must not be mailed twice.
            if already_in_digest(&txn, wf, ev).await? {
                txn.rollback().await?;
                return Ok(ProcessOutcome::scheduled());
            }
            let (id, digest_id) = match open_digest(&txn, wf, key).await? {
                Some(open) => open,
                None => {
                    let digest_id = EventId::new();
                    let due = now + chrono::Duration::from_std(window).unwrap_or_default();
                    match insert_digest(&txn, wf, ev, key, digest_id, due, now).await? {
                        Some(id) => (id, digest_id.as_uuid()),
                        // Another worker opened it first: join theirs.
                        None => {
                            txn.rollback().await?;
                            continue;
                        }
                    }
                }
            };
            if add_item(&txn, id, ev, now).await? > 0 && count_item(&txn, id, max, now).await? == 0
            {
                // Sealed between our read and our write: a new digest.
                txn.rollback().await?;
                continue;
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
}

/// Is `ev` already in a digest of `wf`, open or sent?
async fn already_in_digest(
    txn: &DatabaseTransaction,
    wf: &Workflow,
    ev: &Event,
) -> Result<bool, DbErr> {
    let b = txn.get_database_backend();
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
    Ok(member.is_some())
}

/// The open digest of (`wf`, `key`): its schedule row id and its own event id.
async fn open_digest(
    txn: &DatabaseTransaction,
    wf: &Workflow,
    key: &str,
) -> Result<Option<(i64, uuid::Uuid)>, DbErr> {
    let b = txn.get_database_backend();
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
    match open {
        Some(r) => Ok(Some((
            r.try_get::<i64>("", "id")?,
            r.try_get::<uuid::Uuid>("", "event_id")?,
        ))),
        None => Ok(None),
    }
}

/// Open a new digest of (`wf`, `key`) due at `due`; `None` when another
/// worker opened one first.
async fn insert_digest(
    txn: &DatabaseTransaction,
    wf: &Workflow,
    ev: &Event,
    key: &str,
    digest_id: EventId,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, DbErr> {
    let b = txn.get_database_backend();
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
        Some(r) => Ok(Some(r.try_get::<i64>("", "id")?)),
        None => Ok(None),
    }
}

/// Add `ev` to digest `id`; returns 0 when it was already there.
async fn add_item(
    txn: &DatabaseTransaction,
    id: i64,
    ev: &Event,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let b = txn.get_database_backend();
    Ok(txn
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
        .rows_affected())
}

/// Count the item just added to digest `id`, sealing it once it holds
/// `max`; returns 0 when the digest was sealed meanwhile.
async fn count_item(
    txn: &DatabaseTransaction,
    id: i64,
    max: u32,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let b = txn.get_database_backend();
    Ok(txn
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
        .rows_affected())
}
