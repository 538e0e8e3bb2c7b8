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

use chrono::{DateTime, TimeZone as _, Utc};
use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

use super::process::ProcessOutcome;
use super::{Event, Worker};
use crate::workflow::render::RenderError;
use crate::workflow::{QuietHours, TimeZone, Workflow};

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
}

mod due;
mod status;
mod store;
#[cfg(test)]
mod tests;

pub use status::{Scheduled, scheduled};
