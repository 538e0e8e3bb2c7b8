//! Unit tests of the spans: the recipient hash, injection with and without a propagator.
use super::context::NatsHeaders;
use super::*;
use opentelemetry::propagation::Injector;
use std::collections::BTreeMap;
use std::time::SystemTime;

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
