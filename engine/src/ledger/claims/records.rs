//! Recording what happened to a claimed delivery: sent, retrying, scheduled,
//! settled, uncertain, dead, skipped; giving a claim back.

use crate::EventId;
use chrono::Utc;
use herald_entities::delivery::{self, DeliveryState};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use super::{Key, SKIPPED_RECIPIENT, by_key, insert_if_absent, new_row};

async fn set_state<C: ConnectionTrait>(
    db: &C,
    key: &Key<'_>,
    state: DeliveryState,
    message_id: Option<&str>,
    smtp: Option<&str>,
    error: Option<&str>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut update = delivery::Entity::update_many()
        .col_expr(delivery::Column::State, state.as_str().into())
        .col_expr(delivery::Column::UpdatedAt, now.into())
        .filter(by_key(key));
    if let Some(m) = message_id {
        update = update.col_expr(delivery::Column::MessageId, m.into());
    }
    if let Some(s) = smtp {
        update = update.col_expr(delivery::Column::SmtpResponse, s.into());
    }
    if let Some(e) = error {
        update = update.col_expr(delivery::Column::LastError, e.into());
    }
    if state == DeliveryState::Sent {
        update = update.col_expr(delivery::Column::SentAt, now.into());
    }
    update.exec(db).await?;
    Ok(())
}

pub async fn mark_sent<C: ConnectionTrait>(
    db: &C,
    key: &Key<'_>,
    message_id: &str,
    smtp: &str,
) -> Result<(), DbErr> {
    set_state(
        db,
        key,
        DeliveryState::Sent,
        Some(message_id),
        Some(smtp),
        None,
    )
    .await
}

pub async fn mark_retrying(
    db: &DatabaseConnection,
    key: &Key<'_>,
    error: &str,
    smtp: Option<&str>,
) -> Result<(), DbErr> {
    set_state(db, key, DeliveryState::Retrying, None, smtp, Some(error)).await
}

/// A delivery that waits in the schedule (a delay, a send window, a
/// digest): recorded `scheduled` so that status and the ledger show it, and
/// claimed like any other when it is due. Inside the caller's transaction
/// when it has one; an existing row is left as it is.
pub async fn record_scheduled<C: ConnectionTrait>(
    db: &C,
    key: &Key<'_>,
    index: usize,
    subject: &str,
) -> Result<(), DbErr> {
    insert_if_absent(
        db,
        new_row(key, index, subject, DeliveryState::Scheduled, 0, None),
    )
    .await
    .map(|_| ())
}

/// Final without a send of its own (`state`): the address is suppressed or
/// unsubscribed, or the event went out in a digest.
pub async fn mark_settled(
    db: &DatabaseConnection,
    key: &Key<'_>,
    state: DeliveryState,
    reason: &str,
    smtp: Option<&str>,
) -> Result<(), DbErr> {
    set_state(db, key, state, None, smtp, Some(reason)).await
}

/// The connection failed after the final "." of DATA: the server may have
/// the message. Resent (same Message-ID) or held, as the workflow says.
pub async fn mark_uncertain(
    db: &DatabaseConnection,
    key: &Key<'_>,
    error: &str,
) -> Result<(), DbErr> {
    set_state(db, key, DeliveryState::Uncertain, None, None, Some(error)).await
}

/// Give a claim back without counting its attempt: the transport could not
/// be reached, so nothing was tried. A compare-and-set on (sending,
/// `attempt`): a claim that went stale and moved on is left alone.
pub async fn release(db: &DatabaseConnection, key: &Key<'_>, attempt: u32) -> Result<(), DbErr> {
    let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
    delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            DeliveryState::Retrying.as_str().into(),
        )
        .col_expr(delivery::Column::Attempts, (attempt - 1).max(0).into())
        .col_expr(delivery::Column::UpdatedAt, Utc::now().into())
        .filter(by_key(key))
        .filter(delivery::Column::State.eq(DeliveryState::Sending))
        .filter(delivery::Column::Attempts.eq(attempt))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn mark_dead(
    db: &DatabaseConnection,
    key: &Key<'_>,
    error: &str,
    smtp: Option<&str>,
) -> Result<(), DbErr> {
    set_state(db, key, DeliveryState::Dead, None, smtp, Some(error)).await
}

/// Record a skipped event (guard false), once.
pub async fn record_skipped(
    db: &DatabaseConnection,
    event_id: EventId,
    workflow: &str,
    why: &str,
) -> Result<(), DbErr> {
    let key = Key {
        event_id,
        workflow,
        recipient: SKIPPED_RECIPIENT,
    };
    let row = new_row(
        &key,
        0,
        "",
        DeliveryState::Skipped,
        0,
        Some(format!("guard did not hold: {why}")),
    );
    insert_if_absent(db, row).await.map(|_| ())
}
