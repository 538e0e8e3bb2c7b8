//! The relay's spans: `relay batch` and one `publish SUBJECT` per row.
use std::collections::BTreeMap;
use std::time::SystemTime;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Link, Span, SpanKind, Status, Tracer};
use opentelemetry::{Context, KeyValue};

use super::context::{inject, producer_context};
use super::{attr, tracer};

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
