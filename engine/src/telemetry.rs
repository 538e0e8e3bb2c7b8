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
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::time::SystemTime;

use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Link, Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
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

/// A header lookup that ignores case (W3C header names are
/// case-insensitive, and producers write `headers` by hand).
fn lookup<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, key: &str) -> Option<&'a str> {
    let mut found = None;
    for (k, v) in pairs {
        if k.eq_ignore_ascii_case(key) {
            found = Some(v);
        }
    }
    found
}

/// The outbox row's `headers` (JSON object of strings), as the relay read it.
struct RowHeaders<'a>(&'a BTreeMap<String, String>);

impl Extractor for RowHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        lookup(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// An event's headers as the worker keeps them (a JSON object), parsed only
/// if a propagator asks: the no-op one never does.
struct EventHeaders<'a> {
    raw: &'a str,
    parsed: OnceCell<serde_json::Map<String, serde_json::Value>>,
}

impl EventHeaders<'_> {
    fn map(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.raw).unwrap_or_default())
    }
}

impl Extractor for EventHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        lookup(
            self.map()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
            key,
        )
    }

    fn keys(&self) -> Vec<&str> {
        self.map().keys().map(String::as_str).collect()
    }
}

/// NATS message headers being built: the propagator's fields replace any
/// the producer wrote, whatever their case. A value NATS cannot carry is
/// skipped (the message then carries the producer's own, if any).
struct NatsHeaders<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        use std::str::FromStr;
        let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::from_str(key),
            async_nats::HeaderValue::from_str(&value),
        ) else {
            return;
        };
        let same: Vec<String> = self
            .0
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| k.eq_ignore_ascii_case(key))
            .collect();
        let mut rebuilt = async_nats::HeaderMap::new();
        if !same.is_empty() {
            for (k, vs) in self.0.iter() {
                if same.iter().any(|s| s == k.as_ref() as &str) {
                    continue;
                }
                for v in vs {
                    rebuilt.append(k.clone(), v.clone());
                }
            }
            *self.0 = rebuilt;
        }
        self.0.insert(name, value);
    }
}

/// The context a producer put in an outbox row's headers (empty without one,
/// or without a propagator).
pub(crate) fn producer_context(headers: &BTreeMap<String, String>) -> Context {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &RowHeaders(headers))
    })
}

/// The context an event carries in its headers (the relay's publish span).
fn event_context(headers_json: &str) -> Context {
    let headers = EventHeaders {
        raw: headers_json,
        parsed: OnceCell::new(),
    };
    global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), &headers))
}

/// Write the context of `span` into a message's headers. Nothing is written
/// for an invalid context (no provider installed and no producer context).
fn inject(span: &SpanContext, headers: &mut async_nats::HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let cx = Context::new().with_remote_span_context(span.clone());
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut NatsHeaders(headers)));
}

/// The value of `herald.recipient.hash`: for each address, the first 16 hex
/// digits of the SHA-256 of the address in lower case, sorted and joined
/// by `,`. The same as `printf %s ada@example.com | sha256sum | cut -c1-16`,
/// so an operator can look an address up; a trace backend never holds one.
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

/// The relay's spans for one batch: the batch's own and one per row.
pub(crate) struct RelayBatch {
    batch: BoxedSpan,
    rows: BTreeMap<i64, BoxedSpan>,
}

impl RelayBatch {
    /// Start the batch span (at `started`, when the claim began) for
    /// `claimed` rows. Called only for a batch that claimed rows, so an idle
    /// relay makes no spans.
    pub(crate) fn start(started: SystemTime, claimed: usize) -> RelayBatch {
        let batch = tracer()
            .span_builder("relay batch")
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.batch.message_count", claimed as i64),
            ])
            .start_with_context(&tracer(), &Context::new());
        RelayBatch {
            batch,
            rows: BTreeMap::new(),
        }
    }

    /// Start the publish span of a row (`headers`: its outbox headers) and
    /// write its context into the message headers `out`.
    pub(crate) fn publish(
        &mut self,
        seq: i64,
        event_id: &str,
        subject: &str,
        headers: &BTreeMap<String, String>,
        out: &mut async_nats::HeaderMap,
    ) {
        let parent = producer_context(headers);
        let tracer = tracer();
        let mut builder = tracer
            .span_builder(format!("publish {subject}"))
            .with_kind(SpanKind::Producer);
        if self.batch.span_context().is_valid() {
            builder =
                builder.with_links(vec![Link::with_context(self.batch.span_context().clone())]);
        }
        let mut span = builder.start_with_context(&tracer, &parent);
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.destination.name", subject.to_string()),
                KeyValue::new("messaging.message.id", event_id.to_string()),
                KeyValue::new(attr::EVENT_ID, event_id.to_string()),
                KeyValue::new(attr::OUTBOX_SEQ, seq),
            ]);
        }
        inject(span.span_context(), out);
        if span.span_context().is_valid() && self.batch.is_recording() {
            self.batch.add_link(
                span.span_context().clone(),
                vec![KeyValue::new(attr::EVENT_ID, event_id.to_string())],
            );
        }
        self.rows.insert(seq, span);
    }

    /// The row went out: JetStream stored it at `stream_seq` (or dropped
    /// it as a duplicate of an earlier publish).
    pub(crate) fn published(&mut self, seq: i64, stream_seq: u64, duplicate: bool) {
        if let Some(mut span) = self.rows.remove(&seq) {
            span.set_attribute(KeyValue::new(attr::STREAM_SEQ, stream_seq as i64));
            let outcome = if duplicate { "duplicate" } else { "published" };
            span.set_attribute(KeyValue::new(attr::OUTCOME, outcome));
            span.end();
        }
    }

    /// The row did not go out: `outcome` says what happens to it.
    pub(crate) fn failed(&mut self, seq: i64, outcome: &'static str, why: &str) {
        if let Some(mut span) = self.rows.remove(&seq) {
            span.set_attribute(KeyValue::new(attr::OUTCOME, outcome));
            span.set_status(Status::error(why.to_string()));
            span.end();
        }
    }

    /// End the batch with its counts; rows not reported (released behind a
    /// failed row of their aggregate) end as `released`.
    pub(crate) fn end(mut self, published: usize, duplicates: usize, failed: usize, parked: usize) {
        for (_, mut span) in std::mem::take(&mut self.rows) {
            span.set_attribute(KeyValue::new(attr::OUTCOME, "released"));
            span.end();
        }
        self.batch.set_attributes([
            KeyValue::new("herald.relay.published", published as i64),
            KeyValue::new("herald.relay.duplicates", duplicates as i64),
            KeyValue::new("herald.relay.failed", failed as i64),
            KeyValue::new("herald.relay.parked", parked as i64),
        ]);
        if failed + parked > 0 {
            self.batch.set_status(Status::error(format!(
                "{failed} row(s) failed, {parked} parked"
            )));
        }
        self.batch.end();
    }

    /// The batch failed as a whole (database, NATS).
    pub(crate) fn abort(mut self, why: &str) {
        for (_, mut span) in std::mem::take(&mut self.rows) {
            span.set_attribute(KeyValue::new(attr::OUTCOME, "released"));
            span.end();
        }
        self.batch.set_status(Status::error(why.to_string()));
        self.batch.end();
    }
}

/// The context of one workflow processing one event: a `process WORKFLOW`
/// span, child of the context in the event's headers. Run the processing
/// inside it (`FutureExt::with_context`) so that `smtp send` spans are its
/// children.
pub(crate) fn process_context(
    workflow: &str,
    consumer: &str,
    event_id: &str,
    subject: &str,
    stream_seq: Option<u64>,
    headers_json: &str,
) -> Context {
    let parent = event_context(headers_json);
    let tracer = tracer();
    let mut span = tracer
        .span_builder(format!("process {workflow}"))
        .with_kind(SpanKind::Consumer)
        .start_with_context(&tracer, &parent);
    if span.is_recording() {
        span.set_attributes([
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", subject.to_string()),
            KeyValue::new("messaging.consumer.group.name", consumer.to_string()),
            KeyValue::new("messaging.message.id", event_id.to_string()),
            KeyValue::new(attr::EVENT_ID, event_id.to_string()),
            KeyValue::new(attr::WORKFLOW, workflow.to_string()),
        ]);
        if let Some(s) = stream_seq {
            span.set_attribute(KeyValue::new(attr::STREAM_SEQ, s as i64));
        }
    }
    parent.with_span(span)
}

/// End the span of [`process_context`] with what processing decided.
pub(crate) fn end_process(cx: &Context, outcome: &str, error: Option<String>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(attr::OUTCOME, outcome.to_string()));
    if let Some(e) = error {
        span.set_status(Status::error(e));
    }
    span.end();
}

/// An `smtp send` span, child of the current context (the event's
/// `process` span). Attributes are computed only if it records.
pub(crate) fn smtp_span(
    workflow: &str,
    event_id: &str,
    to: &[&str],
    attempt: u32,
    message_id: &str,
) -> BoxedSpan {
    let tracer = tracer();
    let mut span = tracer
        .span_builder("smtp send")
        .with_kind(SpanKind::Client)
        .start_with_context(&tracer, &Context::current());
    if span.is_recording() {
        span.set_attributes([
            KeyValue::new(attr::EVENT_ID, event_id.to_string()),
            KeyValue::new(attr::WORKFLOW, workflow.to_string()),
            KeyValue::new(attr::RECIPIENT_HASH, recipient_hash(to.iter().copied())),
            KeyValue::new(attr::ATTEMPT, i64::from(attempt)),
            KeyValue::new(attr::MESSAGE_ID, message_id.to_string()),
        ]);
    }
    span
}

/// End an `smtp send` span: the reply code (`250`) when there is one, and
/// the kind of failure; never the reply text, which may name an address.
pub(crate) fn end_smtp(mut span: BoxedSpan, reply: Option<&str>, failure: Option<&str>) {
    if let Some(code) = reply
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<i64>().ok())
    {
        span.set_attribute(KeyValue::new(attr::SMTP_CODE, code));
    }
    match failure {
        None => span.set_attribute(KeyValue::new(attr::OUTCOME, "sent")),
        Some(kind) => {
            span.set_attribute(KeyValue::new(attr::OUTCOME, kind.to_string()));
            span.set_status(Status::error(kind.to_string()));
        }
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_hash_is_sha256_prefix_of_lower_case() {
        // printf %s ada@example.com | sha256sum | cut -c1-16
        let one = recipient_hash(["Ada@Example.com"]);
        assert_eq!(one.len(), 16);
        assert_eq!(one, recipient_hash(["ada@example.com"]));
        let two = recipient_hash(["b@example.com", "ada@example.com"]);
        assert_eq!(two, recipient_hash(["ada@example.com", "b@example.com"]));
        assert!(two.contains(&one));
        assert!(!two.contains('@'));
    }

    #[test]
    fn nothing_is_written_without_a_propagator() {
        let mut row = BTreeMap::new();
        row.insert(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        );
        let mut out = async_nats::HeaderMap::new();
        let mut batch = RelayBatch::start(SystemTime::now(), 1);
        batch.publish(1, "e", "events.a", &row, &mut out);
        batch.end(1, 0, 0, 0);
        assert!(
            out.get("traceparent").is_none(),
            "the no-op propagator injects nothing"
        );
    }

    #[test]
    fn injected_context_replaces_the_producers_whatever_its_case() {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            "Traceparent",
            "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01",
        );
        h.insert("Nats-Msg-Id", "x");
        NatsHeaders(&mut h).set(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        let names: Vec<String> = h.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            names
                .iter()
                .filter(|k| k.eq_ignore_ascii_case("traceparent"))
                .count(),
            1
        );
        assert_eq!(
            h.get("traceparent")
                .map(|v| v.as_str().to_string())
                .as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(h.get("Nats-Msg-Id").is_some());
    }
}
