//! `herald status`: one snapshot of everything an operator asks first —
//! outbox backlog and parked rows, the stream, each workflow's consumer lag,
//! ledger counts by state, dead letters. The database part never needs NATS.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
//! let status = herald::status::from_database(&db).await?;
//! println!("{}", herald::status::render_text(&status));
//! # Ok(()) }
//! ```
use std::collections::BTreeMap;

use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use serde::Serialize;

use crate::outbox::store::{self, Backlog};
use herald_entities::delivery::DeliveryState;

/// Everything `herald status` shows: the database part from
/// [`from_database`], the stream's part added by [`add_stream`].
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let mut status = herald::status::from_database(&db).await?;
/// herald::status::add_stream(&mut status, &js, "HERALD").await?;
/// println!("{}", herald::status::render_text(&status));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub outbox: Backlog,
    /// Delivery counts by state (`sent`, `skipped`, `dead`, `retrying`, `sending`).
    pub deliveries: BTreeMap<String, i64>,
    /// Dead letters not yet retried.
    pub dead_letters: i64,
    /// None when NATS could not be asked (see `stream_error`).
    pub stream: Option<StreamStatus>,
    pub stream_error: Option<String>,
    pub consumers: Vec<ConsumerStatus>,
    /// Aggregates whose later events wait: behind a parked outbox row
    /// (publishing) or an open dead letter (a workflow's emails).
    pub held: Held,
    /// What waits in the schedule (delays, send windows, digests).
    pub scheduled: crate::worker::Scheduled,
    /// Addresses that get no mail (bounced for good or added by hand).
    pub suppressed_addresses: i64,
    /// Recorded one-click unsubscribes (address and category).
    pub unsubscribes: i64,
}

/// What holds back aggregates, and where.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let held = herald::status::from_database(&db).await?.held;
/// println!("{} parked, {} behind dead letters", held.outbox.len(), held.workflows.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct Held {
    /// Parked outbox rows: nothing later of their aggregate is published.
    pub outbox: Vec<store::ParkedAggregate>,
    /// Open dead letters: nothing later of their aggregate is emailed by
    /// that workflow.
    pub workflows: Vec<crate::dlq::HeldAggregate>,
}

/// The events stream's size and sequence range, as NATS reports it.
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let mut status = herald::status::from_database(&db).await?;
/// herald::status::add_stream(&mut status, &js, "HERALD").await?;
/// if let Some(s) = &status.stream {
///     println!("{}: {} messages, seq {}..={}", s.name, s.messages, s.first_seq, s.last_seq);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One workflow's consumer: its lag, and whether a worker is pulling from it.
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// let stream = js.get_stream("HERALD").await?;
/// for c in herald::status::consumers(&stream).await? {
///     println!("{}: {} pending, {} unacked, {}", c.name, c.pending, c.ack_pending, c.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Messages not yet delivered to the consumer.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: usize,
    pub redelivered: usize,
    /// Pull requests waiting on the server: a worker is consuming.
    pub pulling: usize,
    /// `pulling` when a worker has pull requests open; `not pulling`
    /// otherwise (no worker runs it, or its SMTP transport is down).
    pub state: &'static str,
}

/// The database part of the status.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let status = herald::status::from_database(&db).await?;
/// println!("{} dead letters open", status.dead_letters);
/// # Ok(()) }
/// ```
pub async fn from_database(db: &DatabaseConnection) -> Result<Status, DbErr> {
    let outbox = store::backlog(db, Utc::now()).await?;
    let backend = db.get_database_backend();
    let mut deliveries: BTreeMap<String, i64> = DeliveryState::ALL
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for row in db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT state, COUNT(*) AS n FROM herald_deliveries GROUP BY state",
        ))
        .await?
    {
        deliveries.insert(row.try_get("", "state")?, row.try_get("", "n")?);
    }
    let dead_letters = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM herald_dead_letters WHERE retried_at IS NULL",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let held = Held {
        outbox: store::parked_aggregates(db).await?,
        workflows: crate::dlq::held_aggregates(db).await?,
    };
    let count = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(backend, sql))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Status {
        outbox,
        deliveries,
        dead_letters,
        stream: None,
        stream_error: None,
        consumers: Vec::new(),
        held,
        scheduled: crate::worker::scheduled(db).await?,
        suppressed_addresses: count("SELECT COUNT(*) AS n FROM herald_suppressions").await?,
        unsubscribes: count("SELECT COUNT(*) AS n FROM herald_unsubscribes").await?,
    })
}

/// What [`add_stream`] and [`consumers`] could not read from NATS.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) -> Result<(), sea_orm::DbErr> {
/// use herald::status::StatusErrorKind;
/// let mut status = herald::status::from_database(&db).await?;
/// if let Err(e) = herald::status::add_stream(&mut status, &js, "HERALD").await {
///     if e.kind() == StatusErrorKind::NoStream {
///         eprintln!("no stream yet: a relay creates it when it starts");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusErrorKind {
    /// The server answered that the stream does not exist.
    NoStream,
    /// The stream could not be read (NATS down, no leader, a timeout).
    Stream,
    /// The stream's consumers could not be listed.
    Consumers,
}

/// A failure to read the stream's part of the status.
pub type StatusError = crate::error::Error<StatusErrorKind>;

/// Fill in the stream and its Herald consumers (`herald-*`).
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let mut status = herald::status::from_database(&db).await?;
/// if let Err(e) = herald::status::add_stream(&mut status, &js, "HERALD").await {
///     eprintln!("NATS: {e}"); // the database part is still shown
/// }
/// # Ok(()) }
/// ```
pub async fn add_stream(
    status: &mut Status,
    js: &jetstream::Context,
    name: &str,
) -> Result<(), StatusError> {
    let stream_err = |e: &dyn std::fmt::Display| {
        StatusError::new(StatusErrorKind::Stream, format!("stream {name}: {e}"))
    };
    let mut stream = js.get_stream(name).await.map_err(|e| {
        let kind = if crate::jetstream::stream_missing(&e) {
            StatusErrorKind::NoStream
        } else {
            StatusErrorKind::Stream
        };
        let hint = match kind {
            StatusErrorKind::NoStream => {
                " (a relay creates the stream when it starts: none has run with this stream name on this NATS server; check --stream and --nats-url)"
            }
            _ => "",
        };
        StatusError::new(kind, format!("stream {name}: {e}{hint}")).with_source(e)
    })?;
    let info = stream
        .info()
        .await
        .map_err(|e| stream_err(&e).with_source(e))?;
    status.stream = Some(StreamStatus {
        name: name.to_string(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
    });
    status.consumers = consumers(&stream).await?;
    Ok(())
}

/// Herald's consumers (`herald-*`) of a stream, by name.
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// let stream = js.get_stream("HERALD").await?;
/// let idle: Vec<_> = herald::status::consumers(&stream).await?
///     .into_iter().filter(|c| c.pulling == 0).collect();
/// # Ok(()) }
/// ```
pub async fn consumers(
    stream: &jetstream::stream::Stream,
) -> Result<Vec<ConsumerStatus>, StatusError> {
    let mut out = Vec::new();
    let mut list = stream.consumers();
    while let Some(c) = list.next().await {
        let c = c.map_err(|e| {
            StatusError::new(StatusErrorKind::Consumers, format!("consumers: {e}")).with_source(e)
        })?;
        if c.name.starts_with("herald-") {
            out.push(ConsumerStatus {
                name: c.name.clone(),
                pending: c.num_pending,
                ack_pending: c.num_ack_pending,
                redelivered: c.num_redelivered,
                pulling: c.num_waiting,
                state: if c.num_waiting > 0 {
                    "pulling"
                } else {
                    "not pulling"
                },
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The human rendering: aligned `key  value` lines by section.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let status = herald::status::from_database(&db).await?;
/// print!("{}", herald::status::render_text(&status));
/// # Ok(()) }
/// ```
pub fn render_text(s: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "outbox       pending {}  parked {}  oldest pending {:.1}s\n",
        s.outbox.pending, s.outbox.parked, s.outbox.oldest_pending_age_seconds
    ));
    match (&s.stream, &s.stream_error) {
        (Some(st), _) => out.push_str(&format!(
            "stream       {}  messages {}  bytes {}  seq {}..{}\n",
            st.name, st.messages, st.bytes, st.first_seq, st.last_seq
        )),
        (None, Some(e)) => out.push_str(&format!("stream       unavailable: {e}\n")),
        (None, None) => {}
    }
    for c in &s.consumers {
        out.push_str(&format!(
            "consumer     {}  {}  pending {}  ack pending {}  redelivered {}\n",
            c.name, c.state, c.pending, c.ack_pending, c.redelivered
        ));
    }
    for p in &s.held.outbox {
        out.push_str(&format!(
            "held         aggregate {}  behind parked outbox row {}  ({} waiting): {}\n",
            p.aggregate, p.seq, p.waiting, p.reason
        ));
    }
    for h in &s.held.workflows {
        out.push_str(&format!(
            "held         aggregate {}  in {}  behind dead letter {}  ({} waiting)\n",
            h.aggregate, h.workflow, h.dead_letter, h.held
        ));
    }
    let d: Vec<String> = s
        .deliveries
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out.push_str(&format!("deliveries   {}\n", d.join("  ")));
    out.push_str(&format!("dead letters {}\n", s.dead_letters));
    let sc = &s.scheduled;
    if sc.delayed + sc.digests > 0 {
        out.push_str(&format!(
            "scheduled    delayed {}  digests {} ({} events)  next due {}\n",
            sc.delayed,
            sc.digests,
            sc.digest_events,
            sc.next_due.as_deref().unwrap_or("-")
        ));
    }
    if s.suppressed_addresses + s.unsubscribes > 0 {
        out.push_str(&format!(
            "suppressed   {} addresses  unsubscribes {}\n",
            s.suppressed_addresses, s.unsubscribes
        ));
    }
    out
}
