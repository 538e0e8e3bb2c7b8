//! Order per aggregate, concurrency across aggregates. Every message pulled
//! joins the lane of its key: its aggregate (the `Herald-Aggregate` header),
//! or a lane of its own when it has none. A lane processes its messages one
//! at a time in stream order; different lanes run at once. A message stays
//! at the head of its lane until it is settled, so a retry, a claim held by
//! another worker or a transport outage holds back only the messages of the
//! same aggregate behind it.
//!
//! The lanes also bound how much the worker takes from the stream: the pull
//! loop asks for no more messages than there is room for.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::Message;
use tokio::sync::Notify;

use crate::jetstream::headers;

/// Which lane a message joins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LaneKey {
    /// Messages of one aggregate: in order.
    Aggregate(String),
    /// A message without an aggregate: a lane of its own.
    Single(u64),
}

impl LaneKey {
    pub fn ordered(&self) -> bool {
        matches!(self, LaneKey::Aggregate(_))
    }
}

struct State {
    queues: HashMap<LaneKey, VecDeque<Message>>,
    held: usize,
}

/// The lanes of one consumer session.
pub struct Lanes {
    state: Mutex<State>,
    capacity: usize,
    /// Signalled whenever a message leaves (room to pull more).
    freed: Notify,
    singles: AtomicU64,
}

/// What [`Lanes::push`] tells the pull loop.
pub enum Pushed {
    /// The lane was idle: start a task for it.
    NewLane(LaneKey),
    /// Queued behind the lane's running message.
    Queued,
}

impl Lanes {
    pub fn new(capacity: usize) -> Lanes {
        Lanes {
            state: Mutex::new(State {
                queues: HashMap::new(),
                held: 0,
            }),
            capacity: capacity.max(1),
            freed: Notify::new(),
            singles: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key_of(&self, msg: &Message) -> LaneKey {
        let aggregate = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::AGGREGATE))
            .map(|v| v.as_str().to_string())
            .filter(|a| !a.is_empty());
        match aggregate {
            Some(a) => LaneKey::Aggregate(a),
            None => LaneKey::Single(self.singles.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Room for this many more messages.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.lock().held)
    }

    /// Wait until a message leaves.
    pub async fn wait_for_room(&self) {
        let notified = self.freed.notified();
        tokio::pin!(notified);
        // Registered before the check: a message leaving in between wakes it.
        notified.as_mut().enable();
        if self.room() > 0 {
            return;
        }
        notified.await;
    }

    /// Messages in the lanes (running and waiting).
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Add a message to its lane, in stream order: a redelivery of an
    /// earlier message (its worker died) goes before the later ones that
    /// arrived first; a second delivery of a message already in the lane
    /// replaces it (the newest delivery is the one to acknowledge).
    pub fn push(&self, key: LaneKey, msg: Message) -> Pushed {
        let seq = stream_seq(&msg);
        let mut s = self.lock();
        let q = s.queues.entry(key.clone()).or_default();
        if let Some(existing) = q.iter_mut().find(|m| stream_seq(m) == seq) {
            *existing = msg;
            return Pushed::Queued;
        }
        let order = order_of(&msg);
        let at = q
            .iter()
            .position(|m| order_of(m) > order)
            .unwrap_or(q.len());
        q.insert(at, msg);
        let new = q.len() == 1;
        s.held += 1;
        if new {
            Pushed::NewLane(key)
        } else {
            Pushed::Queued
        }
    }

    /// The message at the head of `key`'s lane (the one to process now).
    pub fn head(&self, key: &LaneKey) -> Option<Message> {
        self.lock().queues.get(key).and_then(|q| q.front().cloned())
    }

    /// `settled` is done: remove it from its lane. Returns false when the
    /// lane is now empty (and gone): its task ends.
    pub fn pop(&self, key: &LaneKey, settled: &Message) -> bool {
        let seq = stream_seq(settled);
        let more = {
            let mut s = self.lock();
            let mut more = false;
            let mut removed = false;
            if let Some(q) = s.queues.get_mut(key) {
                if let Some(i) = q.iter().position(|m| stream_seq(m) == seq) {
                    removed = q.remove(i).is_some();
                }
                more = !q.is_empty();
                if !more {
                    s.queues.remove(key);
                }
            }
            if removed {
                s.held = s.held.saturating_sub(1);
            }
            more
        };
        self.freed.notify_waiters();
        more
    }

    /// Every message still in `key`'s lane (shutdown: given back).
    pub fn drain(&self, key: &LaneKey) -> Vec<Message> {
        let out: Vec<Message> = {
            let mut s = self.lock();
            let q = s.queues.remove(key).unwrap_or_default();
            s.held = s.held.saturating_sub(q.len());
            q.into_iter().collect()
        };
        self.freed.notify_waiters();
        out
    }

    /// A copy of every held message (for progress acks).
    pub fn all(&self) -> Vec<Message> {
        self.lock()
            .queues
            .values()
            .flat_map(|q| q.iter().cloned())
            .collect()
    }
}

/// Where a message goes in its lane: its outbox seq (the order of record),
/// else its stream sequence. They agree while the relay publishes, but
/// `outbox republish` after a stream loss puts an aggregate's earlier events
/// behind its later ones in the new stream: ordered by stream sequence, the
/// later event would wait at the head of the lane for the earlier one queued
/// behind it, forever.
fn order_of(m: &Message) -> u64 {
    m.headers
        .as_ref()
        .and_then(|h| h.get(headers::OUTBOX_SEQ))
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .unwrap_or_else(|| stream_seq(m))
}

/// A message's stream sequence (0 when it has none: it then sorts first).
fn stream_seq(m: &Message) -> u64 {
    m.info().map(|i| i.stream_sequence).unwrap_or(0)
}
