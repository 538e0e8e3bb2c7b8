//! The W3C trace context: read from an outbox row's or an event's headers,
//! written to a NATS message.
use std::cell::OnceCell;
use std::collections::BTreeMap;

use opentelemetry::Context;
use opentelemetry::global::{self};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt};

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
pub(super) struct NatsHeaders<'a>(pub(super) &'a mut async_nats::HeaderMap);

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
pub(super) fn event_context(headers_json: &str) -> Context {
    let headers = EventHeaders {
        raw: headers_json,
        parsed: OnceCell::new(),
    };
    global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), &headers))
}

/// Write the context of `span` into a message's headers. Nothing is written
/// for an invalid context (no provider installed and no producer context).
pub(super) fn inject(span: &SpanContext, headers: &mut async_nats::HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let cx = Context::new().with_remote_span_context(span.clone());
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut NatsHeaders(headers)));
}
