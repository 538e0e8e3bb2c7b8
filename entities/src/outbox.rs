//! `herald_outbox`: one row per event, written in the application's transaction
//! and published to JetStream by the relay.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "herald_outbox")]
pub struct Model {
    /// Insertion order; the relay publishes an aggregate's rows in this order.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// UUIDv7; also `Nats-Msg-Id`, the ledger key and the SMTP `Message-ID` stem.
    #[sea_orm(unique)]
    pub event_id: Uuid,
    pub subject: String,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// `aggregate_type/aggregate_id`, or NULL for events with no ordering constraint.
    pub ordering_key: Option<String>,
    /// The JSON object exactly as enqueued.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// JSON object of extra NATS headers (e.g. `traceparent`).
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    pub created_at: DateTimeUtc,
    pub published_at: Option<DateTimeUtc>,
    /// JetStream sequence of the PubAck that marked the row published.
    pub stream_seq: Option<i64>,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// A failed publish is not retried before this time.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Relay instance that holds the row; valid until `lease_until`.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    /// Set when the relay gave up on the row (poison); `herald outbox retry` clears it.
    pub parked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
