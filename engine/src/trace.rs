//! "Where is my email?": one event's life from the outbox row through each
//! workflow's deliveries and dead letters.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection, id: herald::EventId) -> Result<(), Box<dyn std::error::Error>> {
//! let t = herald::trace::trace(&db, id).await?;
//! println!("{} deliveries, {} dead letters", t.deliveries.len(), t.dead_letters.len());
//! # Ok(()) }
//! ```
use crate::EventId;
use herald_entities::{dead_letter, outbox};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;

/// One event's life, for "where is my email?": its outbox row, every
/// delivery of every workflow, its dead letters (serialised as `herald
/// trace --json` prints it).
///
/// ```no_run
/// # async fn example(id: herald::EventId) -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let t = herald::trace::trace(&db, id).await?;
/// println!("{}", serde_json::to_string_pretty(&t)?);
/// # Ok(()) }
/// ```
#[derive(Debug, Serialize)]
pub struct Trace {
    pub event_id: EventId,
    /// None when the row was pruned (or never existed).
    pub outbox: Option<serde_json::Value>,
    pub deliveries: Vec<serde_json::Value>,
    pub dead_letters: Vec<serde_json::Value>,
}

/// Gather what the outbox, the ledger and the dead letters hold about one
/// event, so support can answer "was it sent?" from the id alone.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let id: herald::EventId = "01968f5e-7c1a-7d3e-9b2a-3f4c5d6e7f80".parse()?;
/// let t = herald::trace::trace(&db, id).await?;
/// if t.outbox.is_none() { println!("pruned, or never enqueued"); }
/// println!("{} deliveries, {} dead letters", t.deliveries.len(), t.dead_letters.len());
/// # Ok(()) }
/// ```
pub async fn trace(db: &DatabaseConnection, event_id: EventId) -> Result<Trace, DbErr> {
    let row = outbox::Entity::find()
        .filter(outbox::Column::EventId.eq(event_id.as_uuid()))
        .one(db)
        .await?;
    let deliveries = crate::ledger::deliveries_of(db, event_id).await?;
    let dead = dead_letter::Entity::find()
        .filter(dead_letter::Column::EventId.eq(event_id.as_uuid()))
        .order_by_asc(dead_letter::Column::Id)
        .all(db)
        .await?;
    Ok(Trace {
        event_id,
        outbox: row.map(|r| {
            serde_json::json!({
                "seq": r.seq, "subject": r.subject, "aggregate": r.ordering_key,
                "created_at": r.created_at, "published_at": r.published_at, "stream_seq": r.stream_seq,
                "attempts": r.attempts, "last_error": r.last_error, "parked_at": r.parked_at,
            })
        }),
        deliveries: deliveries
            .into_iter()
            .map(|d| {
                serde_json::json!({
                    "workflow": d.workflow, "recipient": d.recipient, "state": d.state,
                    "attempts": d.attempts, "message_id": d.message_id, "smtp_response": d.smtp_response,
                    "last_error": d.last_error, "resend_reason": d.resend_reason,
                    "updated_at": d.updated_at, "sent_at": d.sent_at,
                })
            })
            .collect(),
        dead_letters: dead
            .into_iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id, "workflow": d.workflow, "recipient": d.recipient, "kind": d.kind,
                    "reason": d.reason, "smtp_reply": d.smtp_reply, "created_at": d.created_at,
                    "retried_at": d.retried_at,
                })
            })
            .collect(),
    })
}
