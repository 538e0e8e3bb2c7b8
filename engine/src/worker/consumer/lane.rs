//! One lane's task: its messages one at a time, each stepped to settle now
//! or wait behind an earlier event; the in-progress signal of a session.
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::worker::lanes::LaneKey;
use crate::worker::settle::{give_back, keep, settle};
use crate::worker::{Disposition, Event};
use crate::workflow::Workflow;

use super::Session;

/// One lane: its messages one at a time, in order. The head is looked up
/// again after every wait, since an earlier message (a redelivery) may have
/// arrived meanwhile and must go first.
pub(super) async fn lane(s: Arc<Session>, key: LaneKey) {
    // How long the head has been blocked behind an earlier event (its
    // stream sequence, since when).
    let mut blocked: Option<(u64, Instant)> = None;
    while let Some(msg) = s.lanes.head(&key) {
        match step(&s, &msg, key.ordered()).await {
            Step::Settled => {
                blocked = None;
                if !s.lanes.pop(&key, &msg) {
                    return;
                }
            }
            Step::Blocked(d) => {
                let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                let since = match blocked {
                    Some((head, since)) if head == seq => since,
                    _ => Instant::now(),
                };
                blocked = Some((seq, since));
                // The earlier event may never reach this lane while it holds
                // its place: after a stream loss and `outbox republish` it
                // sits in the stream behind the messages filling the lanes
                // (and JetStream's max_ack_pending), all waiting for it.
                // Giving the head back does not help (JetStream redelivers
                // it first); after a while, process the earlier event from
                // the outbox instead.
                if since.elapsed() >= PROCESS_OUTSTANDING_AFTER {
                    // Done: the next earlier one (if any) goes at once.
                    if unblock(&s, &msg).await {
                        continue;
                    }
                    blocked = Some((seq, Instant::now()));
                }
                tokio::select! {
                    _ = s.stop.cancelled() => {}
                    _ = tokio::time::sleep(d) => continue,
                }
            }
            Step::Wait(d) => {
                tokio::select! {
                    _ = s.stop.cancelled() => {}
                    _ = tokio::time::sleep(d) => continue,
                }
            }
            Step::Stopped => {}
        }
        if s.stop.is_cancelled() {
            // This message and the ones behind it go back.
            for m in s.lanes.drain(&key) {
                give_back(&m).await;
            }
            return;
        }
    }
}

impl Session {
    /// The definition to process the next message with: the reloaded one
    /// if a reload happened since the last message (a removed workflow keeps
    /// its last definition until its consumer stops).
    fn workflow(&self) -> Arc<Workflow> {
        let generation = *self.worker.generation.borrow();
        let mut c = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if c.0 != generation {
            if let Some(w) = self.worker.workflow(&self.wf.name) {
                c.1 = Arc::new(w);
            }
            c.0 = generation;
        }
        c.1.clone()
    }
}

/// How long the head of a lane waits in place for an earlier event of its
/// aggregate (or a claim held elsewhere) before the earlier event is taken
/// from the outbox (see `unblock`).
const PROCESS_OUTSTANDING_AFTER: Duration = Duration::from_secs(5);

/// Process the earlier event `msg` waits for from the outbox, under a
/// concurrency slot; whether one was finished.
async fn unblock(s: &Session, msg: &jetstream::Message) -> bool {
    let seq = msg.info().ok().map(|i| i.stream_sequence);
    let Ok(ev) = Event::from_message(msg, seq) else {
        return false;
    };
    let _permit = tokio::select! {
        _ = s.stop.cancelled() => return false,
        p = s.slots.acquire() => p,
    };
    let wf = s.workflow();
    match s.worker.process_outstanding(&wf, &ev).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(workflow = %wf.name, event_id = %ev.id, error = %e,
                "database error looking for the earlier event; waiting");
            false
        }
    }
}

enum Step {
    Settled,
    /// Look at the lane again after this (a retry, or the transport).
    Wait(Duration),
    /// Look at the lane again after this: a claim elsewhere, or an earlier
    /// event of the aggregate not finished yet.
    Blocked(Duration),
    Stopped,
}

/// Process `msg` once. Messages of an aggregate wait in place for a retry,
/// a claim elsewhere or the transport, so the ones behind them keep their
/// order; a message without an aggregate is handed back to JetStream for a
/// retry and frees its place.
async fn step(s: &Session, msg: &jetstream::Message, ordered: bool) -> Step {
    let transport = &s.worker.transport;
    tokio::select! {
        _ = s.stop.cancelled() => return Step::Stopped,
        _ = transport.wait_up() => {}
    }
    let permit = tokio::select! {
        _ = s.stop.cancelled() => return Step::Stopped,
        p = s.slots.acquire() => p,
    };
    let wf = s.workflow();
    let d = s.worker.handle(&wf, msg).await;
    drop(permit);
    match &d {
        // Back to the gate.
        Disposition::Paused => Step::Wait(Duration::ZERO),
        Disposition::Retry { after } if ordered => Step::Wait(*after),
        Disposition::Busy { after } if ordered => Step::Blocked(*after),
        _ => {
            settle(msg, &d, &s.worker.metrics, &s.wf.name).await;
            Step::Settled
        }
    }
}

/// Keep every held message ours (JetStream redelivers a message
/// unacknowledged for `ack_wait`): the ones being sent to a slow server and
/// the ones waiting in their lane.
pub(super) async fn progress(s: Arc<Session>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = s.stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for m in s.lanes.all() {
            keep(&m).await;
        }
        if s.lanes.held() == 0 && s.stop.is_cancelled() {
            return;
        }
    }
}
