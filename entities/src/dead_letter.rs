//! `herald_dead_letters`: messages a workflow gave up on, kept whole so that an
//! operator can read why and re-drive them.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "herald_dead_letters")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: Uuid,
    pub workflow: String,
    /// The recipient that failed, or NULL when the whole event failed (e.g. render error).
    pub recipient: Option<String>,
    pub subject: String,
    pub stream_seq: Option<i64>,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    /// `permanent` (5xx, render, address, header injection) or `exhausted` (retry budget spent).
    pub kind: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub smtp_reply: Option<String>,
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    /// Set by `herald dlq retry`; a retried dead letter stays for the record.
    pub retried_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
