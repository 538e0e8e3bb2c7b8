//! What an event must be before any I/O: `validate` and the checks that build
//! the row's values (the database's CHECKs refuse the same).
use crate::subject;

#[cfg(doc)]
use super::enqueue_with;
use super::{Checked, DEFAULT_MAX_PAYLOAD, EnqueueError, EnqueueOptions, NewEvent};

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// How deep serde_json parses (its recursion limit of 128 counts the
/// top-level object, and refuses at 128 levels): the worker could not read
/// a deeper payload back.
const MAX_DEPTH: usize = 127;

/// Nesting depth of arrays and objects (a scalar is 0), without recursion:
/// a value built in code may be deeper than the stack.
fn depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(v, 0usize)];
    while let Some((v, d)) = todo.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        if deepest > MAX_DEPTH {
            return deepest;
        }
        todo.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

pub(super) fn check(event: &NewEvent, opts: &EnqueueOptions) -> Result<Checked, EnqueueError> {
    subject::validate_event_subject(&event.subject).map_err(|source| {
        EnqueueError::InvalidSubject {
            subject: event.subject.clone(),
            source,
        }
    })?;
    if !event.payload.is_object() {
        return Err(EnqueueError::PayloadNotObject {
            kind: json_kind(&event.payload),
        });
    }
    if depth(&event.payload) > MAX_DEPTH {
        return Err(EnqueueError::PayloadTooDeep { max: MAX_DEPTH });
    }
    let payload = event.payload.to_string();
    let max = opts.max_payload_bytes.min(DEFAULT_MAX_PAYLOAD);
    if payload.len() > max {
        return Err(EnqueueError::PayloadTooLarge {
            size: payload.len(),
            max,
        });
    }
    for (name, value) in &event.headers {
        // What NATS accepts as a header name (the relay could not publish
        // anything else).
        let bad_name = name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && c != ':');
        if bad_name {
            return Err(EnqueueError::InvalidHeader {
                name: name.clone(),
                reason: "name must be non-empty printable ASCII, without ':' or spaces",
            });
        }
        // NUL: PostgreSQL's jsonb cannot hold it.
        if value.contains(['\r', '\n', '\0']) {
            return Err(EnqueueError::InvalidHeader {
                name: name.clone(),
                reason: "value contains CR, LF or NUL",
            });
        }
        if name.eq_ignore_ascii_case("Nats-Msg-Id")
            || name.to_ascii_lowercase().starts_with("herald-")
        {
            return Err(EnqueueError::InvalidHeader {
                name: name.clone(),
                reason: "reserved for Herald",
            });
        }
    }
    if let Some((kind, id)) = &event.aggregate {
        let ok = !kind.is_empty()
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(EnqueueError::InvalidAggregate { kind: kind.clone() });
        }
        // It travels in the Herald-Aggregate header.
        if id.contains(['\r', '\n']) {
            return Err(EnqueueError::InvalidAggregateId { id: id.clone() });
        }
    }
    let (aggregate_type, aggregate_id) = match &event.aggregate {
        Some((k, i)) => (Some(k.clone()), Some(i.clone())),
        None => (None, None),
    };
    Ok(Checked {
        event_id: event.event_id.unwrap_or_default(),
        subject: event.subject.clone(),
        aggregate_type,
        aggregate_id,
        payload,
        // A BTreeMap of strings always serialises.
        headers: serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".into()),
    })
}

/// Check `event` without touching the database (what [`enqueue_with`] checks first).
///
/// ```
/// use herald::outbox::{validate, EnqueueOptions, NewEvent};
/// let event = NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))
///     .header("Nats-Msg-Id", "mine");
/// // Reserved header: refused before any transaction is opened.
/// assert!(validate(&event, &EnqueueOptions::default()).is_err());
/// ```
pub fn validate(event: &NewEvent, opts: &EnqueueOptions) -> Result<(), EnqueueError> {
    check(event, opts).map(|_| ())
}
