use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use herald::db::Pool;
use herald::metrics::Metrics;
use herald::secret::SecretUrl;
use herald::smtp::Transport;
use herald::worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use super::{Global, usage};

/// Settings of the worker (also used by `herald up`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Worker options")]
pub struct WorkerArgs {
    /// Run only these workflows (repeatable); default: all.
    #[arg(long = "workflow")]
    pub workflow: Vec<String>,
    /// Messages processed at once per workflow.
    #[arg(long, env = "HERALD_WORKER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// JetStream max_ack_pending of each workflow's consumer.
    #[arg(long, env = "HERALD_MAX_ACK_PENDING", default_value_t = 1000)]
    pub max_ack_pending: i64,
    /// JetStream ack wait: an unacknowledged message is redelivered after this (progress acks extend it). Also the ledger's claim lease: an email another worker claimed less than this ago is not sent meanwhile.
    #[arg(long, env = "HERALD_ACK_WAIT", default_value = "60s", value_parser = super::ack_wait_arg)]
    pub ack_wait: std::time::Duration,
    /// PostgreSQL connections the worker opens at start-up and keeps (shared by all its workflows).
    #[arg(long, env = "HERALD_DB_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_connections: u32,
    /// Public base URL of the --http listener, as recipients reach it (https://mail.example.org): one-click unsubscribe links of workflows with a `category` point there.
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Key that signs unsubscribe links (at least 16 characters; keep it stable: links in sent mail stay valid while it is). Never printed.
    #[arg(long, env = "HERALD_UNSUBSCRIBE_SECRET", hide_env_values = true)]
    pub unsubscribe_secret: Option<herald::secret::Secret>,
    /// Also offer unsubscribing by mail to this address (RFC 2369 mailto; you process those mails).
    #[arg(long, env = "HERALD_UNSUBSCRIBE_MAILTO")]
    pub unsubscribe_mailto: Option<String>,
}

impl WorkerArgs {
    /// One-click unsubscribe, when configured: both --public-url and
    /// --unsubscribe-secret, or neither.
    pub fn unsubscribe(&self) -> Result<Option<herald::unsubscribe::Unsubscribe>> {
        match (&self.public_url, &self.unsubscribe_secret) {
            (None, None) => Ok(None),
            (Some(url), Some(secret)) => herald::unsubscribe::Unsubscribe::new(
                secret.expose(),
                url,
                self.unsubscribe_mailto.clone(),
            )
            .map(Some)
            .map_err(usage),
            (Some(_), None) => Err(usage(
                "--public-url needs --unsubscribe-secret (the key that signs unsubscribe links)",
            )),
            (None, Some(_)) => Err(usage(
                "--unsubscribe-secret needs --public-url (where unsubscribe links point)",
            )),
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkerCmd {
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub http: super::HttpArgs,
}

/// What every command that sends email needs, checked in order: workflows
/// and SMTP URL (no I/O), then the database.
pub struct Engine {
    pub catalog: herald::workflow::Catalog,
    pub transport: Transport,
    pub db: sea_orm::DatabaseConnection,
}

/// Whether a command may start Herald in a database that has none yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// The services: create the tables (and the SQLite file) when missing.
    Create,
    /// Commands about what Herald has done (replay, dead letters): a
    /// database without Herald's tables is refused, not created (see
    /// [`super::connect::refuse_without_herald`]).
    MustExist,
}

pub async fn engine(
    g: &Global,
    smtp: &SecretUrl,
    pool: Pool,
    role: &str,
    database: Database,
) -> Result<Engine> {
    let existing = database == Database::MustExist;
    let catalog = herald::workflow::load(&g.workflows).map_err(usage)?;
    let transport = Transport::from_url(smtp.expose()).map_err(usage)?;
    herald::db::backend_of(g.database_url.expose())?;
    if existing {
        super::refuse_missing_sqlite(g)?;
    }
    let db = super::open_db(g, pool, role).await?;
    if existing {
        super::connect::refuse_without_herald(&db, g).await?;
    }
    herald::db::migrate(&db).await?;
    Ok(Engine {
        catalog,
        transport,
        db,
    })
}

impl Engine {
    pub fn worker(self, cfg: WorkerConfig, metrics: Arc<Metrics>) -> Worker {
        Worker::new(
            self.db,
            Arc::new(self.catalog),
            self.transport,
            metrics,
            cfg,
        )
    }
}

/// The selected workflows, checked against the catalog.
fn select(
    g: &Global,
    engine: &Engine,
    args: &WorkerArgs,
) -> Result<Vec<herald::workflow::Workflow>> {
    for name in &args.workflow {
        if engine.catalog.get(name).is_none() {
            return Err(usage(format!(
                "--workflow {name:?}: no such workflow in {}",
                g.workflows.display()
            )));
        }
    }
    let selected: Vec<_> = engine
        .catalog
        .workflows
        .iter()
        .filter(|w| args.workflow.is_empty() || args.workflow.contains(&w.name))
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(usage(format!("no workflows in {}", g.workflows.display())));
    }
    Ok(selected)
}

/// The worker of these settings, and the workflows it runs.
pub fn build(
    g: &Global,
    args: &WorkerArgs,
    engine: Engine,
    metrics: Arc<Metrics>,
) -> Result<(Arc<Worker>, Vec<herald::workflow::Workflow>)> {
    let selected = select(g, &engine, args)?;
    let mut cfg = WorkerConfig::default()
        .stream(g.stream.clone())
        .concurrency(args.concurrency as usize)
        .max_ack_pending(args.max_ack_pending)
        .ack_wait(args.ack_wait);
    if let Some(u) = args.unsubscribe()? {
        cfg = cfg.unsubscribe(u);
    }
    let worker = engine.worker(cfg, metrics);
    let missing = worker.missing_settings_for(&selected);
    if !missing.is_empty() {
        return Err(usage(missing.join("\n")));
    }
    Ok((Arc::new(worker), selected))
}

pub async fn run(g: &Global, cmd: WorkerCmd) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    super::cancel_on_signals(stop.clone());
    let started = super::unless_stopped(&stop, async {
        // Configuration first, all of it, before NATS.
        let smtp = g.smtp_for("worker")?;
        let engine = engine(
            g,
            &smtp,
            Pool::Warm(cmd.worker.db_connections),
            "herald worker",
            Database::Create,
        )
        .await?;
        select(g, &engine, &cmd.worker)?;
        let o = super::observe(g, "worker", &cmd.http, &stop).await?;
        o.console.set_db(&engine.db);
        // The worker first: a setting it lacks is reported before NATS is dialled.
        let (worker, workflows) = build(g, &cmd.worker, engine, o.metrics.clone())?;
        let js = super::jetstream_for(g, "herald-worker").await?;
        o.console.set_jetstream(&js);
        o.console.set_worker(&worker);
        Ok((o, worker, workflows, js))
    })
    .await?;
    let Some((o, worker, workflows, js)) = started else {
        return Ok(ExitCode::SUCCESS);
    };
    super::reload_on_sighup(worker.clone(), stop.clone());
    worker.clone().run(js, workflows, o.health, stop).await;
    super::service::Observed::http_stopped(o.server).await;
    tracing::info!(
        sent = worker.metrics().sent_total(),
        dead_letters = worker.metrics().dead_letters_total(),
        "worker stopped"
    );
    Ok(ExitCode::SUCCESS)
}
