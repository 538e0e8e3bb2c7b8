//! OpenTelemetry traces of Herald's work: the spans the relay and the worker
//! start, and the W3C trace context they read from and write to an event's
//! headers.
//!
//! Only the OpenTelemetry API is used here, as OpenTelemetry asks of
//! libraries: until an application installs a tracer provider and a text
//! map propagator (the `herald` binary does so only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), every span is a no-op, no header
//! is read or written, and nothing is exported.
//!
//! The shape of one event's trace (docs/observability.md shows it):
//! - the relay's `relay batch` span (its own trace: a batch mixes many
//!   requests) links to each event's `publish SUBJECT` span;
//! - `publish SUBJECT` is a child of the producer's `traceparent` (captured
//!   in the outbox row's `headers`), so it lands in the request's own
//!   trace; it links back to its batch, and its context replaces the
//!   `traceparent` on the NATS message;
//! - the worker's `process WORKFLOW` is a child of the message's
//!   `traceparent` (the publish span), once per attempt and per workflow;
//! - `smtp send` is a child of `process WORKFLOW`, once per email.
//!
//! ```no_run
//! // Spans name recipients only by hash, never by address:
//! let hash = herald::telemetry::recipient_hash(["ada@example.com"]);
//! assert_eq!(hash, herald::telemetry::recipient_hash(["Ada@Example.com"]));
//! ```

use opentelemetry::InstrumentationScope;
use opentelemetry::global::{self, BoxedTracer};
use sha2::{Digest, Sha256};

/// Herald's own attribute names.
pub(crate) mod attr {
    pub const EVENT_ID: &str = "herald.event_id";
    pub const WORKFLOW: &str = "herald.workflow";
    /// Hashes of the `to` addresses ([`super::recipient_hash`]), never the addresses.
    pub const RECIPIENT_HASH: &str = "herald.recipient.hash";
    pub const OUTBOX_SEQ: &str = "herald.outbox.seq";
    pub const STREAM_SEQ: &str = "herald.stream.seq";
    pub const OUTCOME: &str = "herald.outcome";
    pub const ATTEMPT: &str = "herald.attempt";
    pub const MESSAGE_ID: &str = "herald.message_id";
    pub const SMTP_CODE: &str = "herald.smtp.reply_code";
}

/// The tracer every Herald span comes from: the global provider's, looked
/// up per span so that a provider installed after a relay or worker was
/// built is used.
fn tracer() -> BoxedTracer {
    global::tracer_with_scope(
        InstrumentationScope::builder("herald")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// The value of `herald.recipient.hash`: for each address, the first 16 hex
/// digits of the SHA-256 of the address in lower case, sorted and joined
/// by `,`. The same as `printf %s ada@example.com | sha256sum | cut -c1-16`,
/// so an operator can look an address up; a trace backend never holds one.
///
/// ```
/// use herald::telemetry::recipient_hash;
/// let h = recipient_hash(["Ada@Example.com"]);
/// assert_eq!(h, recipient_hash(["ada@example.com"]));
/// assert_eq!(h.len(), 16);
/// // Two recipients: two hashes, in sorted order, whatever the order given.
/// assert_eq!(recipient_hash(["b@x.org", "a@x.org"]), recipient_hash(["a@x.org", "b@x.org"]));
/// ```
pub fn recipient_hash<'a>(addresses: impl IntoIterator<Item = &'a str>) -> String {
    let mut hashes: Vec<String> = addresses
        .into_iter()
        .map(|a| {
            let digest = Sha256::digest(a.trim().to_lowercase().as_bytes());
            digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    hashes.sort();
    hashes.join(",")
}

mod context;
mod relay;
#[cfg(test)]
mod tests;
mod worker;

pub(crate) use relay::RelayBatch;
pub(crate) use worker::{end_process, end_smtp, process_context, smtp_span};
