//! The only code that tells the server what became of a message: acting
//! on a [`Disposition`] (ack, nak with a delay, term), giving back one not
//! processed (a lane drained at shutdown), keeping one in flight (progress).
use async_nats::jetstream::{self, AckKind};

use super::Disposition;
use crate::metrics::Metrics;

/// Apply a disposition to a message of `workflow`'s consumer.
pub async fn settle(msg: &jetstream::Message, d: &Disposition, metrics: &Metrics, workflow: &str) {
    let r = match d {
        Disposition::Ack => msg.double_ack().await.map(|_| ()),
        Disposition::Retry { after } | Disposition::Busy { after } => {
            msg.ack_with(AckKind::Nak(Some(*after))).await.map(|_| ())
        }
        // Nothing was tried; another worker (or this one, later) takes it.
        Disposition::Paused => msg
            .ack_with(AckKind::Nak(Some(std::time::Duration::from_secs(1))))
            .await
            .map(|_| ()),
        Disposition::Terminate { .. } => msg.ack_with(AckKind::Term).await.map(|_| ()),
    };
    match r {
        Ok(()) => metrics.messages_acked(workflow).inc(),
        // The ledger already holds the outcome: a redelivery is harmless.
        Err(e) => tracing::warn!(error = %e, "ack failed; the message will be redelivered"),
    }
}

/// A message this worker will not process (its lane was drained at
/// shutdown): redelivered at once, to this worker or another.
pub async fn give_back(msg: &jetstream::Message) {
    if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %e, "nak failed; the message will be redelivered after the ack wait");
    }
}

/// A message still in this worker's hands (sending, or waiting in its
/// lane): not redelivered while `ack_wait` passes.
pub async fn keep(msg: &jetstream::Message) {
    let _ = msg.ack_with(AckKind::Progress).await;
}
