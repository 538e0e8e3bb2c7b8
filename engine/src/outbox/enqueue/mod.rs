//! The transactional outbox: the only way an application hands Herald an event.
//!
//! [`enqueue`] takes the caller's open transaction, so the event commits or
//! rolls back with the state change it describes: a SeaORM
//! `&DatabaseTransaction`, or a `&mut sqlx::Transaction` on PostgreSQL or
//! SQLite for applications that use sqlx directly (the sqlx Herald is built
//! with is re-exported as [`sqlx`]). There is deliberately no variant taking a
//! bare connection or pool: [`OutboxTransaction`] is sealed and implemented
//! only for transactions.
//!
//! Rust producers insert through the same SQL contract as every other
//! language (docs/producers.md): the insertable columns only, everything else
//! is the database's default, and the database's CHECK constraints refuse
//! what [`validate`] refuses. On PostgreSQL a trigger wakes the relay for any
//! insert, so enqueue sends no NOTIFY of its own.
mod transaction;
mod validate;

use std::collections::BTreeMap;

use sea_orm::{DbErr, SqlErr};

use crate::subject::SubjectError;

pub use transaction::OutboxTransaction;
use validate::check;
pub use validate::validate;

/// The sqlx that [`OutboxTransaction`] is implemented for (the one SeaORM uses).
pub use sea_orm::sqlx;

/// Largest event payload (bytes of JSON text). The database refuses anything
/// larger (`herald_outbox_payload_size`), so it is also the most
/// [`EnqueueOptions::max_payload_bytes`] can allow.
///
/// ```
/// use herald::outbox::{validate, EnqueueOptions, NewEvent, DEFAULT_MAX_PAYLOAD};
/// // A higher limit is capped: the database would refuse the row anyway.
/// let opts = EnqueueOptions { max_payload_bytes: 4 * DEFAULT_MAX_PAYLOAD };
/// let csv = "x".repeat(DEFAULT_MAX_PAYLOAD);
/// let event = NewEvent::new("events.report.ready", serde_json::json!({ "csv": csv }));
/// assert!(validate(&event, &opts).is_err());
/// ```
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// PostgreSQL channel the relay listens on. The outbox's statement-level
/// trigger notifies it for every insert; PostgreSQL delivers the notification
/// at commit, so the relay wakes exactly when the row becomes visible.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use sea_orm::ConnectionTrait;
/// // Wake the relays by hand, e.g. after inserting rows with the trigger disabled.
/// let sql = format!("NOTIFY {}", herald::outbox::NOTIFY_CHANNEL);
/// db.execute_unprepared(&sql).await?;
/// # Ok(()) }
/// ```
pub const NOTIFY_CHANNEL: &str = "herald_outbox";

use crate::event_id::EventId;

/// An event to enqueue. Built with [`NewEvent::new`] and the chained setters.
///
/// ```
/// use herald::outbox::NewEvent;
/// let event = NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))
///     .aggregate("user", 42)
///     .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// # herald::outbox::validate(&event, &Default::default()).unwrap();
/// ```
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
    ///
    /// ```
    /// use herald::outbox::{validate, NewEvent};
    /// let ok = NewEvent::new("events.order.paid", serde_json::json!({"order_id": "A-17"}));
    /// assert!(validate(&ok, &Default::default()).is_ok());
    /// let bad = NewEvent::new("events.order.paid", serde_json::json!([1, 2]));
    /// assert!(validate(&bad, &Default::default()).is_err());
    /// ```
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
    ///
    /// ```
    /// use herald::outbox::NewEvent;
    /// // Every event about order 17 reaches the worker in enqueue order.
    /// let event = NewEvent::new("events.order.shipped", serde_json::json!({"order_id": 17}))
    ///     .aggregate("order", 17);
    /// # herald::outbox::validate(&event, &Default::default()).unwrap();
    /// ```
    pub fn aggregate(mut self, kind: impl Into<String>, id: impl std::fmt::Display) -> Self {
        self.aggregate = Some((kind.into(), id.to_string()));
        self
    }

    /// An extra NATS header carried with the event (e.g. a W3C `traceparent`).
    ///
    /// ```
    /// use herald::outbox::NewEvent;
    /// let event = NewEvent::new("events.user.invited", serde_json::json!({"user_id": 7}))
    ///     .header("tenant", "acme");
    /// # herald::outbox::validate(&event, &Default::default()).unwrap();
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Propagate a W3C trace context to the worker.
    ///
    /// ```
    /// use herald::outbox::NewEvent;
    /// // The request's trace continues in the worker's spans.
    /// let event = NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))
    ///     .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// # herald::outbox::validate(&event, &Default::default()).unwrap();
    /// ```
    pub fn traceparent(self, value: impl Into<String>) -> Self {
        self.header("traceparent", value)
    }

    /// Use a caller-chosen id (idempotent producers); otherwise a new UUIDv7.
    ///
    /// ```
    /// use herald::outbox::{EventId, NewEvent};
    /// // A retried request enqueues the same id; the outbox refuses the duplicate.
    /// let id = EventId::default();
    /// let event = NewEvent::new("events.order.paid", serde_json::json!({"order_id": 17}))
    ///     .event_id(id);
    /// # herald::outbox::validate(&event, &Default::default()).unwrap();
    /// ```
    pub fn event_id(mut self, id: impl Into<EventId>) -> Self {
        self.event_id = Some(id.into());
        self
    }
}

/// Limits applied by [`enqueue_with`].
///
/// ```
/// use herald::outbox::{validate, EnqueueOptions, NewEvent};
/// let opts = EnqueueOptions { max_payload_bytes: 16 * 1024 };
/// let big = NewEvent::new("events.report.ready", serde_json::json!({"body": "x".repeat(20_000)}));
/// assert!(validate(&big, &opts).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct EnqueueOptions {
    /// Refuse payloads larger than this; values above [`DEFAULT_MAX_PAYLOAD`]
    /// count as that (the database would refuse the row).
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
///
/// ```
/// use herald::outbox::{validate, EnqueueError, NewEvent};
/// let event = NewEvent::new("orders.paid", serde_json::json!({}));
/// let err = validate(&event, &Default::default()).unwrap_err();
/// assert!(matches!(err, EnqueueError::InvalidSubject { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Deeper than the worker's JSON parser reads (it would dead-letter it).
    #[error("payload nests deeper than {max} levels")]
    PayloadTooDeep { max: usize },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: &'static str },
    #[error("invalid aggregate type {kind:?}: use letters, digits, '_', '-' or '.'")]
    InvalidAggregate { kind: String },
    #[error("invalid aggregate id {id:?}: must not contain CR or LF")]
    InvalidAggregateId { id: String },
    #[error("event id {0} is already in the outbox")]
    DuplicateEventId(EventId),
    #[error("database error while enqueueing: {0}")]
    Database(#[source] DbErr),
}

impl EnqueueError {
    /// True when the event itself is wrong (as opposed to the database failing).
    ///
    /// ```
    /// use herald::outbox::{validate, NewEvent};
    /// // A bad event is a client error (400); a database failure is worth retrying.
    /// let err = validate(&NewEvent::new("events.x", serde_json::json!(null)), &Default::default())
    ///     .unwrap_err();
    /// assert!(err.is_invalid_input());
    /// ```
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, EnqueueError::Database(_))
    }
}

/// The validated, serialised form of an event: the values of the contract's
/// insertable columns (the database derives `ordering_key` itself).
#[doc(hidden)]
#[derive(Debug)]
pub struct Checked {
    event_id: EventId,
    subject: String,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    payload: String,
    headers: String,
}

/// Insert `event` into the outbox inside `txn`, with default limits.
///
/// `txn` is a SeaORM `&DatabaseTransaction` or a sqlx `&mut Transaction` (see
/// [`OutboxTransaction`]).
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{enqueue, NewEvent};
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// // ... the application's own change, in `txn` ...
/// let event = NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))
///     .aggregate("user", 42);
/// let id = enqueue(&txn, event).await?;
/// txn.commit().await?;
/// println!("enqueued {id}");
/// # Ok(()) }
/// ```
pub async fn enqueue<T: OutboxTransaction>(
    txn: T,
    event: NewEvent,
) -> Result<EventId, EnqueueError> {
    enqueue_with(txn, event, &EnqueueOptions::default()).await
}

/// Insert `event` into the outbox inside `txn`. Nothing is visible to the relay
/// until the caller commits; a rollback removes it with the caller's changes.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{enqueue_with, EnqueueOptions, NewEvent};
/// use sea_orm::TransactionTrait;
/// let opts = EnqueueOptions { max_payload_bytes: 64 * 1024 };
/// let txn = db.begin().await?;
/// let event = NewEvent::new("events.report.ready", serde_json::json!({"report_id": 9}));
/// enqueue_with(&txn, event, &opts).await?;
/// txn.commit().await?;
/// # Ok(()) }
/// ```
pub async fn enqueue_with<T: OutboxTransaction>(
    txn: T,
    event: NewEvent,
    opts: &EnqueueOptions,
) -> Result<EventId, EnqueueError> {
    let row = check(&event, opts)?;
    let id = row.event_id;
    txn.insert_event(row).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => EnqueueError::DuplicateEventId(id),
        _ => EnqueueError::Database(e),
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests;
