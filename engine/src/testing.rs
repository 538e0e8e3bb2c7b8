//! Assertions for an application's own tests, as River's `rivertest` does:
//! "this transaction enqueued an event with this subject and payload",
//! checked inside the transaction (before commit, or in a test that rolls
//! back), with no NATS and no Herald process running. Enabled with the
//! `testing` feature.
//!
//! ```no_run
//! # async fn signup(txn: &sea_orm::DatabaseTransaction, email: &str) -> Result<(), Box<dyn std::error::Error>> { Ok(()) }
//! # async fn t(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use sea_orm::TransactionTrait;
//! use serde_json::json;
//! let txn = db.begin().await?;
//! signup(&txn, "ada@example.com").await?;
//! herald::testing::assert_enqueued(&txn, "events.user.joined", json!({"email": "ada@example.com"})).await?;
//! # Ok(()) }
//! ```
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};
use serde_json::Value;

/// An event found in the outbox.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{NewEvent, enqueue};
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// enqueue(&txn, NewEvent::new("events.user.joined", serde_json::json!({"id": 42})).aggregate("user", 42)).await?;
/// let e = herald::testing::assert_enqueued(&txn, "events.user.joined", serde_json::json!({"id": 42})).await?;
/// assert_eq!(e.aggregate.as_deref(), Some("user/42"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub subject: String,
    pub payload: Value,
    /// `type/id`, when the event has an aggregate.
    pub aggregate: Option<String>,
    pub headers: Value,
}

/// Why an assertion failed: what was expected, and what the transaction
/// did enqueue.
///
/// ```no_run
/// # async fn example(txn: sea_orm::DatabaseTransaction) {
/// use herald::testing::{TestingError, assert_enqueued};
/// match assert_enqueued(&txn, "events.user.joined", serde_json::json!({"id": 42})).await {
///     Err(TestingError::NotEnqueued { found, .. }) => panic!("enqueued instead: {found:?}"),
///     Err(e) => panic!("{e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    #[error("no event {subject:?} with payload {payload} was enqueued; enqueued: {found:?}")]
    NotEnqueued {
        subject: String,
        payload: Value,
        found: Vec<(String, Value)>,
    },
    #[error("the outbox could not be read: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Every event enqueued so far and not yet published, oldest first, as
/// this transaction sees the outbox (its own uncommitted rows included).
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// // ... the code under test writes its change and enqueues ...
/// let subjects: Vec<String> = herald::testing::enqueued(&txn).await?.into_iter().map(|e| e.subject).collect();
/// assert_eq!(subjects, ["events.invoice.created", "events.invoice.sent"]);
/// txn.rollback().await?;
/// # Ok(()) }
/// ```
pub async fn enqueued(txn: &DatabaseTransaction) -> Result<Vec<Enqueued>, TestingError> {
    let rows = txn
        .query_all_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT subject, payload, ordering_key, headers FROM herald_outbox \
             WHERE published_at IS NULL ORDER BY seq",
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let payload: String = r.try_get("", "payload")?;
        let headers: String = r.try_get("", "headers")?;
        out.push(Enqueued {
            subject: r.try_get("", "subject")?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
            aggregate: r.try_get("", "ordering_key")?,
            headers: serde_json::from_str(&headers).unwrap_or(Value::String(headers)),
        });
    }
    Ok(out)
}

/// Assert that `txn` enqueued an event with exactly this subject and
/// payload (compared as JSON values, so key order and spacing do not matter).
///
/// ```no_run
/// # async fn create_invoice(txn: &sea_orm::DatabaseTransaction, amount: u32) -> Result<(), Box<dyn std::error::Error>> { Ok(()) }
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// create_invoice(&txn, 1200).await?;
/// herald::testing::assert_enqueued(&txn, "events.invoice.created", serde_json::json!({"amount": 1200})).await?;
/// # Ok(()) }
/// ```
pub async fn assert_enqueued(
    txn: &DatabaseTransaction,
    subject: &str,
    payload: Value,
) -> Result<Enqueued, TestingError> {
    let all = enqueued(txn).await?;
    match all
        .iter()
        .find(|e| e.subject == subject && e.payload == payload)
    {
        Some(e) => Ok(e.clone()),
        None => Err(TestingError::NotEnqueued {
            subject: subject.to_string(),
            payload,
            found: all.into_iter().map(|e| (e.subject, e.payload)).collect(),
        }),
    }
}

/// How many events `txn` sees enqueued on `subject`.
///
/// ```no_run
/// # async fn retry_payment(txn: &sea_orm::DatabaseTransaction) -> Result<(), Box<dyn std::error::Error>> { Ok(()) }
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// retry_payment(&txn).await?;
/// retry_payment(&txn).await?;
/// assert_eq!(herald::testing::count_enqueued(&txn, "events.payment.failed").await?, 1); // no duplicate email
/// # Ok(()) }
/// ```
pub async fn count_enqueued(
    txn: &DatabaseTransaction,
    subject: &str,
) -> Result<usize, TestingError> {
    Ok(enqueued(txn)
        .await?
        .iter()
        .filter(|e| e.subject == subject)
        .count())
}
