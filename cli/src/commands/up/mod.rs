//! `herald up` (everything in one process, for a laptop) and `herald demo`
//! (up, emit the sample events, wait for their emails, exit).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use herald::secret::SecretUrl;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Global;
use super::relay::RelayArgs;
use super::worker::{WorkerArgs, engine};

#[derive(Args, Debug)]
pub struct UpCmd {
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub http: super::HttpArgs,
    /// Config of the nats-server started when none answers at --nats-url.
    #[arg(
        long,
        env = "HERALD_NATS_CONFIG",
        default_value = "nats.conf",
        help_heading = "Up options"
    )]
    pub nats_config: PathBuf,
}

#[derive(Args, Debug)]
pub struct DemoCmd {
    #[command(flatten)]
    pub up: UpCmd,
    /// Give up waiting for the emails after this long.
    #[arg(long, default_value = "60s", value_parser = super::duration_arg)]
    pub timeout: Duration,
}
/// Everything `up` runs, until its token is cancelled.
struct Running {
    stop: CancellationToken,
    tasks: TaskTracker,
    js: async_nats::jetstream::Context,
    /// Why `up` stopped by itself (its nats-server could not be kept up).
    failed: Arc<Mutex<Option<String>>>,
    /// Where the console listens, when `--http` was given.
    http: Option<std::net::SocketAddr>,
}

/// On a laptop, one-click unsubscribe works without configuration: the
/// links point at `--http` (or 127.0.0.1 when there is none) and are signed
/// with a key kept in `.herald/unsubscribe.key`, so links of earlier runs
/// stay valid. Settings given explicitly win.
fn with_dev_unsubscribe(
    args: &WorkerArgs,
    http: Option<std::net::SocketAddr>,
) -> Result<WorkerArgs> {
    let mut args = args.clone();
    if args.public_url.is_some() || args.unsubscribe_secret.is_some() {
        return Ok(args);
    }
    let path = Path::new(".herald/unsubscribe.key");
    let key = match std::fs::read_to_string(path) {
        Ok(k) if k.trim().len() >= 16 => k.trim().to_string(),
        _ => {
            std::fs::create_dir_all(".herald").context("cannot create .herald/")?;
            let k = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            write_private(path, &k).with_context(|| format!("cannot write {}", path.display()))?;
            k
        }
    };
    args.unsubscribe_secret = Some(herald::secret::Secret::new(key));
    args.public_url = Some(match http {
        Some(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Some(a) => format!("http://{a}"),
        None => "http://127.0.0.1".into(),
    });
    Ok(args)
}

/// Write a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}

async fn start(
    g: &Global,
    cmd: &UpCmd,
    smtp: &SecretUrl,
    stop: CancellationToken,
) -> Result<Running> {
    // Configuration first (settings, workflows, SMTP URL, database), then servers.
    cmd.relay.check()?;
    let engine = engine(
        g,
        smtp,
        herald::db::Pool::Warm(cmd.worker.db_connections),
        "herald up",
        super::worker::Database::Create,
    )
    .await?;
    let o = super::observe(g, "up", &cmd.http, &stop).await?;
    // The console reads through the worker's pool, not the relay's four.
    o.console.set_db(&engine.db);
    let tasks = TaskTracker::new();
    let failed = Arc::new(Mutex::new(None));
    if let Some((spec, child)) = ensure_nats(g, &cmd.nats_config).await? {
        tasks.spawn(supervise_nats(spec, child, stop.clone(), failed.clone()));
    }
    let relay = super::relay::build(g, &cmd.relay, o.metrics.clone(), &o.console).await?;
    let client = herald::jetstream::connect(g.nats_url.expose(), "herald-up").await?;
    let js = async_nats::jetstream::new(client);
    let worker_args = with_dev_unsubscribe(&cmd.worker, cmd.http.http)?;
    let (worker, workflows) = super::worker::build(g, &worker_args, engine, o.metrics)?;
    o.console.set_worker(&worker);
    super::reload_on_sighup(worker.clone(), stop.clone());
    tasks.spawn(worker.run(js.clone(), workflows, o.health.clone(), stop.clone()));
    let (health, relay_stop) = (o.health, stop.clone());
    tasks.spawn(async move { relay.run(health, relay_stop).await });
    tasks.spawn(super::service::Observed::http_stopped(o.server));
    tasks.close();
    Ok(Running {
        stop,
        tasks,
        js,
        failed,
        http: o.http,
    })
}

impl Running {
    /// Stop everything (the nats-server child last) and say why if `up`
    /// stopped by itself.
    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.tasks.wait().await;
        match self.failed.lock().ok().and_then(|f| f.clone()) {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }
}

pub async fn run_up(g: &Global, cmd: UpCmd) -> Result<ExitCode> {
    let smtp = g.smtp_or_capture();
    let stop = CancellationToken::new();
    super::cancel_on_signals(stop.clone());
    let Some(running) = super::unless_stopped(&stop, start(g, &cmd, &smtp, stop.clone())).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "herald is up: database {}, NATS {}, mail to {}, workflows in {}. Ctrl-C stops.",
        g.database_url,
        g.nats_url,
        smtp,
        g.workflows.display()
    );
    if let Some(addr) = running.http {
        println!("console: http://{addr}/");
    }
    running.stop.cancelled().await;
    running.stop().await?;
    Ok(ExitCode::SUCCESS)
}

mod demo;
mod nats;

pub use demo::run_demo;
use nats::{ensure_nats, supervise_nats};
