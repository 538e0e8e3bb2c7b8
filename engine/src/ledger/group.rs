//! Group commit for the worker's two hot ledger writes: the claim of a new
//! delivery and its `sent` record. Concurrent deliveries hand their write to
//! one writer task per kind, which gathers whatever is waiting (up to
//! [`MAX_GROUP`]) and writes it as one statement on PostgreSQL (a multi-row
//! INSERT … RETURNING, an UPDATE … FROM VALUES) or one transaction on SQLite,
//! then answers each caller. While one group commits the next one gathers, so
//! the cost of a commit (a round trip, a WAL flush) is shared by every
//! delivery in flight instead of paid by each.
//!
//! Nothing about a single delivery changes: its caller still waits until its
//! own claim, or its own `sent`, is committed before it sends, or acks. A
//! crash loses at most writes that were not yet answered, which is the same
//! as crashing before making them one by one.
use std::collections::HashSet;
use std::future::Future;
use std::sync::OnceLock;

use chrono::Utc;
use herald_entities::delivery::{self, DeliveryState};
use sea_orm::sea_query::{PostgresQueryBuilder, Query, SimpleExpr};
use sea_orm::{
    ActiveValue, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value,
};
use tokio::sync::{mpsc, oneshot};

use super::claims::{Key, insert_if_absent, mark_sent, on_key_conflict};

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
        let mut insert = Query::insert();
        insert
            .into_table(delivery::Entity)
            .columns(COLUMNS)
            .on_conflict(on_key_conflict())
            .returning(Query::returning().columns([
                delivery::Column::EventId,
                delivery::Column::Workflow,
                delivery::Column::Recipient,
            ]));
        // Rows in key order: two groups with overlapping keys (redeliveries
        // racing on two workers) then take the keys' locks in the same
        // order and one waits for the other, where in arrival order each
        // could hold a key the other needs (a deadlock PostgreSQL breaks
        // by failing one group). The answers follow the caller's order below.
        let mut ordered: Vec<&delivery::ActiveModel> = rows.iter().collect();
        ordered.sort_by_cached_key(|row| key_of(row));
        for row in ordered {
            insert
                .values(values(row)?)
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        let (sql, params) = insert.build(PostgresQueryBuilder);
        let inserted = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                params,
            ))
            .await?;
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

const COLUMNS: [delivery::Column; 12] = [
    delivery::Column::EventId,
    delivery::Column::Workflow,
    delivery::Column::Recipient,
    delivery::Column::ItemIndex,
    delivery::Column::Subject,
    delivery::Column::State,
    delivery::Column::Attempts,
    delivery::Column::LastError,
    delivery::Column::CreatedAt,
    delivery::Column::UpdatedAt,
    delivery::Column::MessageId,
    delivery::Column::SentAt,
];

/// A claim row's values in [`COLUMNS`] order (every one is set by `new_row`).
fn values(row: &delivery::ActiveModel) -> Result<Vec<SimpleExpr>, DbErr> {
    Ok([
        set(&row.event_id)?,
        set(&row.workflow)?,
        set(&row.recipient)?,
        set(&row.item_index)?,
        set(&row.subject)?,
        set(&row.state)?,
        set(&row.attempts)?,
        set(&row.last_error)?,
        set(&row.created_at)?,
        set(&row.updated_at)?,
        set(&row.message_id)?,
        set(&row.sent_at)?,
    ]
    .into_iter()
    .map(SimpleExpr::Value)
    .collect())
}

/// The value an active field holds.
fn set<T: Into<Value> + Clone>(a: &ActiveValue<T>) -> Result<Value, DbErr> {
    match a {
        ActiveValue::Set(x) | ActiveValue::Unchanged(x) => Ok(x.clone().into()),
        ActiveValue::NotSet => Err(DbErr::Custom("a claim row has a column not set".into())),
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
        let mut params: Vec<Value> = vec![now.into()];
        let mut rows = Vec::with_capacity(items.len());
        for s in items {
            let n = params.len();
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5
            ));
            params.extend([
                s.key.event_id.into(),
                s.key.workflow.clone().into(),
                s.key.recipient.clone().into(),
                s.message_id.clone().into(),
                s.reply.clone().into(),
            ]);
        }
        let sql = format!(
            "UPDATE herald_deliveries AS d SET state = '{sent}', message_id = v.mid, \
             smtp_response = v.reply, sent_at = $1, updated_at = $1 \
             FROM (VALUES {rows}) AS v(event_id, workflow, recipient, mid, reply) \
             WHERE d.event_id = v.event_id AND d.workflow = v.workflow AND d.recipient = v.recipient",
            sent = DeliveryState::Sent.as_str(),
            rows = rows.join(", "),
        );
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            params,
        ))
        .await?;
        Ok(vec![(); items.len()])
    }
}
