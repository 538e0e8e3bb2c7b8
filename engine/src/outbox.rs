//! The transactional outbox: the only way an application hands Herald an event.
//!
//! [`enqueue`] takes the caller's open transaction, so the event commits or
//! rolls back with the state change it describes. There is deliberately no
//! variant taking a bare connection.
use std::collections::BTreeMap;

use chrono::Utc;
use herald_entities::outbox;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    SqlErr, Statement,
};

use crate::subject::{self, SubjectError};

/// Default cap on an event's JSON payload (bytes).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// PostgreSQL channel the relay listens on; notified inside the enqueue transaction
/// so the relay wakes exactly when the row becomes visible.
pub const NOTIFY_CHANNEL: &str = "herald_outbox";

pub use crate::event_id::EventId;

/// An event to enqueue. Built with [`NewEvent::new`] and the chained setters.
#[derive(Debug, Clone)]
pub struct NewEvent {
    subject: String,
    payload: serde_json::Value,
    aggregate: Option<(String, String)>,
    headers: BTreeMap<String, String>,
    event_id: Option<EventId>,
}

impl NewEvent {
    /// `subject` must be `events.…` (no wildcards); `payload` must be a JSON object.
    pub fn new(subject: impl Into<String>, payload: serde_json::Value) -> Self {
        NewEvent {
            subject: subject.into(),
            payload,
            aggregate: None,
            headers: BTreeMap::new(),
            event_id: None,
        }
    }

    /// The entity this event is about. Events of one aggregate are published in
    /// the order they were enqueued.
    pub fn aggregate(mut self, kind: impl Into<String>, id: impl std::fmt::Display) -> Self {
        self.aggregate = Some((kind.into(), id.to_string()));
        self
    }

    /// An extra NATS header carried with the event (e.g. a W3C `traceparent`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Propagate a W3C trace context to the worker.
    pub fn traceparent(self, value: impl Into<String>) -> Self {
        self.header("traceparent", value)
    }

    /// Use a caller-chosen id (idempotent producers); otherwise a new UUIDv7.
    pub fn event_id(mut self, id: impl Into<EventId>) -> Self {
        self.event_id = Some(id.into());
        self
    }
}

/// Limits applied by [`enqueue_with`].
#[derive(Debug, Clone)]
pub struct EnqueueOptions {
    pub max_payload_bytes: usize,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        EnqueueOptions {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// Why an event was not enqueued. Every variant but `Database` is the caller's
/// mistake and wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("invalid subject {subject:?}: {source}")]
    InvalidSubject {
        subject: String,
        #[source]
        source: SubjectError,
    },
    #[error("payload must be a JSON object, got {kind}")]
    PayloadNotObject { kind: &'static str },
    #[error("payload is {size} bytes, over the limit of {max} bytes")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: &'static str },
    #[error("invalid aggregate type {kind:?}: use letters, digits, '_', '-' or '.'")]
    InvalidAggregate { kind: String },
    #[error("event id {0} is already in the outbox")]
    DuplicateEventId(EventId),
    #[error("database error while enqueueing: {0}")]
    Database(#[source] DbErr),
}

impl EnqueueError {
    /// True when the event itself is wrong (as opposed to the database failing).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, EnqueueError::Database(_))
    }
}

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

/// The validated, serialised form of an event, ready to insert.
struct Checked {
    event_id: EventId,
    payload: String,
    headers: String,
    ordering_key: Option<String>,
}

fn check(event: &NewEvent, opts: &EnqueueOptions) -> Result<Checked, EnqueueError> {
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
    let payload = event.payload.to_string();
    if payload.len() > opts.max_payload_bytes {
        return Err(EnqueueError::PayloadTooLarge {
            size: payload.len(),
            max: opts.max_payload_bytes,
        });
    }
    for (name, value) in &event.headers {
        let bad_name = name.is_empty()
            || name
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control());
        if bad_name {
            return Err(EnqueueError::InvalidHeader {
                name: name.clone(),
                reason: "name must be non-empty, without ':' or whitespace",
            });
        }
        if value.contains(['\r', '\n']) {
            return Err(EnqueueError::InvalidHeader {
                name: name.clone(),
                reason: "value contains CR or LF",
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
    let ordering_key = match &event.aggregate {
        Some((kind, id)) => {
            let ok = !kind.is_empty()
                && kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(EnqueueError::InvalidAggregate { kind: kind.clone() });
            }
            Some(format!("{kind}/{id}"))
        }
        None => None,
    };
    Ok(Checked {
        event_id: event.event_id.unwrap_or_default(),
        payload,
        // A BTreeMap of strings always serialises.
        headers: serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".into()),
        ordering_key,
    })
}

/// Check `event` without touching the database (what [`enqueue_with`] checks first).
pub fn validate(event: &NewEvent, opts: &EnqueueOptions) -> Result<(), EnqueueError> {
    check(event, opts).map(|_| ())
}

/// Insert `event` into the outbox inside `txn`, with default limits.
pub async fn enqueue(txn: &DatabaseTransaction, event: NewEvent) -> Result<EventId, EnqueueError> {
    enqueue_with(txn, event, &EnqueueOptions::default()).await
}

/// Insert `event` into the outbox inside `txn`. Nothing is visible to the relay
/// until the caller commits; a rollback removes it with the caller's changes.
pub async fn enqueue_with(
    txn: &DatabaseTransaction,
    event: NewEvent,
    opts: &EnqueueOptions,
) -> Result<EventId, EnqueueError> {
    let checked = check(&event, opts)?;
    let (aggregate_type, aggregate_id) = match event.aggregate {
        Some((k, i)) => (Some(k), Some(i)),
        None => (None, None),
    };
    let row = outbox::ActiveModel {
        event_id: Set(checked.event_id.as_uuid()),
        subject: Set(event.subject),
        aggregate_type: Set(aggregate_type),
        aggregate_id: Set(aggregate_id),
        ordering_key: Set(checked.ordering_key),
        payload: Set(checked.payload),
        headers: Set(checked.headers),
        created_at: Set(Utc::now()),
        published_at: Set(None),
        stream_seq: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        next_attempt_at: Set(None),
        lease_owner: Set(None),
        lease_until: Set(None),
        parked_at: Set(None),
        ..Default::default()
    };
    row.insert(txn).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            EnqueueError::DuplicateEventId(checked.event_id)
        }
        _ => EnqueueError::Database(e),
    })?;
    if txn.get_database_backend() == DbBackend::Postgres {
        // Delivered by PostgreSQL only if and when the transaction commits.
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_notify('{NOTIFY_CHANNEL}', '')"),
        ))
        .await
        .map_err(EnqueueError::Database)?;
    }
    Ok(checked.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_bad_input_before_io() {
        let o = EnqueueOptions::default();
        assert!(matches!(
            check(&NewEvent::new("events.a", json!([1])), &o),
            Err(EnqueueError::PayloadNotObject { kind: "an array" })
        ));
        assert!(matches!(
            check(&NewEvent::new("orders.a", json!({})), &o),
            Err(EnqueueError::InvalidSubject { .. })
        ));
        let small = EnqueueOptions {
            max_payload_bytes: 10,
        };
        assert!(matches!(
            check(
                &NewEvent::new("events.a", json!({"k": "0123456789"})),
                &small
            ),
            Err(EnqueueError::PayloadTooLarge { max: 10, .. })
        ));
        assert!(matches!(
            check(
                &NewEvent::new("events.a", json!({})).header("x", "a\r\nb"),
                &o
            ),
            Err(EnqueueError::InvalidHeader { .. })
        ));
        assert!(matches!(
            check(
                &NewEvent::new("events.a", json!({})).aggregate("a/b", 1),
                &o
            ),
            Err(EnqueueError::InvalidAggregate { .. })
        ));
        let ok = check(
            &NewEvent::new("events.a", json!({})).aggregate("vault", 7),
            &o,
        )
        .unwrap();
        assert_eq!(ok.ordering_key.as_deref(), Some("vault/7"));
    }
}
