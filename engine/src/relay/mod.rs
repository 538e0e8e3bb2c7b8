//! The relay: publishes committed outbox rows to JetStream, at least once.
//!
//! One iteration claims a batch, publishes it pipelined in `seq` order on one
//! connection (so each aggregate's order is the stream's order), awaits all
//! PubAcks, then marks the acknowledged rows in one statement. On PostgreSQL
//! the batch holds its rows by row locks in one transaction, from the claim
//! to the mark (`outbox/store/locked.rs`); on SQLite by leases written to the
//! rows. A crash anywhere leaves rows unmarked: the transaction ends (or the
//! leases expire) and they are published again with the same `Nats-Msg-Id`,
//! which JetStream drops as a duplicate within the stream's duplicate window.
//! `in_flight` batches run at once, as concurrent futures of one task; a
//! claim leaves out the aggregates the others hold.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::{health::Health, metrics::Metrics, relay::{self, Relay, RelayConfig}};
//! let cfg = RelayConfig::default();
//! let client = herald::jetstream::connect("nats://localhost:4222", "herald-relay").await?;
//! let js = relay::jetstream_context(client, cfg.batch_size);
//! let stop = tokio_util::sync::CancellationToken::new();
//! Relay::new(db, js, cfg, Metrics::new()).run(Health::new(), stop).await; // until stop.cancel()
//! # Ok(()) }
//! ```
mod batch;
mod busy;
mod config;
mod fence;
mod listen;
pub(crate) mod publish;
mod run;

pub use config::{RelayConfig, jetstream_context};

use std::sync::Arc;

use async_nats::jetstream;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Notify;

use crate::jetstream::StreamSettings;
use crate::metrics::Metrics;

/// What a relay iteration can fail on.
///
/// ```no_run
/// # async fn example(relay: herald::relay::Relay) {
/// use herald::relay::RelayErrorKind;
/// if let Err(e) = relay.run_once().await {
///     match e.kind() {
///         RelayErrorKind::Database => eprintln!("database down: {e}"),
///         _ => eprintln!("NATS: {e}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayErrorKind {
    /// The database failed (claim, mark): nothing was lost, the batch is retried.
    Database,
    /// NATS did not take the publishes (down, slow): the rows are released.
    Unreachable,
    /// The events stream is gone (deleted by hand): the relay recreates it.
    NoStream,
}

/// A relay iteration's failure.
///
/// ```no_run
/// # async fn example(relay: herald::relay::Relay) {
/// let result: Result<_, herald::relay::RelayError> = relay.run_once().await;
/// if let Err(e) = result {
///     eprintln!("batch failed ({:?}): {e}", e.kind());
/// }
/// # }
/// ```
pub type RelayError = crate::error::Error<RelayErrorKind>;

impl From<DbErr> for RelayError {
    fn from(e: DbErr) -> Self {
        RelayError::new(
            RelayErrorKind::Database,
            format!("database: {}", crate::db::describe(&e)),
        )
        .with_source(e)
    }
}

/// What one iteration did.
///
/// ```no_run
/// # async fn example(relay: herald::relay::Relay) -> Result<(), Box<dyn std::error::Error>> {
/// let done: herald::relay::BatchOutcome = relay.run_once().await?;
/// if done.parked > 0 {
///     eprintln!("{} rows parked after their last attempt", done.parked);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub claimed: usize,
    pub published: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub parked: usize,
    /// Time spent claiming, publishing (until the last PubAck) and marking:
    /// logged at debug level to see where a slow batch went.
    pub claim_ms: u64,
    pub publish_ms: u64,
    pub mark_ms: u64,
}

/// The loop that moves committed outbox rows to JetStream, in `seq` order,
/// until it is stopped (what `herald relay` runs).
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::{health::Health, metrics::Metrics, relay::{self, Relay, RelayConfig}};
/// use tokio_util::sync::CancellationToken;
/// let cfg = RelayConfig::default();
/// let client = herald::jetstream::connect("nats://localhost:4222", "herald-relay").await?;
/// let js = relay::jetstream_context(client, cfg.batch_size);
/// let relay = Relay::new(db, js, cfg, Metrics::new());
/// let stop = CancellationToken::new();
/// relay.run(Health::new(), stop.clone()).await; // until `stop.cancel()`
/// # Ok(()) }
/// ```
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    cfg: RelayConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// Settings to recreate the stream with if it disappears.
    stream: Option<StreamSettings>,
    /// The aggregates each batch in flight holds.
    busy: busy::Busy,
}

impl Relay {
    /// A relay publishing `db`'s outbox through `js` (made with
    /// [`jetstream_context`], so that a batch never waits on the ack cap).
    ///
    /// ```no_run
    /// # async fn example(db: sea_orm::DatabaseConnection, client: async_nats::Client) {
    /// use herald::{metrics::Metrics, relay::{jetstream_context, Relay, RelayConfig}};
    /// let cfg = RelayConfig::default().batch_size(1_000);
    /// let js = jetstream_context(client, cfg.batch_size);
    /// let relay = Relay::new(db, js, cfg, Metrics::new());
    /// # }
    /// ```
    pub fn new(
        db: DatabaseConnection,
        js: jetstream::Context,
        cfg: RelayConfig,
        metrics: Arc<Metrics>,
    ) -> Relay {
        Relay {
            db,
            js,
            cfg,
            metrics,
            wake: Arc::new(Notify::new()),
            stream: None,
            busy: busy::Busy::default(),
        }
    }

    /// Recreate the events stream with these settings if it disappears.
    ///
    /// ```no_run
    /// # async fn example(relay: herald::relay::Relay) {
    /// use herald::jetstream::StreamSettings;
    /// // Without it, a relay whose stream was deleted keeps failing until an
    /// // operator recreates it.
    /// let relay = relay.recreate_stream_with(StreamSettings::named("HERALD").replicas(3));
    /// # }
    /// ```
    pub fn recreate_stream_with(mut self, settings: StreamSettings) -> Relay {
        self.stream = Some(settings);
        self
    }
}
