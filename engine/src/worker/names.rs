//! Names derived from the ledger key: an email's Message-ID, a workflow's
//! durable consumer.
use crate::EventId;
use crate::workflow::address::Mailbox;

/// `<{event_id}.{workflow}.{n}@{domain of from}>`: derived from the ledger key.
///
/// ```
/// use herald::{EventId, workflow::Mailbox};
/// let id: EventId = "01968f5e-7c1a-7d3e-9b2a-3f4c5d6e7f80".parse()?;
/// let from = Mailbox { name: Some("Club".into()), address: "noreply@club.example".into() };
/// assert_eq!(herald::worker::message_id(id, "welcome", 0, &from), "01968f5e-7c1a-7d3e-9b2a-3f4c5d6e7f80.welcome.0@club.example");
/// # Ok::<(), uuid::Error>(())
/// ```
pub fn message_id(event: EventId, workflow: &str, index: usize, from: &Mailbox) -> String {
    let domain = match from.domain() {
        "" => "herald.local",
        d => d,
    };
    format!("{event}.{workflow}.{index}@{domain}")
}

/// Durable consumer name of a workflow (`herald-NAME`).
///
/// ```
/// assert_eq!(herald::worker::consumer_name("welcome"), "herald-welcome");
/// ```
pub fn consumer_name(wf: &str) -> String {
    format!("herald-{wf}")
}
