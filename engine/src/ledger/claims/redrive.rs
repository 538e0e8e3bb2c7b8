//! Re-drive and resend: reopening dead deliveries, a row's state, claiming a
//! sent delivery again.

use crate::EventId;
use chrono::Utc;
use herald_entities::delivery::{self, DeliveryState};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use super::{Claim, Key, MIN_RETRY, advance, by_key, next_attempt};

/// Ledger key of an event that failed as a whole (render error).
pub const WHOLE_EVENT_RECIPIENT: &str = "*";

/// Prepare a re-drive of one event through one workflow: dead deliveries
/// (and uncertain ones an operator was holding) go back to `retrying` with a
/// fresh attempt budget, and the whole-event failure marker is removed.
/// Deliveries already `sent` are untouched, so the re-drive cannot send
/// them twice.
pub async fn reopen_dead(
    db: &DatabaseConnection,
    event_id: EventId,
    workflow: &str,
) -> Result<u64, DbErr> {
    delivery::Entity::delete_many()
        .filter(delivery::Column::EventId.eq(event_id.as_uuid()))
        .filter(delivery::Column::Workflow.eq(workflow))
        .filter(delivery::Column::Recipient.eq(WHOLE_EVENT_RECIPIENT))
        .exec(db)
        .await?;
    let res = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            DeliveryState::Retrying.as_str().into(),
        )
        .col_expr(delivery::Column::Attempts, 0.into())
        .col_expr(delivery::Column::UpdatedAt, Utc::now().into())
        .filter(delivery::Column::EventId.eq(event_id.as_uuid()))
        .filter(delivery::Column::Workflow.eq(workflow))
        .filter(delivery::Column::State.is_in([DeliveryState::Dead, DeliveryState::Uncertain]))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// The state of one delivery, if the ledger has it.
pub async fn state_of(
    db: &DatabaseConnection,
    key: &Key<'_>,
) -> Result<Option<DeliveryState>, DbErr> {
    Ok(delivery::Entity::find()
        .filter(by_key(key))
        .one(db)
        .await?
        .map(|d| d.state))
}

/// Take a `sent` delivery for a deliberate resend (`herald replay --resend`):
/// back to `sending` with the next attempt number and the reason recorded,
/// as a compare-and-set like [`claim`](super::claim), so two resends of one delivery at
/// once send it once. The attempt number makes the resent Message-ID distinct.
pub async fn claim_resend(
    db: &DatabaseConnection,
    key: &Key<'_>,
    reason: &str,
) -> Result<Claim, DbErr> {
    let existing = delivery::Entity::find()
        .filter(by_key(key))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("delivery vanished".into()))?;
    match existing.state {
        DeliveryState::Sent => {
            if advance(
                db,
                key,
                DeliveryState::Sent,
                existing.attempts,
                Some(reason),
            )
            .await?
            {
                Ok(Claim::Send {
                    attempt: next_attempt(existing.attempts),
                })
            } else {
                // Another resend took it first: it is theirs to send.
                Ok(Claim::InFlight {
                    retry_after: MIN_RETRY,
                })
            }
        }
        DeliveryState::Sending => Ok(Claim::InFlight {
            retry_after: MIN_RETRY,
        }),
        other => Ok(Claim::Done { state: other }),
    }
}
