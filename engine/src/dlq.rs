//! The dead-letter store: deliveries a workflow gave up on, kept whole
//! (payload and headers) so an operator can read why and re-drive them.
use crate::EventId;
use chrono::Utc;
use herald_entities::dead_letter::{self, DeadLetterKind};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr};

/// What the worker knows when it dead-letters.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub event_id: EventId,
    pub workflow: &'a str,
    pub recipient: Option<&'a str>,
    pub subject: &'a str,
    pub stream_seq: Option<u64>,
    pub payload: &'a str,
    pub headers: String,
    pub kind: DeadLetterKind,
    pub reason: String,
    pub smtp_reply: Option<String>,
    pub attempts: u32,
}

pub async fn insert(db: &DatabaseConnection, d: NewDeadLetter<'_>) -> Result<i64, DbErr> {
    let row = dead_letter::ActiveModel {
        event_id: Set(d.event_id.as_uuid()),
        workflow: Set(d.workflow.to_string()),
        recipient: Set(d.recipient.map(str::to_string)),
        subject: Set(d.subject.to_string()),
        stream_seq: Set(d.stream_seq.and_then(|s| i64::try_from(s).ok())),
        payload: Set(d.payload.to_string()),
        headers: Set(d.headers),
        kind: Set(d.kind),
        reason: Set(d.reason),
        smtp_reply: Set(d.smtp_reply),
        attempts: Set(i32::try_from(d.attempts).unwrap_or(i32::MAX)),
        created_at: Set(Utc::now()),
        retried_at: Set(None),
        ..Default::default()
    };
    Ok(row.insert(db).await?.id)
}

/// Dead letters, newest last; `workflow` filters; `include_retried` shows re-driven ones too.
pub async fn list(
    db: &DatabaseConnection,
    workflow: Option<&str>,
    include_retried: bool,
) -> Result<Vec<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let mut q = dead_letter::Entity::find().order_by_asc(dead_letter::Column::Id);
    if let Some(w) = workflow {
        q = q.filter(dead_letter::Column::Workflow.eq(w));
    }
    if !include_retried {
        q = q.filter(dead_letter::Column::RetriedAt.is_null());
    }
    q.all(db).await
}

pub async fn get(db: &DatabaseConnection, id: i64) -> Result<Option<dead_letter::Model>, DbErr> {
    use sea_orm::EntityTrait;
    dead_letter::Entity::find_by_id(id).one(db).await
}

/// Record that a dead letter was re-driven (it stays, for the record).
pub async fn mark_retried(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::RetriedAt, Utc::now().into())
        .filter(dead_letter::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
