//! The dead-letter store: deliveries a workflow gave up on, kept whole
//! (payload and headers) so an operator can read why and re-drive them.
use chrono::Utc;
use herald_entities::dead_letter;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr};
use uuid::Uuid;

/// What the worker knows when it dead-letters.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub event_id: Uuid,
    pub workflow: &'a str,
    pub recipient: Option<&'a str>,
    pub subject: &'a str,
    pub stream_seq: Option<u64>,
    pub payload: &'a str,
    pub headers: String,
    /// `permanent` or `exhausted`.
    pub kind: &'static str,
    pub reason: String,
    pub smtp_reply: Option<String>,
    pub attempts: u32,
}

pub async fn insert(db: &DatabaseConnection, d: NewDeadLetter<'_>) -> Result<i64, DbErr> {
    let row = dead_letter::ActiveModel {
        event_id: Set(d.event_id),
        workflow: Set(d.workflow.to_string()),
        recipient: Set(d.recipient.map(str::to_string)),
        subject: Set(d.subject.to_string()),
        stream_seq: Set(d.stream_seq.and_then(|s| i64::try_from(s).ok())),
        payload: Set(d.payload.to_string()),
        headers: Set(d.headers),
        kind: Set(d.kind.to_string()),
        reason: Set(d.reason),
        smtp_reply: Set(d.smtp_reply),
        attempts: Set(i32::try_from(d.attempts).unwrap_or(i32::MAX)),
        created_at: Set(Utc::now()),
        retried_at: Set(None),
        ..Default::default()
    };
    Ok(row.insert(db).await?.id)
}
