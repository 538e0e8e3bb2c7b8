//! `herald_dead_letters`: messages a workflow gave up on, kept whole so that an
//! operator can read why and re-drive them.
use sea_orm::entity::prelude::*;

/// Why a dead letter exists. Stored as its lower-case name.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeadLetterKind {
    /// Cannot succeed as it is: an SMTP 5xx, a render error, an invalid
    /// address, a refused header, a message that is not a Herald event.
    #[sea_orm(string_value = "permanent")]
    Permanent,
    /// Transient failures used up the workflow's `max_attempts`.
    #[sea_orm(string_value = "exhausted")]
    Exhausted,
    /// The connection failed after the final "." and the workflow says
    /// `on_uncertain: hold`: the server may have the message; an operator decides.
    #[sea_orm(string_value = "uncertain")]
    Uncertain,
    /// Held back behind an earlier dead letter of the same aggregate (and
    /// workflow): events of an aggregate are emailed in order. Re-driven
    /// when the one in front is re-driven or discarded.
    #[sea_orm(string_value = "held")]
    Held,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Permanent => "permanent",
            DeadLetterKind::Exhausted => "exhausted",
            DeadLetterKind::Uncertain => "uncertain",
            DeadLetterKind::Held => "held",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DeadLetterKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

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
    /// The event's aggregate (`type/id`), if it has one: a dead letter holds
    /// back the later events of its aggregate in its workflow.
    pub aggregate: Option<String>,
    pub stream_seq: Option<i64>,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    pub kind: DeadLetterKind,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub smtp_reply: Option<String>,
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    /// Set by `herald dlq retry` (or `discard`): the dead letter is closed;
    /// it stays for the record.
    pub retried_at: Option<DateTimeUtc>,
    /// Set by `herald dlq discard`: closed without being delivered.
    pub discarded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
