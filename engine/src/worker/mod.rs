//! The worker: one durable pull consumer per workflow. For each message it
//! renders the workflow's emails and, per recipient, claims the ledger row,
//! sends, records the result; only then does it acknowledge.
//!
//! - `event`: decoding a stream message (or a dead letter) into an `Event`;
//! - `process`: one event through one workflow, to a [`ProcessOutcome`];
//! - `delivery`: one recipient's email: claim → send → record;
//! - `decide`: the pure decision from delivery outcomes to a [`Disposition`];
//! - `settle`: the only code that acks, naks or terminates;
//! - `lanes`: order per aggregate, concurrency across aggregates;
//! - `consumer`: binding each workflow's consumer, the pull loop, the
//!   supervisor that restarts a consumer that stopped;
//! - `run`: all consumers plus the health watchers, until cancelled;
//! - `failpoint`: crash points for tests.
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use herald::{health::Health, metrics::Metrics, smtp::Transport, worker::{Worker, WorkerConfig}};
//! let catalog = herald::workflow::load("workflows/".as_ref())?;
//! let workflows = catalog.workflows.clone();
//! let transport = Transport::from_url("smtp://mail.example.org:587")?;
//! let worker = Arc::new(Worker::new(db, Arc::new(catalog), transport, Metrics::new(), WorkerConfig::default()));
//! let stop = tokio_util::sync::CancellationToken::new();
//! worker.run(js, workflows, Health::new(), stop).await; // until stop.cancel()
//! # Ok(()) }
//! ```
mod config;
mod consumer;
mod decide;
mod delivery;
pub(crate) mod event;
pub(crate) mod failpoint;
mod lanes;
mod limits;
mod names;
pub(crate) mod order;
mod process;
pub(crate) use process::recipient_keys;
mod reload;
mod run;
mod schedule;
mod settle;

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};

use crate::ledger;

use crate::metrics::Metrics;
use crate::smtp::Transport;
use crate::workflow::{Catalog, Workflow};

pub use config::WorkerConfig;
pub use decide::Disposition;
pub(crate) use event::Event;
pub use names::{consumer_name, message_id};
pub use process::ProcessOutcome;
pub use reload::{ReloadError, Reloaded};
pub use schedule::{Scheduled, scheduled};

/// Binding a workflow's durable consumer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error("JetStream consumer {consumer}: {detail}")]
    Consumer { consumer: String, detail: String },
}

/// Why a dead letter could not be re-driven.
///
/// ```no_run
/// # async fn example(worker: herald::worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::worker::RedriveError;
/// let dl = herald::dlq::get(worker.db(), 42).await?.ok_or("no dead letter 42")?;
/// match worker.redrive(&dl).await {
///     Err(RedriveError::UnknownWorkflow(name)) => eprintln!("{name} was removed; discard it"),
///     Err(e) => return Err(e.into()),
///     Ok(outcome) => println!("{} sent", outcome.sent),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedriveError {
    #[error("workflow {0:?} is not in the workflows directory")]
    UnknownWorkflow(String),
    #[error("database: {}", crate::db::describe(.0))]
    Database(#[from] DbErr),
}

/// A worker: the workflows' consumers, and everything processing a message
/// needs. Build it with [`Worker::new`], run it with [`Worker::run`].
///
/// ```no_run
/// # async fn f(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use herald::{health::Health, metrics::Metrics, smtp::Transport, worker::{Worker, WorkerConfig}};
/// let catalog = herald::workflow::load("workflows/".as_ref())?;
/// let workflows = catalog.workflows.clone();
/// let transport = Transport::from_url("smtp://mail.example.org:587")?;
/// let worker = Arc::new(Worker::new(db, Arc::new(catalog), transport, Metrics::new(), WorkerConfig::default()));
/// let stop = tokio_util::sync::CancellationToken::new();
/// worker.run(js, workflows, Health::new(), stop).await; // until stop.cancel()
/// # Ok(()) }
/// ```
pub struct Worker {
    pub(crate) db: DatabaseConnection,
    /// The loaded workflows and what derives from them; swapped whole by
    /// [`Worker::reload`].
    loaded: std::sync::RwLock<Arc<Loaded>>,
    /// Bumped by each reload that changed something: consumers take their
    /// workflow anew before their next message, `run` reconciles consumers.
    pub(crate) generation: tokio::sync::watch::Sender<u64>,
    pub(crate) transport: Transport,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cfg: WorkerConfig,
    /// `herald replay --resend`: send deliveries the ledger has as sent once
    /// more, recording this reason, with a distinct Message-ID.
    pub(crate) resend: Option<String>,
    /// The stream's first sequence (refreshed while running): an earlier
    /// event of an aggregate below it is gone and not waited for.
    pub(crate) first_stream_seq: std::sync::atomic::AtomicU64,
    /// When the stream was created, in Unix milliseconds (0 until known,
    /// refreshed while running): an event published before it went into a
    /// stream that was lost.
    pub(crate) stream_created_ms: std::sync::atomic::AtomicI64,
    /// Cancelled when the worker stops: long waits (rate limits) end early.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Group commit of the two ledger writes every email makes: its claim
    /// and its `sent` record (see `ledger::group`).
    pub(crate) new_claims: ledger::group::Writer<ledger::group::NewClaims>,
    pub(crate) sent_records: ledger::group::Writer<ledger::group::Sent>,
    /// Each email's suppression and unsubscribe check, asked together with
    /// the other deliveries in flight (see `suppression::lookup`).
    pub(crate) lookups: ledger::group::Writer<crate::suppression::lookup::Lookups>,
}

impl Worker {
    /// Assemble a worker from what the application already opened (database,
    /// loaded workflows, transport), so that it can run inside the
    /// application's process; nothing is consumed until [`Worker::run`].
    ///
    /// ```no_run
    /// # fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use herald::{metrics::Metrics, smtp::Transport, worker::{Worker, WorkerConfig}};
    /// let catalog = Arc::new(herald::workflow::load("workflows".as_ref())?);
    /// let transport = Transport::from_url("smtp://mail.example.org:587")?;
    /// let worker = Worker::new(db, catalog, transport, Metrics::new(), WorkerConfig::default().concurrency(32));
    /// # Ok(()) }
    /// ```
    pub fn new(
        db: DatabaseConnection,
        catalog: Arc<Catalog>,
        transport: Transport,
        metrics: Arc<Metrics>,
        cfg: WorkerConfig,
    ) -> Worker {
        let loaded = Loaded::new(&db, catalog, &transport);
        Worker {
            new_claims: ledger::group::Writer::new(db.clone()),
            sent_records: ledger::group::Writer::new(db.clone()),
            lookups: ledger::group::Writer::new(db.clone()),
            db,
            loaded: std::sync::RwLock::new(Arc::new(loaded)),
            generation: tokio::sync::watch::channel(0).0,
            transport,
            metrics,
            cfg,
            resend: None,
            first_stream_seq: std::sync::atomic::AtomicU64::new(0),
            stream_created_ms: std::sync::atomic::AtomicI64::new(0),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The workflows loaded now (a snapshot: a reload does not change it).
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// for wf in &worker.catalog().workflows {
    ///     println!("{} <- {:?}", wf.name, wf.subjects);
    /// }
    /// # }
    /// ```
    pub fn catalog(&self) -> Arc<Catalog> {
        self.loaded().catalog.clone()
    }

    /// The version (hash) of the loaded workflow set.
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// tracing::info!(version = %worker.version(), "workflows loaded");
    /// # }
    /// ```
    pub fn version(&self) -> String {
        self.loaded().catalog.version.clone()
    }

    /// The rate limits of the loaded set.
    pub(crate) fn limits(&self) -> Arc<limits::Limits> {
        self.loaded().limits.clone()
    }

    /// The loaded definition of workflow `name`, if it is loaded.
    pub(crate) fn workflow(&self, name: &str) -> Option<Workflow> {
        self.loaded().catalog.get(name).cloned()
    }

    /// Load the workflows directory again and, if the whole set is valid and
    /// its settings are met, make it the running set: new workflows get
    /// consumers, removed ones stop, changed templates are used from each
    /// consumer's next message. Anything wrong refuses the whole set; the
    /// running one goes on unchanged.
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// match worker.reload() {
    ///     Ok(r) => println!("now {} (added {:?}, removed {:?})", r.version, r.added, r.removed),
    ///     Err(e) => eprintln!("{e}"), // the running set goes on
    /// }
    /// # }
    /// ```
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let old = self.catalog();
        let new = crate::workflow::load(&old.dir).map_err(ReloadError::Invalid)?;
        let missing = self.missing_settings_of(&new);
        if !missing.is_empty() {
            return Err(ReloadError::Settings(missing));
        }
        let names = |c: &Catalog| -> std::collections::BTreeSet<String> {
            c.workflows.iter().map(|w| w.name.clone()).collect()
        };
        let (before, after) = (names(&old), names(&new));
        let report = Reloaded {
            version: new.version.clone(),
            previous: old.version.clone(),
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        };
        if report.version == report.previous {
            return Ok(report);
        }
        let loaded = Arc::new(Loaded::new(&self.db, Arc::new(new), &self.transport));
        match self.loaded.write() {
            Ok(mut l) => *l = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(report)
    }

    /// Workflows that need a setting the worker was not given: a category
    /// without one-click unsubscribe configured. Checked at start-up.
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// let missing = worker.missing_settings();
    /// if !missing.is_empty() {
    ///     eprintln!("{}", missing.join("\n"));
    ///     std::process::exit(2);
    /// }
    /// # }
    /// ```
    pub fn missing_settings(&self) -> Vec<String> {
        self.missing_settings_of(&self.catalog())
    }

    /// [`Worker::missing_settings`] of only these workflows (a worker
    /// started with `--workflow NAME`: the others do not run here).
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// let catalog = worker.catalog();
    /// let mine: Vec<_> = catalog.get("newsletter").into_iter().cloned().collect();
    /// assert!(worker.missing_settings_for(&mine).is_empty());
    /// # }
    /// ```
    pub fn missing_settings_for(&self, workflows: &[Workflow]) -> Vec<String> {
        self.missing_settings_in(workflows.iter())
    }

    fn missing_settings_of(&self, catalog: &Catalog) -> Vec<String> {
        self.missing_settings_in(catalog.workflows.iter())
    }

    fn missing_settings_in<'a>(
        &self,
        workflows: impl Iterator<Item = &'a Workflow>,
    ) -> Vec<String> {
        self.cfg.missing_settings(workflows)
    }

    /// The worker's metrics (what it sent, retried, dead-lettered so far).
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker) {
    /// let body = worker.metrics().render(); // Prometheus text for /metrics
    /// # }
    /// ```
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Its one-click unsubscribe settings, when configured.
    ///
    /// ```no_run
    /// # fn example(worker: &herald::worker::Worker, token: &str) {
    /// if let Some(links) = worker.unsubscribe() {
    ///     let who = links.verify(token);
    /// }
    /// # }
    /// ```
    pub fn unsubscribe(&self) -> Option<&crate::unsubscribe::Unsubscribe> {
        self.cfg.unsubscribe.as_ref()
    }

    /// The database it records in.
    ///
    /// ```no_run
    /// # async fn example(worker: &herald::worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
    /// let open = herald::dlq::list(worker.db(), None, false).await?;
    /// # Ok(()) }
    /// ```
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Send again, with a distinct Message-ID, deliveries the ledger has as
    /// sent (`herald replay --resend`), recording `reason`.
    ///
    /// ```no_run
    /// # fn example(db: sea_orm::DatabaseConnection, catalog: std::sync::Arc<herald::workflow::Catalog>, transport: herald::smtp::Transport) {
    /// use herald::{metrics::Metrics, worker::{Worker, WorkerConfig}};
    /// let worker = Worker::new(db, catalog, transport, Metrics::new(), WorkerConfig::default())
    ///     .resending("template fix, ticket #4812");
    /// # }
    /// ```
    pub fn resending(mut self, reason: impl Into<String>) -> Worker {
        self.resend = Some(reason.into());
        self
    }
}

/// The loaded set: the catalog and the rate limits its workflows declare.
struct Loaded {
    catalog: Arc<Catalog>,
    limits: Arc<limits::Limits>,
}

impl Loaded {
    fn new(db: &DatabaseConnection, catalog: Arc<Catalog>, transport: &Transport) -> Loaded {
        let limits = Arc::new(limits::Limits::new(db, &catalog, transport));
        Loaded { catalog, limits }
    }
}
