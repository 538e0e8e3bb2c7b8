//! The dead-letter store: deliveries a workflow gave up on, kept whole
//! (payload and headers) so an operator can read why and re-drive them.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
//! // What an operator reads first: each dead letter and why.
//! for dl in herald::dlq::list(&db, None, false).await? {
//!     println!("#{} {} event {}: {}", dl.id, dl.workflow, dl.event_id, dl.reason);
//! }
//! # Ok(()) }
//! ```
use crate::EventId;
use chrono::Utc;
use herald_entities::dead_letter;
pub use herald_entities::dead_letter::DeadLetterKind;

/// One dead letter as stored (see [`list`], [`get`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let dl: herald::dlq::DeadLetter = herald::dlq::get(&db, 42).await?.ok_or("no dead letter 42")?;
/// println!("{} for {:?}: {}", dl.workflow, dl.recipient, dl.reason);
/// # Ok(()) }
/// ```
pub type DeadLetter = dead_letter::Model;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr};

/// What the worker knows when it dead-letters.
#[derive(Debug, Clone)]
pub(crate) struct NewDeadLetter<'a> {
    pub event_id: EventId,
    pub workflow: &'a str,
    pub recipient: Option<&'a str>,
    pub subject: &'a str,
    pub aggregate: Option<&'a str>,
    pub stream_seq: Option<u64>,
    pub payload: &'a str,
    pub headers: String,
    pub kind: DeadLetterKind,
    pub reason: String,
    pub smtp_reply: Option<String>,
    pub attempts: u32,
}

pub(crate) async fn insert(db: &DatabaseConnection, d: NewDeadLetter<'_>) -> Result<i64, DbErr> {
    let row = dead_letter::ActiveModel {
        event_id: Set(d.event_id.as_uuid()),
        workflow: Set(d.workflow.to_string()),
        recipient: Set(d.recipient.map(str::to_string)),
        subject: Set(d.subject.to_string()),
        aggregate: Set(d.aggregate.map(str::to_string)),
        stream_seq: Set(d.stream_seq.and_then(|s| i64::try_from(s).ok())),
        payload: Set(d.payload.to_string()),
        headers: Set(d.headers),
        kind: Set(d.kind),
        reason: Set(d.reason),
        smtp_reply: Set(d.smtp_reply),
        attempts: Set(i32::try_from(d.attempts).unwrap_or(i32::MAX)),
        created_at: Set(Utc::now()),
        retried_at: Set(None),
        discarded_at: Set(None),
        ..Default::default()
    };
    Ok(row.insert(db).await?.id)
}

/// Dead letters, newest last; `workflow` filters; `include_retried` shows re-driven ones too.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// for dl in herald::dlq::list(&db, Some("welcome"), false).await? {
///     println!("#{} event {}: {}", dl.id, dl.event_id, dl.reason);
/// }
/// # Ok(()) }
/// ```
pub async fn list(
    db: &DatabaseConnection,
    workflow: Option<&str>,
    include_retried: bool,
) -> Result<Vec<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let mut q = dead_letter::Entity::find().order_by_asc(dead_letter::Column::Id);
    if let Some(w) = workflow {
        q = q.filter(dead_letter::Column::Workflow.eq(w));
    }
    if !include_retried {
        q = q.filter(dead_letter::Column::RetriedAt.is_null());
    }
    q.all(db).await
}

/// Look up one dead letter by id (as `herald dlq show ID` and the console
/// do); `None` when there is no such id.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// if let Some(dl) = herald::dlq::get(&db, 42).await? {
///     println!("{:?}: {} ({:?})", dl.kind, dl.reason, dl.smtp_reply);
/// }
/// # Ok(()) }
/// ```
pub async fn get(db: &DatabaseConnection, id: i64) -> Result<Option<dead_letter::Model>, DbErr> {
    use sea_orm::EntityTrait;
    dead_letter::Entity::find_by_id(id).one(db).await
}

/// Record that a dead letter was re-driven (it stays, for the record).
pub(crate) async fn mark_retried(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::RetriedAt, Utc::now().into())
        .filter(dead_letter::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The open dead letter that holds back an event of `aggregate` in
/// `workflow` at stream sequence `stream_seq`: the earliest unresolved one
/// of an earlier event of the same aggregate. Events of an aggregate are
/// emailed in order, so a later one waits until it is re-driven or discarded.
pub(crate) async fn blocking(
    db: &DatabaseConnection,
    workflow: &str,
    aggregate: &str,
    stream_seq: u64,
    event_id: EventId,
) -> Result<Option<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    dead_letter::Entity::find()
        .filter(dead_letter::Column::Workflow.eq(workflow))
        .filter(dead_letter::Column::Aggregate.eq(aggregate))
        .filter(dead_letter::Column::RetriedAt.is_null())
        .filter(dead_letter::Column::StreamSeq.lt(i64::try_from(stream_seq).unwrap_or(i64::MAX)))
        .filter(dead_letter::Column::EventId.ne(event_id.as_uuid()))
        .order_by_asc(dead_letter::Column::StreamSeq)
        .one(db)
        .await
}

/// The open `held` dead letter of `event_id` in `workflow`, if one is
/// stored: an event looked at again while still held (a replay, a
/// redelivery) does not get a second one.
pub(crate) async fn open_held(
    db: &DatabaseConnection,
    workflow: &str,
    event_id: EventId,
) -> Result<Option<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    dead_letter::Entity::find()
        .filter(dead_letter::Column::Workflow.eq(workflow))
        .filter(dead_letter::Column::EventId.eq(event_id.as_uuid()))
        .filter(dead_letter::Column::Kind.eq(DeadLetterKind::Held))
        .filter(dead_letter::Column::RetriedAt.is_null())
        .one(db)
        .await
}

/// The open dead letters held behind `dl` (same workflow and aggregate,
/// later in the stream), in stream order: re-driven after it.
pub(crate) async fn followers(
    db: &DatabaseConnection,
    dl: &dead_letter::Model,
) -> Result<Vec<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let (Some(aggregate), Some(seq)) = (&dl.aggregate, dl.stream_seq) else {
        return Ok(Vec::new());
    };
    dead_letter::Entity::find()
        .filter(dead_letter::Column::Workflow.eq(&dl.workflow))
        .filter(dead_letter::Column::Aggregate.eq(aggregate))
        .filter(dead_letter::Column::RetriedAt.is_null())
        .filter(dead_letter::Column::Kind.eq(DeadLetterKind::Held))
        .filter(dead_letter::Column::StreamSeq.gt(seq))
        .order_by_asc(dead_letter::Column::StreamSeq)
        .all(db)
        .await
}

/// Close a dead letter without delivering it (an operator decided it
/// should not be sent). What it held back can then go.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// herald::dlq::discard(&db, 42).await?; // the events it held back can go now
/// # Ok(()) }
/// ```
pub async fn discard(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let now = Utc::now();
    dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::RetriedAt, now.into())
        .col_expr(dead_letter::Column::DiscardedAt, now.into())
        .filter(dead_letter::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// An aggregate whose later events wait behind a dead letter.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// for h in herald::dlq::held_aggregates(&db).await? {
///     println!("{} {}: {} event(s) behind dead letter #{}", h.workflow, h.aggregate, h.held, h.dead_letter);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldAggregate {
    pub workflow: String,
    pub aggregate: String,
    /// The dead letter in front (re-drive or discard it).
    pub dead_letter: i64,
    /// Events waiting behind it.
    pub held: u64,
}

/// Every aggregate held by an open dead letter, per workflow.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let held = herald::dlq::held_aggregates(&db).await?;
/// let waiting: u64 = held.iter().map(|h| h.held).sum();
/// # Ok(()) }
/// ```
pub async fn held_aggregates(db: &DatabaseConnection) -> Result<Vec<HeldAggregate>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let open = dead_letter::Entity::find()
        .filter(dead_letter::Column::RetriedAt.is_null())
        .filter(dead_letter::Column::Aggregate.is_not_null())
        .order_by_asc(dead_letter::Column::StreamSeq)
        .all(db)
        .await?;
    let mut out: Vec<HeldAggregate> = Vec::new();
    for d in open {
        let Some(aggregate) = d.aggregate.clone() else {
            continue;
        };
        match out
            .iter_mut()
            .find(|h| h.workflow == d.workflow && h.aggregate == aggregate)
        {
            Some(h) => h.held += 1,
            None => out.push(HeldAggregate {
                workflow: d.workflow.clone(),
                aggregate,
                dead_letter: d.id,
                held: 0,
            }),
        }
    }
    Ok(out)
}

/// The newest dead letters first, at most `limit`: open ones only, or
/// closed ones too (`include_closed`); `workflow` filters. What a console
/// pages through ([`list`] returns them all, oldest first).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let page = herald::dlq::recent(&db, None, false, 50).await?; // newest 50 open ones
/// # Ok(()) }
/// ```
pub async fn recent(
    db: &DatabaseConnection,
    workflow: Option<&str>,
    include_closed: bool,
    limit: u64,
) -> Result<Vec<dead_letter::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut q = dead_letter::Entity::find().order_by_desc(dead_letter::Column::Id);
    if let Some(w) = workflow {
        q = q.filter(dead_letter::Column::Workflow.eq(w));
    }
    if !include_closed {
        q = q.filter(dead_letter::Column::RetriedAt.is_null());
    }
    q.limit(limit).all(db).await
}

/// The workflows that have dead letters (any, open or closed), by name.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// for name in herald::dlq::workflows(&db).await? {
///     println!("{name}");
/// }
/// # Ok(()) }
/// ```
pub async fn workflows(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    dead_letter::Entity::find()
        .select_only()
        .column(dead_letter::Column::Workflow)
        .distinct()
        .order_by_asc(dead_letter::Column::Workflow)
        .into_tuple::<String>()
        .all(db)
        .await
}
