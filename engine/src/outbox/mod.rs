//! The transactional outbox: how an application hands Herald an event
//! ([`enqueue`], in the transaction of its own change), and what an operator
//! does with the outbox (its [`backlog`], [`prune`] published rows,
//! [`unpark`] rows publishing gave up on, [`republish`] a range after the
//! stream lost it).
//!
//! The outbox's SQL lives in one place (the crate-private `store` module):
//! the relay's claim and marks, and the operations here, share it.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::outbox::{NewEvent, enqueue};
//! use sea_orm::TransactionTrait;
//! let txn = db.begin().await?;
//! // ... the application's own change, in `txn` ...
//! enqueue(&txn, NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))).await?;
//! txn.commit().await?; // the event exists if and only if the change does
//! # Ok(()) }
//! ```
mod enqueue;
mod republish;
pub(crate) mod store;

use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

pub use enqueue::{
    DEFAULT_MAX_PAYLOAD, EnqueueError, EnqueueOptions, NOTIFY_CHANNEL, NewEvent, OutboxTransaction,
    enqueue, enqueue_with, sqlx, validate,
};
pub use republish::{Republish, RepublishError, RepublishProgress, RepublishSummary, republish};
pub use store::{Backlog, ParkedAggregate};

pub use crate::event_id::EventId;

/// Rows waiting to be published (and parked ones), and how old the oldest is.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let b = herald::outbox::backlog(db).await?;
/// println!("{} pending, oldest {:.1}s", b.pending, b.oldest_pending_age_seconds);
/// # Ok(()) }
/// ```
pub async fn backlog(db: &DatabaseConnection) -> Result<Backlog, DbErr> {
    store::backlog(db, Utc::now()).await
}

/// Aggregates held back by a parked row: nothing later of theirs is
/// published until the row is re-driven ([`unpark`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// for p in herald::outbox::parked_aggregates(&db).await? {
///     println!("{p:?}");
/// }
/// # Ok(()) }
/// ```
pub async fn parked_aggregates(db: &DatabaseConnection) -> Result<Vec<ParkedAggregate>, DbErr> {
    store::parked_aggregates(db).await
}

/// Delete published rows older than `older_than`, in batches of 1,000 so
/// that no statement holds locks for long; returns how many.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let n = herald::outbox::prune(db, std::time::Duration::from_secs(7 * 86_400)).await?;
/// # Ok(()) }
/// ```
pub async fn prune(db: &DatabaseConnection, older_than: Duration) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let mut total = 0;
    loop {
        let n = store::prune(db, cutoff, 1000).await?;
        total += n;
        if n < 1000 {
            return Ok(total);
        }
    }
}

/// Give parked rows (all, or the one with `seq`) back to the relay with a
/// fresh attempt budget; returns how many.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let n = herald::outbox::unpark(db, None).await?;
/// # Ok(()) }
/// ```
pub async fn unpark(db: &DatabaseConnection, seq: Option<i64>) -> Result<u64, DbErr> {
    store::unpark(db, seq).await
}
