//! Acting on a [`Disposition`]: the only code that acks, naks or terminates.
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
