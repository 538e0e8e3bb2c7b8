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
mod listen;
pub(crate) mod publish;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use backoff::backoff::Backoff;
use chrono::Utc;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{self, Check, Health};
use crate::jetstream::StreamSettings;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;

use crate::outbox::store;

/// Relay settings (flags of `herald relay`).
///
/// ```
/// let cfg = herald::relay::RelayConfig::default()
///     .batch_size(1000)
///     .poll_interval(std::time::Duration::from_millis(100));
/// assert_eq!(cfg.batch_size, 1000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Rows claimed and published per iteration.
    pub batch_size: u32,
    /// How long a claim is held; an unfinished claim is released after it (crash).
    pub lease: Duration,
    /// Fallback poll interval (PostgreSQL also wakes on NOTIFY).
    pub poll_interval: Duration,
    /// Publish attempts before a row is parked (a poison row), and the delay between them.
    pub retry: RetryPolicy,
    /// Prune published rows older than this (None: keep them).
    pub retention: Option<Duration>,
    /// This relay's identity in `lease_owner`.
    pub instance: String,
    /// Batches in flight at once: while one awaits its PubAcks or its
    /// published mark, the next is claimed and published. Each holds one
    /// database connection; no two hold rows of the same aggregate.
    pub in_flight: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            retry: RetryPolicy {
                max_attempts: 5,
                initial: Duration::from_millis(500),
                max: Duration::from_secs(60),
                multiplier: 2.0,
            },
            retention: None,
            instance: instance_id("relay"),
            in_flight: 2,
        }
    }
}

impl RelayConfig {
    /// Rows per iteration: larger batches publish more per round trip to
    /// the database; at least 1.
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().batch_size(2_000);
    /// assert_eq!(cfg.batch_size, 2_000);
    /// ```
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Batches in flight at once (at least 1).
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().in_flight(1);
    /// assert_eq!(cfg.in_flight, 1);
    /// ```
    pub fn in_flight(mut self, batches: usize) -> Self {
        self.in_flight = batches.max(1);
        self
    }

    /// How long a claim is held: after a crash, its rows are published again
    /// once it runs out.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().lease(Duration::from_secs(60));
    /// assert_eq!(cfg.lease, Duration::from_secs(60));
    /// ```
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How often an idle relay looks for rows (PostgreSQL's NOTIFY wakes it
    /// sooner).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().poll_interval(Duration::from_millis(50));
    /// assert_eq!(cfg.poll_interval, Duration::from_millis(50));
    /// ```
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Publish attempts of one row before it is parked.
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().max_attempts(10);
    /// assert_eq!(cfg.retry.max_attempts, 10);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.retry.max_attempts = n.max(1);
        self
    }

    /// Prune published rows older than this (`None`: keep them, e.g. to
    /// republish from the outbox later).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().retention(Some(Duration::from_secs(7 * 86_400)));
    /// assert!(cfg.retention.is_some());
    /// ```
    pub fn retention(mut self, d: Option<Duration>) -> Self {
        self.retention = d;
        self
    }
}

/// The JetStream context a relay publishes with. async-nats caps the acks in
/// flight (5,000 by default) and makes `publish` wait for a free slot; since
/// the relay issues a whole batch before awaiting any ack, a batch larger than
/// the cap would wait forever. The cap is therefore at least the batch size.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = herald::relay::RelayConfig::default().batch_size(10_000);
/// let client = herald::jetstream::connect("nats://localhost:4222", "billing-relay").await?;
/// let js = herald::relay::jetstream_context(client, cfg.batch_size);
/// # Ok(()) }
/// ```
pub fn jetstream_context(client: async_nats::Client, batch_size: u32) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .max_ack_inflight((batch_size as usize).max(5_000))
        .build(client)
}

/// `host-pid-xxxx`: unique per process, readable in the table.
pub(crate) fn instance_id(role: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &rnd[..6])
}

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
    busy: batch::Busy,
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
            busy: batch::Busy::default(),
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

    /// Publish until `stop` is cancelled (the batch in hand is finished).
    /// Errors of the database or NATS never end the loop: they are logged
    /// once per change of state, reported in `health`, and retried with
    /// backoff.
    ///
    /// ```no_run
    /// # async fn example(relay: herald::relay::Relay) {
    /// use tokio_util::sync::CancellationToken;
    /// let stop = CancellationToken::new();
    /// let on_signal = stop.clone();
    /// tokio::spawn(async move {
    ///     let _ = tokio::signal::ctrl_c().await;
    ///     on_signal.cancel();
    /// });
    /// relay.run(herald::health::Health::new(), stop).await;
    /// # }
    /// ```
    pub async fn run(&self, health: Health, stop: CancellationToken) {
        let tasks = self.spawn_watchers(&health, &stop);
        health.set("relay", Check::Starting("first batch".into()));
        // Batches in flight are concurrent futures of this task, not tasks:
        // what overlaps is waiting (acks, commits), not computing.
        futures::future::join_all(
            (0..self.cfg.in_flight.max(1)).map(|lane| self.drive(lane, &health, &stop)),
        )
        .await;
        tasks.wait().await;
        tracing::info!(
            published = self.metrics.outbox_published.get(),
            duplicates = self.metrics.outbox_duplicates.get(),
            parked = self.metrics.outbox_parked.get(),
            "relay stopped"
        );
    }

    /// One batch after another until `stop`; lane 0 also prunes and
    /// refreshes the gauges.
    async fn drive(&self, lane: usize, health: &Health, stop: &CancellationToken) {
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        let mut last_analyze: Option<Instant> = None;
        let mut last_gauges = Instant::now() - Duration::from_secs(3600);
        let mut failing: Option<String> = None;
        while !stop.is_cancelled() {
            let result = self.run_once().await;
            let wait = match &result {
                Ok(o) => {
                    if let Some(prev) = failing.take() {
                        tracing::info!(previous_error = %prev, "relay recovered");
                    }
                    health.set("relay", Check::Ok);
                    backoff.reset();
                    if lane == 0 {
                        self.analyze_on_backlog(o, &mut last_analyze).await;
                    }
                    self.batch_done(o)
                }
                Err(e) => self.batch_failed(e, &mut failing, health).await,
            };
            if lane == 0 && last_gauges.elapsed() > Duration::from_secs(5) {
                last_gauges = Instant::now();
                self.idle_checks(&result).await;
            }
            if let Some(ret) = self.cfg.retention
                && lane == 0
                && last_prune.elapsed() > Duration::from_secs(60)
            {
                last_prune = Instant::now();
                self.prune(ret).await;
            }
            if wait {
                let d = match &result {
                    Ok(_) => self.cfg.poll_interval,
                    Err(_) => backoff.next_backoff().unwrap_or(Duration::from_secs(5)),
                };
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = self.wake.notified(), if result.is_ok() => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }

    /// A full batch means a backlog: on PostgreSQL, refresh the outbox's
    /// statistics then, at most every 10 minutes, so that the claim and the
    /// order check keep their index plans through a burst.
    async fn analyze_on_backlog(&self, o: &BatchOutcome, last: &mut Option<Instant>) {
        let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(600));
        if self.db.get_database_backend() != DbBackend::Postgres
            || (o.claimed as u32) < self.cfg.batch_size
            || !due
        {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = store::refresh_statistics(&self.db).await {
            tracing::debug!(error = %e, "could not analyze the outbox");
        }
    }

    /// The tasks that run beside the loop until `stop`: the PostgreSQL
    /// wake-up, the database and NATS health watchers.
    fn spawn_watchers(&self, health: &Health, stop: &CancellationToken) -> TaskTracker {
        let tasks = TaskTracker::new();
        if self.db.get_database_backend() == DbBackend::Postgres {
            tasks.spawn(listen::wake_on_notify(
                self.db.clone(),
                self.wake.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(health::watch_database(
            self.db.clone(),
            health.clone(),
            stop.clone(),
        ));
        tasks.spawn(health::watch_nats(
            self.js.client(),
            health.clone(),
            stop.clone(),
        ));
        tasks.close();
        tasks
    }

    /// Log a batch that did something; whether to wait before the next.
    fn batch_done(&self, o: &BatchOutcome) -> bool {
        if o.claimed > 0 {
            tracing::debug!(
                claimed = o.claimed,
                published = o.published,
                duplicates = o.duplicates,
                failed = o.failed,
                parked = o.parked,
                claim_ms = o.claim_ms,
                publish_ms = o.publish_ms,
                mark_ms = o.mark_ms,
                "batch"
            );
        }
        // A full batch means more is waiting: go again at once.
        (o.claimed as u32) < self.cfg.batch_size
    }

    /// A failed batch: recreate a missing stream when this relay owns its
    /// settings, log once per change of error, report it. Always waits.
    async fn batch_failed(
        &self,
        e: &RelayError,
        failing: &mut Option<String>,
        health: &Health,
    ) -> bool {
        if let (RelayErrorKind::NoStream, Some(settings)) = (e.kind(), &self.stream) {
            match crate::jetstream::ensure_stream(&self.js, settings).await {
                Ok(_) => {
                    tracing::warn!(stream = %settings.name, "the events stream was missing: recreated it")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot recreate the events stream yet")
                }
            }
        }
        let msg = e.to_string();
        if failing.as_deref() != Some(msg.as_str()) {
            tracing::warn!(error = %msg, "relay cannot publish; retrying with backoff");
            *failing = Some(msg.clone());
        }
        health.set("relay", Check::Failing(msg));
        true
    }

    /// Every 5 s: a lost stream recreated while idle, the backlog gauges.
    async fn idle_checks(&self, result: &Result<BatchOutcome, RelayError>) {
        // An idle relay publishes nothing, so it would not notice a
        // lost stream (deleted, or gone with a cluster's storage)
        // until the next event; the workers' consumers need it now.
        if matches!(result, Ok(o) if o.claimed == 0) {
            self.recreate_lost_stream().await;
        }
        if let Ok(b) = store::backlog(&self.db, Utc::now()).await {
            self.metrics.outbox_backlog.set(b.pending as f64);
            self.metrics
                .outbox_oldest_pending_seconds
                .set(b.oldest_pending_age_seconds);
        }
    }

    /// Recreate the events stream if it is gone (with this relay's
    /// settings); quiet when it is there or NATS does not answer. Only the
    /// server's "stream not found" counts as gone: a request that timed out
    /// while a cluster elects a leader says nothing about the stream.
    async fn recreate_lost_stream(&self) {
        let Some(settings) = &self.stream else {
            return;
        };
        match self.js.get_stream(&settings.name).await {
            Err(e) if crate::jetstream::stream_missing(&e) => {}
            _ => return,
        }
        match crate::jetstream::open_stream(&self.js, settings).await {
            Ok(_) => {
                tracing::warn!(stream = %settings.name, "the events stream was missing: recreated it (`herald outbox republish --since` restores what it held)")
            }
            Err(e) => tracing::debug!(error = %e, "cannot recreate the events stream yet"),
        }
    }

    async fn prune(&self, older_than: Duration) -> u64 {
        crate::outbox::prune(&self.db, older_than)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %crate::db::describe(&e), "prune failed");
                0
            })
    }
}
