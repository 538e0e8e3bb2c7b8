//! An event as the worker sees it: decoded from a stream message, or rebuilt
//! from a dead letter for a re-drive. One type, built in one place each way.
use crate::EventId;

use crate::jetstream::headers;
use crate::workflow::render::Meta;

/// Why a stream message is not a Herald event: without a valid id there is
/// nothing to key a ledger row on, so it is dead-lettered whole.
#[derive(Debug, thiserror::Error)]
pub enum NotAnEvent {
    #[error("message has no Nats-Msg-Id header")]
    NoId,
    #[error("Nats-Msg-Id {id:?} is not a UUID: {source}")]
    BadId { id: String, source: uuid::Error },
}

/// An event as the worker sees it, from a stream message (or a dead letter).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub subject: String,
    pub payload: String,
    pub aggregate: Option<String>,
    pub occurred_at: String,
    pub stream_seq: Option<u64>,
    /// The outbox row's seq (`Herald-Outbox-Seq`): the aggregate's order of record.
    pub outbox_seq: Option<i64>,
    pub headers: String,
}

impl Event {
    pub fn from_message(
        m: &async_nats::Message,
        stream_seq: Option<u64>,
    ) -> Result<Event, NotAnEvent> {
        let h = m.headers.clone().unwrap_or_default();
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        let id = get(headers::MSG_ID).ok_or(NotAnEvent::NoId)?;
        let id: EventId = id
            .parse()
            .map_err(|source| NotAnEvent::BadId { id, source })?;
        let mut map = serde_json::Map::new();
        for (k, vs) in h.iter() {
            if let Some(v) = vs.first() {
                map.insert(
                    k.to_string(),
                    serde_json::Value::String(v.as_str().to_string()),
                );
            }
        }
        Ok(Event {
            id,
            subject: m.subject.to_string(),
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
            aggregate: get(headers::AGGREGATE),
            occurred_at: get(headers::OCCURRED_AT).unwrap_or_default(),
            stream_seq,
            outbox_seq: get(headers::OUTBOX_SEQ).and_then(|s| s.parse().ok()),
            headers: serde_json::Value::Object(map).to_string(),
        })
    }

    /// The event a dead letter holds (payload and headers were kept whole).
    pub fn from_dead_letter(dl: &herald_entities::dead_letter::Model) -> Event {
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&dl.headers).unwrap_or_default();
        let header = |k: &str| headers.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Event {
            id: dl.event_id.into(),
            subject: dl.subject.clone(),
            payload: dl.payload.clone(),
            aggregate: header(headers::AGGREGATE),
            occurred_at: header(headers::OCCURRED_AT).unwrap_or_default(),
            stream_seq: dl.stream_seq.and_then(|s| u64::try_from(s).ok()),
            outbox_seq: header(headers::OUTBOX_SEQ).and_then(|s| s.parse().ok()),
            headers: dl.headers.clone(),
        }
    }

    /// The event as its outbox row holds it, with the headers the relay
    /// publishes it with (the row's own, then Herald's).
    pub fn from_outbox(row: &herald_entities::outbox::Model) -> Event {
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.headers).unwrap_or_default();
        let mut put = |k: &str, v: String| {
            map.insert(k.to_string(), serde_json::Value::String(v));
        };
        put(headers::MSG_ID, row.event_id.to_string());
        put(headers::OCCURRED_AT, row.created_at.to_rfc3339());
        put(headers::OUTBOX_SEQ, row.seq.to_string());
        if let Some(k) = &row.ordering_key {
            put(headers::AGGREGATE, k.clone());
        }
        Event {
            id: row.event_id.into(),
            subject: row.subject.clone(),
            payload: row.payload.clone(),
            aggregate: row.ordering_key.clone(),
            occurred_at: row.created_at.to_rfc3339(),
            stream_seq: row.stream_seq.and_then(|s| u64::try_from(s).ok()),
            outbox_seq: Some(row.seq),
            headers: serde_json::Value::Object(map).to_string(),
        }
    }

    /// A message that is not a Herald event (no usable id): kept whole so the
    /// dead letter shows what arrived.
    pub fn undecodable(m: &async_nats::Message, stream_seq: Option<u64>) -> Event {
        Event {
            id: EventId::nil(),
            subject: m.subject.to_string(),
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
            aggregate: None,
            occurred_at: String::new(),
            stream_seq,
            outbox_seq: None,
            headers: "{}".into(),
        }
    }

    /// What templates see as `meta` when `workflow` runs this event.
    pub fn meta(&self, workflow: &str) -> Meta {
        Meta {
            id: self.id.to_string(),
            subject: self.subject.clone(),
            aggregate: self.aggregate.clone(),
            occurred_at: self.occurred_at.clone(),
            workflow: workflow.to_string(),
        }
    }
}
