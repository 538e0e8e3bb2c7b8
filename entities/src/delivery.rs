//! `herald_deliveries`: the ledger. One row per (event, workflow, recipient).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "herald_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique_key = "delivery")]
    pub event_id: Uuid,
    #[sea_orm(unique_key = "delivery")]
    pub workflow: String,
    /// Normalised recipient list of this email, or `-` for a skipped event.
    #[sea_orm(unique_key = "delivery")]
    pub recipient: String,
    /// Position of this email within the event's fan-out (`for_each` index).
    pub item_index: i32,
    pub subject: String,
    /// `pending`, `sending`, `sent`, `retrying`, `skipped`, `dead`; see ARCHITECTURE.md.
    pub state: String,
    pub attempts: i32,
    pub message_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub smtp_response: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// Why a resend happened (`herald replay --resend`), if one did.
    #[sea_orm(column_type = "Text", nullable)]
    pub resend_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
