//! The worker's side of the ledger: claiming a delivery before sending it
//! (a compare-and-set with a lease), recording what happened, and reopening
//! dead ones for a re-drive. Crate-private: an application reads the ledger
//! through [`super::deliveries_of`].
use std::time::Duration;

use super::group::{NewClaims, Writer};
use crate::EventId;
use chrono::{DateTime, Utc};
use herald_entities::delivery::{self, DeliveryState};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, sea_query::OnConflict,
};

/// Ledger key of a skipped event (no recipients were rendered).
pub const SKIPPED_RECIPIENT: &str = "-";

/// The answer to "may I send this one?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Send it; this is attempt number `attempt` (1-based).
    Send { attempt: u32 },
    /// Already sent, skipped or dead-lettered: do nothing.
    Done { state: DeliveryState },
    /// Another worker claimed it less than a lease ago and may be sending it
    /// right now: ask again after `retry_after` (at most 2 s; by then it is
    /// usually recorded, or the claim may have gone stale).
    InFlight { retry_after: Duration },
}

pub struct Key<'a> {
    pub event_id: EventId,
    pub workflow: &'a str,
    pub recipient: &'a str,
}

/// A fresh ledger row for `key`.
pub(super) fn new_row(
    key: &Key<'_>,
    index: usize,
    subject: &str,
    state: DeliveryState,
    attempts: i32,
    last_error: Option<String>,
) -> delivery::ActiveModel {
    let now = Utc::now();
    delivery::ActiveModel {
        event_id: Set(key.event_id.as_uuid()),
        workflow: Set(key.workflow.to_string()),
        recipient: Set(key.recipient.to_string()),
        item_index: Set(i32::try_from(index).unwrap_or(i32::MAX)),
        subject: Set(subject.to_string()),
        state: Set(state),
        attempts: Set(attempts),
        message_id: Set(None),
        smtp_response: Set(None),
        last_error: Set(last_error),
        resend_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
        ..Default::default()
    }
}

/// A delivery's key is taken: leave the existing row as it is.
pub(super) fn on_key_conflict() -> OnConflict {
    OnConflict::columns([
        delivery::Column::EventId,
        delivery::Column::Workflow,
        delivery::Column::Recipient,
    ])
    .do_nothing()
    .to_owned()
}

/// Insert `row` unless its key exists; true when it was inserted.
pub(super) async fn insert_if_absent<C: ConnectionTrait>(
    db: &C,
    row: delivery::ActiveModel,
) -> Result<bool, DbErr> {
    let inserted = delivery::Entity::insert(row)
        .on_conflict(on_key_conflict())
        .exec_without_returning(db)
        .await?;
    Ok(inserted > 0)
}

/// The condition selecting `key`'s row.
fn by_key(key: &Key<'_>) -> Condition {
    Condition::all()
        .add(delivery::Column::EventId.eq(key.event_id.as_uuid()))
        .add(delivery::Column::Workflow.eq(key.workflow))
        .add(delivery::Column::Recipient.eq(key.recipient))
}

/// Claim the delivery for an attempt: create it as `sending`, or move a
/// `retrying` row, or a `sending` row whose claim is older than `lease`, to the
/// next attempt. A `sending` row younger than `lease` belongs to a worker that
/// may be sending it now (a redelivery racing a slow worker, a replay racing
/// the consumer): [`Claim::InFlight`].
///
/// The move is a compare-and-set on (state, attempts), so of two workers
/// claiming the same row at once exactly one gets [`Claim::Send`].
///
/// A stale `sending` row was left by a crash between the SMTP reply and the
/// ledger write: it is sent again, with the same Message-ID. That is the one
/// window where a duplicate is possible, besides `uncertain` rows, which are
/// sent again (same Message-ID) only when `resend_uncertain` says so.
pub async fn claim(
    db: &DatabaseConnection,
    key: &Key<'_>,
    index: usize,
    subject: &str,
    lease: Duration,
    resend_uncertain: bool,
) -> Result<Claim, DbErr> {
    let row = new_row(key, index, subject, DeliveryState::Sending, 1, None);
    if insert_if_absent(db, row).await? {
        return Ok(Claim::Send { attempt: 1 });
    }
    claim_existing(db, key, lease, resend_uncertain).await
}

/// [`claim`] with the insert of a new delivery grouped with those of other
/// deliveries in flight (the worker's hot path; see `group`).
pub async fn claim_grouped(
    db: &DatabaseConnection,
    claims: &Writer<NewClaims>,
    key: &Key<'_>,
    index: usize,
    subject: &str,
    lease: Duration,
    resend_uncertain: bool,
) -> Result<Claim, DbErr> {
    let row = new_row(key, index, subject, DeliveryState::Sending, 1, None);
    if claims.write(row).await? {
        return Ok(Claim::Send { attempt: 1 });
    }
    claim_existing(db, key, lease, resend_uncertain).await
}

/// The claim of a delivery the ledger has already: a redelivery, a retry,
/// a stale or foreign claim.
async fn claim_existing(
    db: &DatabaseConnection,
    key: &Key<'_>,
    lease: Duration,
    resend_uncertain: bool,
) -> Result<Claim, DbErr> {
    // Each lost compare-and-set means another worker moved the row; a few
    // rounds settle it (it is then theirs, or done).
    for _ in 0..3 {
        let existing = delivery::Entity::find()
            .filter(by_key(key))
            .one(db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("delivery vanished".into()))?;
        let now = Utc::now();
        match existing.state {
            DeliveryState::Uncertain if !resend_uncertain => {
                return Ok(Claim::Done {
                    state: existing.state,
                });
            }
            DeliveryState::Sending
            | DeliveryState::Retrying
            | DeliveryState::Uncertain
            | DeliveryState::Scheduled => {
                if existing.state == DeliveryState::Sending
                    && let Some(left) = lease_left(existing.updated_at, now, lease)
                {
                    return Ok(Claim::InFlight { retry_after: left });
                }
                if advance(db, key, existing.state, existing.attempts, None).await? {
                    return Ok(Claim::Send {
                        attempt: next_attempt(existing.attempts),
                    });
                }
            }
            other => return Ok(Claim::Done { state: other }),
        }
    }
    Ok(Claim::InFlight {
        retry_after: MIN_RETRY,
    })
}

/// Compare-and-set `key`'s row to its next attempt (`sending`, attempts + 1),
/// only if it is still in state `from` at `attempts`; true when this caller
/// moved it. A resend records its reason.
async fn advance(
    db: &DatabaseConnection,
    key: &Key<'_>,
    from: DeliveryState,
    attempts: i32,
    resend_reason: Option<&str>,
) -> Result<bool, DbErr> {
    let mut update = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            DeliveryState::Sending.as_str().into(),
        )
        .col_expr(delivery::Column::Attempts, (attempts + 1).into())
        .col_expr(delivery::Column::UpdatedAt, Utc::now().into())
        .filter(by_key(key))
        .filter(delivery::Column::State.eq(from))
        .filter(delivery::Column::Attempts.eq(attempts));
    if let Some(r) = resend_reason {
        update = update.col_expr(delivery::Column::ResendReason, r.into());
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

fn next_attempt(attempts: i32) -> u32 {
    u32::try_from(attempts + 1).unwrap_or(1)
}

/// The shortest wait [`Claim::InFlight`] asks for.
const MIN_RETRY: Duration = Duration::from_millis(100);
/// The longest: the other worker usually records its send within
/// milliseconds, so look again soon rather than at the end of the lease.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// How much of a claim made at `claimed` is left at `now`, if any, as the
/// wait before looking again.
fn lease_left(claimed: DateTime<Utc>, now: DateTime<Utc>, lease: Duration) -> Option<Duration> {
    let age = (now - claimed).to_std().unwrap_or_default();
    lease
        .checked_sub(age)
        .filter(|d| !d.is_zero())
        .map(|d| d.clamp(MIN_RETRY, MAX_RETRY))
}

mod records;
mod redrive;

pub use records::{
    mark_dead, mark_retrying, mark_sent, mark_settled, mark_uncertain, record_scheduled,
    record_skipped, release,
};
pub use redrive::{WHOLE_EVENT_RECIPIENT, claim_resend, reopen_dead, state_of};
