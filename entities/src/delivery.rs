//! `herald_deliveries`: the ledger. One row per (event, workflow, recipient).
use sea_orm::entity::prelude::*;

/// Where one delivery stands. Stored as its lower-case name (`sent`, …), so
/// rows written before the type existed read back unchanged. The state
/// machine is in ARCHITECTURE.md ("Delivery states").
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryState {
    /// Claimed by a worker that is sending it (a lease of `--ack-wait`).
    #[sea_orm(string_value = "sending")]
    Sending,
    /// Accepted by the SMTP server and recorded: never sent again by redelivery.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// A transient failure was recorded; the next attempt is due.
    #[sea_orm(string_value = "retrying")]
    Retrying,
    /// The workflow's guard did not hold: nothing to send.
    #[sea_orm(string_value = "skipped")]
    Skipped,
    /// Given up on: a dead letter holds the event for an operator.
    #[sea_orm(string_value = "dead")]
    Dead,
    /// The connection failed after the message's final "." was sent: the
    /// server may have accepted it. Resent with the same Message-ID, or held
    /// as a dead letter, as the workflow's `on_uncertain` says.
    #[sea_orm(string_value = "uncertain")]
    Uncertain,
    /// Not sent: the address is suppressed (it bounced, or an operator added it).
    #[sea_orm(string_value = "suppressed")]
    Suppressed,
    /// Not sent: the address unsubscribed from the workflow's category.
    #[sea_orm(string_value = "unsubscribed")]
    Unsubscribed,
    /// Waiting for its time: a delay, a send window, or a digest's window.
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
}

impl DeliveryState {
    /// Every state, in the order `herald status` lists them.
    pub const ALL: [DeliveryState; 9] = [
        DeliveryState::Sent,
        DeliveryState::Skipped,
        DeliveryState::Dead,
        DeliveryState::Retrying,
        DeliveryState::Sending,
        DeliveryState::Uncertain,
        DeliveryState::Suppressed,
        DeliveryState::Unsubscribed,
        DeliveryState::Scheduled,
    ];

    /// The stored name (`sent`, `dead`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Skipped => "skipped",
            DeliveryState::Dead => "dead",
            DeliveryState::Uncertain => "uncertain",
            DeliveryState::Suppressed => "suppressed",
            DeliveryState::Unsubscribed => "unsubscribed",
            DeliveryState::Scheduled => "scheduled",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to it by itself (an operator may re-drive a dead one).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Sent
                | DeliveryState::Skipped
                | DeliveryState::Dead
                | DeliveryState::Suppressed
                | DeliveryState::Unsubscribed
        )
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DeliveryState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "herald_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique_key = "delivery")]
    pub event_id: Uuid,
    #[sea_orm(unique_key = "delivery")]
    pub workflow: String,
    /// Normalised recipient list of this email, `-` for a skipped event, `*`
    /// for an event that failed as a whole.
    #[sea_orm(unique_key = "delivery")]
    pub recipient: String,
    /// Position of this email within the event's fan-out (`for_each` index).
    pub item_index: i32,
    pub subject: String,
    pub state: DeliveryState,
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
