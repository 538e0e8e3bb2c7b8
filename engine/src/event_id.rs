//! The event id: one key from the outbox row to the SMTP `Message-ID`.
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// An event's id: a UUIDv7 (time-ordered) unless the producer chose one. The
/// same value is the outbox key, `Nats-Msg-Id`, part of the ledger key, and
/// the stem of the SMTP `Message-ID` (`<{event_id}.{workflow}.{n}@domain>`).
///
/// ```
/// use herald::EventId;
/// let id = EventId::new();
/// let parsed: EventId = id.to_string().parse()?;
/// assert_eq!(parsed, id);
/// # Ok::<(), uuid::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

impl EventId {
    /// A new time-ordered id (UUIDv7).
    ///
    /// ```
    /// let (a, b) = (herald::EventId::new(), herald::EventId::new());
    /// assert!(a < b); // time-ordered: the outbox key sorts by creation
    /// ```
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }

    /// The id as a UUID (how the database stores it).
    ///
    /// ```
    /// let id = herald::EventId::new();
    /// assert_eq!(id.as_uuid().get_version_num(), 7);
    /// ```
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The placeholder of a message that carried no usable id (kept whole
    /// in a dead letter).
    pub(crate) fn nil() -> Self {
        EventId(Uuid::nil())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for EventId {
    fn from(u: Uuid) -> Self {
        EventId(u)
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Uuid::deserialize(d).map(EventId)
    }
}
