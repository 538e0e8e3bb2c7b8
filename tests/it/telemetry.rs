//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, relay and worker
//! (real processes) export one event's chain to an OTLP receiver in the
//! test: producer's traceparent → relay publish → worker process → smtp
//! send; without it the producer's headers pass through untouched; an
//! unreachable collector costs no email.
use std::time::Duration;

use herald::outbox::{NewEvent, enqueue};
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::otlp::{OtlpReceiver, ReceivedSpan};
use herald_tests::scenario::{Scenario, World};
use herald_tests::wait;
use sea_orm::TransactionTrait;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::worker::FAST_RETRY;

/// The producer's request, as docs/producers.md shows it.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

const ADDRESS: &str = "Ada.Lovelace@Example.com";

/// Enqueue one event carrying the producer's traceparent, as an
/// application does in its own transaction; its id.
async fn enqueue_traced(w: &World) -> String {
    let txn = w.env.conn.begin().await.expect("begin");
    let id = enqueue(
        &txn,
        NewEvent::new(
            "events.test.traced",
            json!({"email": ADDRESS, "name": "Ada"}),
        )
        .traceparent(format!("00-{TRACE}-{PARENT}-01")),
    )
    .await
    .expect("enqueue");
    txn.commit().await.expect("commit");
    id.to_string()
}

/// The `traceparent` header of the stream's first message.
async fn stream_traceparent(w: &World) -> Option<String> {
    let js = w.env.nats.jetstream().await;
    let stream = js.get_stream("HERALD").await.expect("stream");
    let msg = stream.get_raw_message(1).await.expect("message 1");
    msg.headers
        .get("traceparent")
        .map(|v| v.as_str().to_string())
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "one {what} span expected; received: {spans:#?}"
    );
    found[0]
}

/// The worker: processing continues from the message, sending from processing;
/// the recipient appears only as its hash.
fn worker_spans_continue_the_publish(
    spans: &[ReceivedSpan],
    names: &[&str; 3],
    publish: &ReceivedSpan,
    id: &str,
) {
    // The worker: processing continues from the message, sending from processing.
    let of_event = |s: &ReceivedSpan| s.attr("herald.event_id") == Some(id);
    let process = one(spans, "process", |s| s.name == names[1] && of_event(s));
    assert_eq!(process.service, "herald-worker");
    assert_eq!(process.kind, 5, "a consumer span");
    assert_eq!(process.trace_id, TRACE);
    assert_eq!(process.parent_span_id, publish.span_id);
    assert_eq!(process.attr("herald.workflow"), Some("notify"));
    assert_eq!(process.attr("herald.outcome"), Some("done"));
    let smtp = one(spans, "smtp send", |s| s.name == names[2] && of_event(s));
    assert_eq!(smtp.kind, 3, "a client span");
    assert_eq!(smtp.trace_id, TRACE);
    assert_eq!(smtp.parent_span_id, process.span_id);
    assert_eq!(smtp.attr("herald.workflow"), Some("notify"));
    assert_eq!(smtp.attr("herald.smtp.reply_code"), Some("250"));
    // `printf %s ada.lovelace@example.com | sha256sum | cut -c1-16`
    let digest = Sha256::digest(ADDRESS.to_lowercase().as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(smtp.attr("herald.recipient.hash"), Some(hash.as_str()));
}

/// No span anywhere holds the address.
fn no_span_holds_the_address(spans: &[ReceivedSpan]) {
    // No span anywhere holds the address.
    for s in spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.to_lowercase().contains(&ADDRESS.to_lowercase()),
                "span {} attribute {k} holds the address: {v}",
                s.name
            );
        }
    }
}

async fn one_event_is_traced_from_producer_to_smtp(backend: Backend) {
    let otlp = OtlpReceiver::start().await;
    let mut w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    w.h.set("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
        // Nothing leaves before shutdown: the spans arrive only if
        // stopping flushes them.
        .set("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let mut relay = w.relay();
    let mut worker = w.worker();
    let id = enqueue_traced(&w).await;
    w.wait_sent(1).await;
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let names = ["publish events.test.traced", "process notify", "smtp send"];
    wait::until(
        "the event's spans reach the receiver",
        wait::DEFAULT,
        || async {
            let spans = otlp.spans();
            names.iter().all(|n| {
                spans
                    .iter()
                    .any(|s| s.name == *n && s.attr("herald.event_id") == Some(id.as_str()))
            })
        },
    )
    .await;
    let spans = otlp.spans();
    let of_event = |s: &ReceivedSpan| s.attr("herald.event_id") == Some(id.as_str());

    // The relay: a publish span in the producer's trace, child of its span.
    let publish = one(&spans, "publish", |s| s.name == names[0] && of_event(s));
    assert_eq!(publish.service, "herald-relay");
    assert_eq!(publish.kind, 4, "a producer span");
    assert_eq!(publish.trace_id, TRACE, "the producer's trace continues");
    assert_eq!(
        publish.parent_span_id, PARENT,
        "child of the producer's span"
    );
    assert_eq!(
        publish.attr("messaging.destination.name"),
        Some("events.test.traced")
    );
    // The batch is its own trace, linked to the event's publish span (and
    // back): a batch is never any request's parent.
    let batch = one(&spans, "relay batch", |s| {
        s.name == "relay batch"
            && s.links
                .contains(&(TRACE.to_string(), publish.span_id.clone()))
    });
    assert_ne!(batch.trace_id, TRACE);
    assert!(batch.parent_span_id.is_empty(), "a batch span is a root");
    assert!(
        publish
            .links
            .contains(&(batch.trace_id.clone(), batch.span_id.clone())),
        "the publish span links to its batch"
    );
    // The message carries the publish span's context to the worker.
    assert_eq!(
        stream_traceparent(&w).await.as_deref(),
        Some(format!("00-{TRACE}-{}-01", publish.span_id).as_str())
    );

    worker_spans_continue_the_publish(&spans, &names, publish, &id);

    no_span_holds_the_address(&spans);
}

async fn without_an_endpoint_headers_pass_through_untouched(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    let _relay = w.relay();
    enqueue_traced(&w).await;
    w.env.wait_all_published().await;
    assert_eq!(
        stream_traceparent(&w).await.as_deref(),
        Some(format!("00-{TRACE}-{PARENT}-01").as_str()),
        "no provider: the relay writes no context of its own"
    );
}

async fn an_unreachable_collector_costs_no_email(backend: Backend) {
    let mut w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", herald_tests::free_port());
    w.h.set("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .set("OTEL_BSP_SCHEDULE_DELAY", "50")
        .set("OTEL_EXPORTER_OTLP_TIMEOUT", "500");
    let mut relay = w.relay();
    let mut worker = w.worker();
    for _ in 0..3 {
        enqueue_traced(&w).await;
    }
    w.wait_sent(3).await;
    wait::until(
        "the worker reports the failed export",
        wait::DEFAULT,
        || async { worker.log().contains("cannot export traces") },
    )
    .await;
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let log = worker.log();
    assert_eq!(
        log.matches("cannot export traces").count(),
        1,
        "reported once, not per batch:\n{log}"
    );
}

both_backends!(
    one_event_is_traced_from_producer_to_smtp,
    without_an_endpoint_headers_pass_through_untouched,
    an_unreachable_collector_costs_no_email,
);
