//! The schedule loop: claiming due rows with a lease, sending them through
//! the normal path (a digest as one email), recording what happened.
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde_json::json;

use crate::EventId;
use crate::ledger::{self, Key};
use crate::worker::process::ProcessOutcome;
use crate::worker::{Disposition, Event, Worker};
use crate::workflow::Workflow;
use crate::workflow::render::Outcome;
use herald_entities::delivery::DeliveryState;

use crate::db::ph;

impl Worker {
    /// The schedule loop: claim what is due for this worker's workflows and
    /// send it, until `stop`.
    pub(in crate::worker) async fn run_schedule(
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
    pub(in crate::worker) async fn send_digest(
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
