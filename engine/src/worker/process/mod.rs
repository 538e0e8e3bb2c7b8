//! One event through one workflow: decode the payload, render, deliver to
//! each recipient, and decide. Dead letters are written here.
use std::collections::HashSet;

use opentelemetry::context::FutureExt as _;
use sea_orm::DbErr;

use super::decide::{DeliveryOutcome, decide};
use super::schedule::Decision;
use super::{Disposition, Event, Worker, order};
use crate::dlq::{self};
use crate::ledger::{self};
use crate::telemetry;
use crate::workflow::Workflow;
use crate::workflow::render::{Email, Outcome};
use herald_entities::dead_letter::DeadLetterKind;

/// What processing one event did: the disposition the consumer acts on, and
/// counts that replay, re-drive and demo report (instead of reading metrics).
///
/// ```no_run
/// # async fn example(worker: herald::worker::Worker, dl: herald::dlq::DeadLetter) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::worker::{Disposition, ProcessOutcome};
/// let o: ProcessOutcome = worker.redrive(&dl).await?;
/// if o.disposition != Disposition::Ack {
///     eprintln!("not delivered yet: {} retrying, {} dead-lettered", o.retrying, o.dead_lettered);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessOutcome {
    pub disposition: Disposition,
    /// Emails accepted by the server and recorded.
    pub sent: u64,
    /// Deliveries with nothing to do: the guard did not hold, or the ledger
    /// had them as done already.
    pub skipped: u64,
    /// Dead letters written (per recipient, or one for the whole event).
    pub dead_lettered: u64,
    /// Deliveries left for a later attempt (transient failure).
    pub retrying: u64,
    /// Deliveries another worker holds a claim on.
    pub in_flight: u64,
    /// Events stored to be sent later (a delay, a send window, a digest).
    pub scheduled: u64,
}

impl ProcessOutcome {
    /// Done, and nothing dead-lettered: every delivery sent or skipped.
    ///
    /// ```no_run
    /// # async fn example(worker: herald::worker::Worker, dl: herald::dlq::DeadLetter) -> Result<(), Box<dyn std::error::Error>> {
    /// if !worker.redrive(&dl).await?.delivered() {
    ///     eprintln!("dead letter {} is not resolved yet", dl.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn delivered(&self) -> bool {
        self.disposition == Disposition::Ack && self.dead_lettered == 0
    }

    pub(super) fn whole(
        disposition: Disposition,
        skipped: u64,
        dead_lettered: u64,
    ) -> ProcessOutcome {
        ProcessOutcome {
            disposition,
            sent: 0,
            skipped,
            dead_lettered,
            retrying: 0,
            in_flight: 0,
            scheduled: 0,
        }
    }

    /// The event waits in the schedule: acked now, sent when due.
    pub(crate) fn scheduled() -> ProcessOutcome {
        ProcessOutcome {
            scheduled: 1,
            ..ProcessOutcome::whole(Disposition::Ack, 0, 0)
        }
    }

    fn from_deliveries(outcomes: &[DeliveryOutcome]) -> ProcessOutcome {
        let count =
            |f: fn(&DeliveryOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as u64;
        ProcessOutcome {
            disposition: decide(outcomes),
            sent: count(|o| matches!(o, DeliveryOutcome::Sent)),
            skipped: count(|o| matches!(o, DeliveryOutcome::AlreadyDone)),
            dead_lettered: count(|o| matches!(o, DeliveryOutcome::Dead)),
            retrying: count(|o| matches!(o, DeliveryOutcome::Retry(_) | DeliveryOutcome::Paused)),
            in_flight: count(|o| matches!(o, DeliveryOutcome::InFlight(_))),
            scheduled: 0,
        }
    }
}

/// Where an event came from: the stream (it may be scheduled), or the
/// schedule (it is due: send it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Stream,
    Schedule,
}

/// Each email's ledger recipient key: its address list, or, for the same
/// addresses twice in one fan-out, the list and the item index (both kept).
pub(crate) fn recipient_keys(emails: &[Email]) -> Vec<(String, &Email)> {
    let mut seen = HashSet::new();
    emails
        .iter()
        .map(|email| {
            let mut recipient = email.recipient_key();
            if !seen.insert(recipient.clone()) {
                recipient = format!("{recipient}#{}", email.index);
            }
            (recipient, email)
        })
        .collect()
}

/// Run `processing` inside a `process WORKFLOW` span continuing the trace
/// in the event's headers (see `crate::telemetry`), and end the span with
/// what it decided. A dead letter's reason stays out of the trace (it may
/// quote the payload): `herald trace EVENT_ID` shows it.
async fn traced(
    wf: &Workflow,
    ev: &Event,
    processing: impl std::future::Future<Output = Result<ProcessOutcome, DbErr>>,
) -> Result<ProcessOutcome, DbErr> {
    let cx = telemetry::process_context(
        &wf.name,
        &super::consumer_name(&wf.name),
        &ev.id.to_string(),
        &ev.subject,
        ev.stream_seq,
        &ev.headers,
    );
    let r = processing.with_context(cx.clone()).await;
    match &r {
        Ok(o) => {
            let outcome = match &o.disposition {
                Disposition::Ack if o.scheduled > 0 => "scheduled",
                Disposition::Ack => "done",
                Disposition::Retry { .. } => "retry",
                Disposition::Terminate { .. } => "dead letter",
                Disposition::Busy { .. } => "busy",
                Disposition::Paused => "paused",
            };
            let error = (o.dead_lettered > 0).then(|| {
                format!(
                    "{} dead letter(s): `herald trace {}` says why",
                    o.dead_lettered, ev.id
                )
            });
            telemetry::end_process(&cx, outcome, error);
        }
        // A database error may quote the values of a row: the log has it.
        Err(_) => telemetry::end_process(
            &cx,
            "database error",
            Some("database error (the worker's log says which)".into()),
        ),
    }
    r
}

impl Worker {
    /// Run one event through one workflow. Database errors are returned (the
    /// message is retried); everything else becomes an outcome. An event
    /// whose aggregate has an earlier event dead-lettered in this workflow
    /// waits behind it (a dead letter of kind `held`), so the aggregate's
    /// emails keep their order.
    pub(crate) async fn process(&self, wf: &Workflow, ev: &Event) -> Result<ProcessOutcome, DbErr> {
        if let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.stream_seq)
            && let Some(front) = dlq::blocking(&self.db, &wf.name, aggregate, seq, ev.id).await?
        {
            return traced(wf, ev, self.hold_behind(wf, ev, aggregate, front)).await;
        }
        if let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.outbox_seq) {
            let first = self
                .first_stream_seq
                .load(std::sync::atomic::Ordering::Relaxed);
            if let Some(earlier) = order::outstanding(&self.db, wf, aggregate, seq, first).await? {
                tracing::debug!(workflow = %wf.name, event_id = %ev.id, %aggregate, waiting_for = %earlier.event_id,
                    "an earlier event of the aggregate is not finished; waiting for it");
                // No span: the event is looked at again every 2 s until
                // the earlier one is done, and a span per look would bury
                // the trace.
                return Ok(ProcessOutcome::whole(
                    Disposition::Busy {
                        after: order::wait(2),
                    },
                    0,
                    0,
                ));
            }
        }
        traced(wf, ev, self.process_in_order(wf, ev)).await
    }

    /// `ev` waits behind the dead letter `front` of its aggregate: a dead
    /// letter of kind `held`, re-driven after it.
    async fn hold_behind(
        &self,
        wf: &Workflow,
        ev: &Event,
        aggregate: &str,
        front: herald_entities::dead_letter::Model,
    ) -> Result<ProcessOutcome, DbErr> {
        // Named by its event too: a re-drive that fails again closes dead
        // letter N and opens another for the same event.
        let reason = format!(
            "held behind event {} of aggregate {aggregate}, dead-lettered (dead letter {}): re-driving or discarding that event's open dead letter releases it (`herald dlq list`, `herald status`)",
            front.event_id, front.id
        );
        let written = match crate::dlq::open_held(&self.db, &wf.name, ev.id).await? {
            Some(_) => 0,
            None => {
                self.dead_letter(wf, ev, None, DeadLetterKind::Held, reason.clone(), None, 0)
                    .await?;
                1
            }
        };
        self.advance(wf, ev).await?;
        Ok(ProcessOutcome::whole(
            Disposition::Terminate { reason },
            0,
            written,
        ))
    }

    /// Its turn in the aggregate: process it, and let the aggregate's later
    /// events go once it is settled.
    async fn process_in_order(&self, wf: &Workflow, ev: &Event) -> Result<ProcessOutcome, DbErr> {
        let o = self.process_unheld(wf, ev).await?;
        if matches!(
            o.disposition,
            Disposition::Ack | Disposition::Terminate { .. }
        ) {
            self.advance(wf, ev).await?;
        }
        Ok(o)
    }

    /// `ev` has waited long for an earlier event of its aggregate that may
    /// never reach this worker ahead of it: after a stream loss, `outbox
    /// republish` puts earlier events behind later ones, and the later ones
    /// fill the lanes and JetStream's max_ack_pending while they wait. If the
    /// earlier event was published before the current stream was created,
    /// take it from the outbox (the order of record) and process it through
    /// the normal path: the ledger's claim keeps it from being
    /// sent twice if its stream copy is in another worker's hands, and that
    /// copy, when it comes, finds it done. Whether one was processed.
    pub(crate) async fn process_outstanding(
        &self,
        wf: &Workflow,
        ev: &Event,
    ) -> Result<bool, DbErr> {
        use sea_orm::EntityTrait;
        let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.outbox_seq) else {
            return Ok(false);
        };
        let first = self
            .first_stream_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        let Some(earlier) = order::outstanding(&self.db, wf, aggregate, seq, first).await? else {
            return Ok(false);
        };
        let Some(row) = herald_entities::outbox::Entity::find_by_id(earlier.seq)
            .one(&self.db)
            .await?
        else {
            return Ok(false);
        };
        // Only an event published into a stream that was since lost: any
        // other is in JetStream's hands and comes (a retry waiting out its
        // backoff must not be hurried by the events behind it).
        let created = self
            .stream_created_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let lost = created > 0
            && row
                .published_at
                .is_some_and(|p| p.timestamp_millis() < created);
        if !lost {
            return Ok(false);
        }
        tracing::info!(workflow = %wf.name, event_id = %earlier.event_id, %aggregate, waiting = %ev.id,
            "an earlier event of the aggregate is not in sight in the stream; processing it from the outbox");
        let o = self.process(wf, &Event::from_outbox(&row)).await?;
        Ok(matches!(
            o.disposition,
            Disposition::Ack | Disposition::Terminate { .. }
        ))
    }

    /// The event is settled: the aggregate's later events may go.
    async fn advance(&self, wf: &Workflow, ev: &Event) -> Result<(), DbErr> {
        if let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.outbox_seq) {
            order::advance(&self.db, &wf.name, aggregate, seq).await?;
        }
        Ok(())
    }

    async fn process_unheld(&self, wf: &Workflow, ev: &Event) -> Result<ProcessOutcome, DbErr> {
        self.process_from(wf, ev, Origin::Stream).await
    }

    /// A delayed event that is due, from the schedule loop: its order was
    /// settled when it was stored.
    pub(super) async fn process_due(
        &self,
        wf: &Workflow,
        ev: &Event,
    ) -> Result<ProcessOutcome, DbErr> {
        traced(wf, ev, self.process_from(wf, ev, Origin::Schedule)).await
    }

    async fn process_from(
        &self,
        wf: &Workflow,
        ev: &Event,
        origin: Origin,
    ) -> Result<ProcessOutcome, DbErr> {
        super::failpoint::hit("processing");
        let payload: serde_json::Value = match serde_json::from_str(&ev.payload) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            other => {
                let reason = match other {
                    Ok(_) => format!("payload of {} is not a JSON object", ev.subject),
                    // Also what the parser refuses in valid JSON: nesting
                    // deeper than 128 levels.
                    Err(e) => format!("payload of {} cannot be read: {e}", ev.subject),
                };
                self.dead_letter(
                    wf,
                    ev,
                    None,
                    DeadLetterKind::Permanent,
                    reason.clone(),
                    None,
                    1,
                )
                .await?;
                return Ok(ProcessOutcome::whole(
                    Disposition::Terminate { reason },
                    0,
                    1,
                ));
            }
        };
        if origin == Origin::Stream && wf.schedules() {
            match self.schedule(wf, ev, &payload).await? {
                Err(e) => return self.render_failed(wf, ev, e).await,
                Ok(Decision::Scheduled(o)) => return Ok(o),
                Ok(Decision::Digest(id)) => return self.send_digest(wf, ev, id).await,
                Ok(Decision::Now) => {}
            }
        }
        let emails = match self.catalog().render(wf, &payload, &ev.meta(&wf.name)) {
            Ok(Outcome::Skipped { guard }) => {
                ledger::record_skipped(&self.db, ev.id, &wf.name, &guard).await?;
                self.metrics.emails_skipped(&wf.name).inc();
                return Ok(ProcessOutcome::whole(Disposition::Ack, 1, 0));
            }
            Ok(Outcome::Emails(e)) => e,
            Err(e) => return self.render_failed(wf, ev, e).await,
        };
        self.deliver_all(wf, ev, &emails).await
    }

    /// Deliver each rendered email, keyed by its recipient.
    pub(super) async fn deliver_all(
        &self,
        wf: &Workflow,
        ev: &Event,
        emails: &[Email],
    ) -> Result<ProcessOutcome, DbErr> {
        let mut outcomes = Vec::with_capacity(emails.len());
        for (recipient, email) in recipient_keys(emails) {
            outcomes.push(self.deliver(wf, ev, email, &recipient).await?);
        }
        Ok(ProcessOutcome::from_deliveries(&outcomes))
    }
}

mod dead_letter;
mod redrive;
