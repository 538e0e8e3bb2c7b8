//! The worker's spans: `process WORKFLOW` and `smtp send`.

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use super::context::event_context;
use super::{attr, recipient_hash, tracer};

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
