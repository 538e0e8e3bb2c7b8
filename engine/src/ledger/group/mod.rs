//! Group commit for the worker's two hot ledger writes: the claim of a new
//! delivery and its `sent` record. Concurrent deliveries hand their write to
//! one writer task per kind, which gathers whatever is waiting (up to
//! [`MAX_GROUP`]) and writes it in one commit: on PostgreSQL as multi-row
//! statements (an INSERT … RETURNING, an UPDATE … FROM VALUES; one, or a few
//! in a transaction when the group is too long for one TLS record, see
//! `postgres.rs`), on SQLite as one transaction; then it answers each
//! caller. While one group commits the next one gathers, so the cost of a
//! commit (a round trip, a WAL flush) is shared by every delivery in flight
//! instead of paid by each. The same gathering serves a read every email
//! makes: its address check (`suppression::lookup`).
//!
//! Nothing about a single delivery changes: its caller still waits until its
//! own claim, or its own `sent`, is committed before it sends, or acks. A
//! crash loses at most writes that were not yet answered, which is the same
//! as crashing before making them one by one.
use std::collections::HashSet;
use std::future::Future;
use std::sync::OnceLock;

use chrono::Utc;
use herald_entities::delivery;
use sea_orm::{ActiveValue, DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};

use super::claims::{Key, insert_if_absent, mark_sent};
pub(crate) use postgres::chunks;
use postgres::{claim_size, claims_statement, in_one_commit, sent_statement};

mod postgres;

/// The most writes one group takes: bounds a statement's parameters (PostgreSQL
/// allows 65,535; a claim row has 14) and one transaction's length.
const MAX_GROUP: usize = 256;

/// One kind of write that can be grouped.
pub trait Group: Send + Sync + 'static {
    type Item: Send + 'static;
    type Answer: Send + 'static;
    /// Write `items` together; one answer per item, in order.
    fn write(
        db: &DatabaseConnection,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, DbErr>> + Send;
}

type Reply<G> = oneshot::Sender<Result<<G as Group>::Answer, DbErr>>;

/// The handle deliveries write through. The writer task starts with the
/// first write (so building a worker needs no runtime) and ends when the
/// last handle is dropped. It is not joined at shutdown, and need not be:
/// every write's caller awaits its answer, so once the deliveries have
/// finished (the worker's shutdown waits for them) the task has nothing in
/// flight.
pub struct Writer<G: Group> {
    db: DatabaseConnection,
    queue: OnceLock<mpsc::Sender<(G::Item, Reply<G>)>>,
}

impl<G: Group> Writer<G> {
    pub fn new(db: DatabaseConnection) -> Self {
        Writer {
            db,
            queue: OnceLock::new(),
        }
    }

    /// Write `item` in the next group; returns when that group is committed.
    pub async fn write(&self, item: G::Item) -> Result<G::Answer, DbErr> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(MAX_GROUP * 4);
            tokio::spawn(serve::<G>(self.db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        match queue.send((item, reply)).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(DbErr::Custom("the ledger writer stopped".into()))),
            // The writer is gone (it cannot be, short of a panic): write alone.
            Err(mpsc::error::SendError((item, _))) => {
                let mut one = G::write(&self.db, std::slice::from_ref(&item)).await?;
                one.pop()
                    .ok_or_else(|| DbErr::Custom("the ledger write returned no answer".into()))
            }
        }
    }
}

async fn serve<G: Group>(db: DatabaseConnection, mut rx: mpsc::Receiver<(G::Item, Reply<G>)>) {
    let mut waiting = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut waiting, MAX_GROUP).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        match G::write(&db, &items).await {
            Ok(answers) if answers.len() == replies.len() => {
                for (reply, a) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(a));
                }
            }
            Ok(_) => fail(replies, "the ledger write answered the wrong count"),
            // DbErr is not Clone: each caller gets the message, and retries
            // or naks as it would for its own failed write.
            Err(e) => fail(replies, &e.to_string()),
        }
    }
}

fn fail<A>(replies: Vec<oneshot::Sender<Result<A, DbErr>>>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(DbErr::Custom(why.to_string())));
    }
}

/// The owned form of a [`Key`], for a write that waits in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnedKey {
    pub event_id: uuid::Uuid,
    pub workflow: String,
    pub recipient: String,
}

impl OwnedKey {
    fn borrow(&self) -> Key<'_> {
        Key {
            event_id: crate::EventId::from(self.event_id),
            workflow: &self.workflow,
            recipient: &self.recipient,
        }
    }
}

impl From<&Key<'_>> for OwnedKey {
    fn from(k: &Key<'_>) -> Self {
        OwnedKey {
            event_id: k.event_id.as_uuid(),
            workflow: k.workflow.to_string(),
            recipient: k.recipient.to_string(),
        }
    }
}

/// Insert a new delivery as `sending` (attempt 1) unless its key exists;
/// the answer is whether this item inserted it.
pub struct NewClaims;

impl Group for NewClaims {
    type Item = delivery::ActiveModel;
    type Answer = bool;

    async fn write(
        db: &DatabaseConnection,
        rows: &[delivery::ActiveModel],
    ) -> Result<Vec<bool>, DbErr> {
        if db.get_database_backend() != DbBackend::Postgres {
            // SQLite: one transaction (one commit), a statement per row: local
            // statements are cheap, the commit is what costs.
            let txn = crate::db::begin_write(db).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(insert_if_absent(&txn, row.clone()).await?);
            }
            txn.commit().await?;
            return Ok(out);
        }
        // Rows in key order: two groups with overlapping keys (redeliveries
        // racing on two workers) then take the keys' locks in the same
        // order and one waits for the other, where in arrival order each
        // could hold a key the other needs (a deadlock PostgreSQL breaks
        // by failing one group). The answers follow the caller's order below.
        let mut ordered: Vec<&delivery::ActiveModel> = rows.iter().collect();
        ordered.sort_by_cached_key(|row| key_of(row));
        let statements = chunks(&ordered, |row| claim_size(row))
            .into_iter()
            .map(claims_statement)
            .collect::<Result<Vec<_>, _>>()?;
        let inserted = in_one_commit(db, statements).await?;
        let mut fresh: HashSet<OwnedKey> = HashSet::with_capacity(inserted.len());
        for r in inserted {
            fresh.insert(OwnedKey {
                event_id: r.try_get("", "event_id")?,
                workflow: r.try_get("", "workflow")?,
                recipient: r.try_get("", "recipient")?,
            });
        }
        // The same key twice in one group (a redelivery racing its original):
        // only the first item inserted it.
        Ok(rows
            .iter()
            .map(|row| key_of(row).is_some_and(|k| fresh.remove(&k)))
            .collect())
    }
}

fn key_of(row: &delivery::ActiveModel) -> Option<OwnedKey> {
    match (&row.event_id, &row.workflow, &row.recipient) {
        (ActiveValue::Set(e), ActiveValue::Set(w), ActiveValue::Set(r)) => Some(OwnedKey {
            event_id: *e,
            workflow: w.clone(),
            recipient: r.clone(),
        }),
        _ => None,
    }
}

/// A delivery the server accepted: (key, Message-ID, the server's reply).
pub struct Sent;

pub struct SentRecord {
    pub key: OwnedKey,
    pub message_id: String,
    pub reply: String,
}

impl Group for Sent {
    type Item = SentRecord;
    type Answer = ();

    async fn write(db: &DatabaseConnection, items: &[SentRecord]) -> Result<Vec<()>, DbErr> {
        if db.get_database_backend() != DbBackend::Postgres {
            let txn = crate::db::begin_write(db).await?;
            for s in items {
                mark_sent(&txn, &s.key.borrow(), &s.message_id, &s.reply).await?;
            }
            txn.commit().await?;
            return Ok(vec![(); items.len()]);
        }
        let now = Utc::now();
        let size = |s: &SentRecord| {
            60 + s.key.workflow.len() + s.key.recipient.len() + s.message_id.len() + s.reply.len()
        };
        let statements = chunks(items, size)
            .into_iter()
            .map(|chunk| sent_statement(chunk, now))
            .collect();
        in_one_commit(db, statements).await?;
        Ok(vec![(); items.len()])
    }
}
