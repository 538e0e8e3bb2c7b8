//! A dry run's account of one event: what the real run would do with each
//! of its emails, asked in the order the worker asks (held behind a dead
//! letter, waiting for an earlier event, the guard, the render, the ledger,
//! suppressions and unsubscribes), reading and writing nothing else.
use crate::EventId;
use crate::suppression::lookup::Lookup;
use crate::worker::{Event, Worker};
use crate::workflow::Workflow;
use crate::workflow::render::Outcome;
use herald_entities::delivery::DeliveryState;

use super::{ReplayError, Summary};

/// What the real run would do with one email (or, for the first four, with
/// the whole event).
///
/// ```
/// use herald::replay::Preview;
/// assert_eq!(Preview::AlreadySent.to_string(), "already sent: skipped");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preview {
    /// Held behind the open dead letter of this earlier event of its
    /// aggregate: not sent (counted failed, as the real run counts it).
    Held { behind: EventId },
    /// An earlier event of its aggregate is not finished: the real run
    /// leaves it for later (skipped).
    Waiting { for_event: EventId },
    /// A guard did not hold: nothing to send (skipped).
    GuardFailed { guard: String },
    /// It does not render: a dead letter (failed).
    RenderFails { reason: String },
    /// Sent.
    Send,
    /// Sent already, and sent again (`--resend`).
    Resend,
    /// Sent already: skipped.
    AlreadySent,
    /// The ledger has it in another final state (dead-lettered, skipped,
    /// suppressed): skipped.
    Recorded { state: DeliveryState },
    /// Every `to` address is suppressed or unsubscribed: not sent (skipped).
    Suppressed,
}

impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Preview::Held { behind } => {
                write!(f, "held behind dead-lettered event {behind}: not sent")
            }
            Preview::Waiting { for_event } => {
                write!(f, "waits for earlier event {for_event}: not sent now")
            }
            Preview::GuardFailed { guard } => write!(f, "guard {guard} does not hold: skipped"),
            Preview::RenderFails { reason } => write!(f, "does not render: {reason}"),
            Preview::Send => f.write_str("would be sent"),
            Preview::Resend => f.write_str("sent already: would be sent again (--resend)"),
            Preview::AlreadySent => f.write_str("already sent: skipped"),
            Preview::Recorded { state } => write!(f, "recorded as {state}: skipped"),
            Preview::Suppressed => f.write_str("suppressed or unsubscribed: not sent"),
        }
    }
}

/// One line of a dry run: an email's recipients and subject (empty for an
/// event that sends none), and what the real run would do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WouldSend {
    pub to: String,
    pub subject: String,
    pub preview: Preview,
}

impl WouldSend {
    fn whole(preview: Preview) -> WouldSend {
        WouldSend {
            to: String::new(),
            subject: String::new(),
            preview,
        }
    }
}

/// What the real run would do with `ev`, counted into `summary` as the
/// real run counts it.
pub(super) async fn preview(
    worker: &Worker,
    wf: &Workflow,
    ev: &Event,
    summary: &mut Summary,
) -> Result<Vec<WouldSend>, ReplayError> {
    let out = lines(worker, wf, ev).await?;
    for w in &out {
        match w.preview {
            Preview::Send | Preview::Resend => summary.sent += 1,
            Preview::AlreadySent
            | Preview::Recorded { .. }
            | Preview::Suppressed
            | Preview::Waiting { .. }
            | Preview::GuardFailed { .. } => summary.skipped += 1,
            Preview::Held { .. } | Preview::RenderFails { .. } => summary.failed += 1,
        }
    }
    Ok(out)
}

async fn lines(worker: &Worker, wf: &Workflow, ev: &Event) -> Result<Vec<WouldSend>, ReplayError> {
    if let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.stream_seq)
        && let Some(front) =
            crate::dlq::blocking(&worker.db, &wf.name, aggregate, seq, ev.id).await?
    {
        return Ok(vec![WouldSend::whole(Preview::Held {
            behind: front.event_id.into(),
        })]);
    }
    if let (Some(aggregate), Some(seq)) = (&ev.aggregate, ev.outbox_seq) {
        let first = worker
            .first_stream_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(earlier) =
            crate::worker::order::outstanding(&worker.db, wf, aggregate, seq, first).await?
        {
            return Ok(vec![WouldSend::whole(Preview::Waiting {
                for_event: earlier.event_id,
            })]);
        }
    }
    let payload: serde_json::Value = serde_json::from_str(&ev.payload).unwrap_or_default();
    let emails = match worker.catalog().render(wf, &payload, &ev.meta(&wf.name)) {
        Ok(Outcome::Emails(emails)) => emails,
        Ok(Outcome::Skipped { guard }) => {
            return Ok(vec![WouldSend::whole(Preview::GuardFailed { guard })]);
        }
        Err(e) => {
            return Ok(vec![WouldSend::whole(Preview::RenderFails {
                reason: e.to_string(),
            })]);
        }
    };
    let mut out = Vec::new();
    // The worker's keys (a repeated address list gets its item index), so
    // what the dry run calls sent is what a replay would skip.
    for (recipient, e) in crate::worker::recipient_keys(&emails) {
        let key = crate::ledger::Key {
            event_id: ev.id,
            workflow: &wf.name,
            recipient: &recipient,
        };
        let state = crate::ledger::state_of(&worker.db, &key).await?;
        let resend = worker.resend.is_some();
        let preview = match state {
            Some(DeliveryState::Sent) if !resend => Preview::AlreadySent,
            Some(s) if s.is_final() && s != DeliveryState::Sent => Preview::Recorded { state: s },
            _ if suppressed(worker, wf, e).await? => Preview::Suppressed,
            Some(DeliveryState::Sent) => Preview::Resend,
            _ => Preview::Send,
        };
        let to: Vec<String> = e.to.iter().map(ToString::to_string).collect();
        out.push(WouldSend {
            to: to.join(", "),
            subject: e.subject.clone(),
            preview,
        });
    }
    Ok(out)
}

/// Whether every `to` address of the email is suppressed or unsubscribed
/// from the workflow's category (the worker then sends nothing).
async fn suppressed(
    worker: &Worker,
    wf: &Workflow,
    email: &crate::workflow::render::Email,
) -> Result<bool, ReplayError> {
    let lookup = Lookup {
        addresses: email.to.iter().map(|m| m.address.clone()).collect(),
        category: wf.category().map(str::to_string),
        suppressions: !wf.delivery.ignore_suppression,
    };
    if !lookup.asks() {
        return Ok(false);
    }
    let blocked = worker.lookups.write(lookup).await?;
    Ok(email.to.iter().all(|m| {
        blocked
            .iter()
            .any(|(a, _)| a.eq_ignore_ascii_case(&m.address))
    }))
}
