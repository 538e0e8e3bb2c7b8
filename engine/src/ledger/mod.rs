//! The delivery ledger: one row per (event, workflow, recipient). The worker
//! claims a row before sending and records the result before acking, so a
//! redelivered or replayed message never sends an email the ledger marks
//! sent (the claims are crate-private, in `claims`). What an application
//! asks of the ledger is [`deliveries_of`]: where each email of an event
//! stands, instead of keeping its own per-recipient status.
pub(crate) mod claims;

use herald_entities::delivery;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

pub(crate) use claims::*;
pub use herald_entities::delivery::DeliveryState;

use crate::EventId;

/// One delivery as the ledger records it: recipient, [`DeliveryState`],
/// attempts, Message-ID, last SMTP reply or error, when it was sent.
pub type Delivery = delivery::Model;

/// Every delivery of one event, all workflows, in fan-out order: what the
/// application asks instead of keeping its own "latest email status" per
/// recipient (docs/use-cases.md, case 3). Takes any connection or
/// transaction.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, id: herald::EventId) -> Result<(), sea_orm::DbErr> {
/// use herald::ledger::{DeliveryState, deliveries_of};
/// for d in deliveries_of(db, id).await? {
///     if d.state == DeliveryState::Sent {
///         println!("{} got it ({:?})", d.recipient, d.message_id);
///     }
/// }
/// # Ok(()) }
/// ```
pub async fn deliveries_of<C: ConnectionTrait>(
    db: &C,
    event_id: EventId,
) -> Result<Vec<Delivery>, DbErr> {
    delivery::Entity::find()
        .filter(delivery::Column::EventId.eq(event_id.as_uuid()))
        .order_by_asc(delivery::Column::Workflow)
        .order_by_asc(delivery::Column::ItemIndex)
        .order_by_asc(delivery::Column::Id)
        .all(db)
        .await
}
