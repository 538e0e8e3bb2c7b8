//! `herald up` (everything in one process, for a laptop) and `herald demo`
//! (up, emit the sample events, wait for their emails, exit).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald::outbox::{self, NewEvent};
use herald::shutdown::{self, ShutdownTrigger};
use herald_entities::delivery::DeliveryState;
use sea_orm::TransactionTrait;

use super::relay::RelayArgs;
use super::worker::{WorkerArgs, engine};
use super::{Global, usage};

#[derive(Args, Debug)]
pub struct UpCmd {
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Serve /healthz, /readyz and /metrics on this address.
    #[arg(long, env = "HERALD_HTTP")]
    pub http: Option<SocketAddr>,
    /// Config of the nats-server started when none answers at --nats-url.
    #[arg(long, env = "HERALD_NATS_CONFIG", default_value = "nats.conf")]
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

/// A nats-server child: stopped with `up`, and killed if `up` fails first.
struct NatsChild(tokio::process::Child);

impl NatsChild {
    /// SIGTERM (nats-server flushes its store), then SIGKILL after 10 s.
    async fn stop(mut self) {
        if let Some(pid) = self.0.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), self.0.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.0.kill().await;
    }
}

/// nats-server to start: HERALD_NATS_SERVER_BIN, the project-local install of
/// scripts/setup.sh, else `nats-server` on PATH.
fn nats_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HERALD_NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let local = Path::new(".tools/nats/bin/nats-server");
    if local.exists() {
        return local.to_path_buf();
    }
    PathBuf::from("nats-server")
}

async fn answers(url: &str) -> bool {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .is_ok()
}

/// Start `nats-server -c CONFIG -p PORT` unless a server answers at the URL.
async fn ensure_nats(g: &Global, config: &Path) -> Result<Option<NatsChild>> {
    let first = g
        .nats_url
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if answers(&first).await {
        return Ok(None);
    }
    let url =
        url::Url::parse(&first).map_err(|e| usage(format!("invalid --nats-url {first:?}: {e}")))?;
    let port = url.port().unwrap_or(4222);
    if !config.exists() {
        return Err(usage(format!(
            "no NATS server answers at {first} and {} does not exist to start one",
            config.display()
        )));
    }
    std::fs::create_dir_all(".herald").context("cannot create .herald/")?;
    let log =
        std::fs::File::create(".herald/nats.log").context("cannot create .herald/nats.log")?;
    let bin = nats_binary();
    let child = tokio::process::Command::new(&bin)
        .arg("-c")
        .arg(config)
        .arg("-p")
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (run scripts/setup.sh or set HERALD_NATS_SERVER_BIN)",
                bin.display()
            )
        })?;
    let child = NatsChild(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !answers(&first).await {
        if Instant::now() > deadline {
            anyhow::bail!(
                "started {} but it does not answer at {first}; see .herald/nats.log",
                bin.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(url = %first, bin = %bin.display(), "started nats-server");
    Ok(Some(child))
}

/// Everything `up` runs, until its trigger fires.
struct Running {
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    js: async_nats::jetstream::Context,
    nats: Option<NatsChild>,
}

async fn start(g: &Global, cmd: &UpCmd) -> Result<Running> {
    // Configuration first (workflows, SMTP URL, database), then servers.
    let engine = engine(
        g,
        herald::db::Pool::Warm(cmd.worker.db_connections),
        "herald up",
    )
    .await?;
    let (trigger, stop) = shutdown::channel();
    let metrics = super::metrics_for("up", cmd.http, &stop).await?;
    let nats = ensure_nats(g, &cmd.nats_config).await?;
    let relay = super::relay::build(g, &cmd.relay, metrics.clone()).await?;
    let client = herald::jetstream::connect(&g.nats_url, "herald-up").await?;
    let js = async_nats::jetstream::new(client);
    let (_worker, mut tasks) =
        super::worker::start(g, &cmd.worker, engine, js.clone(), metrics, stop.clone()).await?;
    tasks.push(tokio::spawn(async move { relay.run(stop).await }));
    Ok(Running {
        trigger,
        tasks,
        js,
        nats,
    })
}

impl Running {
    async fn stop(self) {
        self.trigger.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(n) = self.nats {
            n.stop().await;
        }
    }
}

pub async fn run_up(g: &Global, cmd: UpCmd) -> Result<ExitCode> {
    let running = start(g, &cmd).await?;
    println!(
        "herald is up: database {}, NATS {}, mail to {}, workflows in {}. Ctrl-C stops.",
        herald::db::redact(&g.database_url),
        g.nats_url,
        g.smtp_url,
        g.workflows.display()
    );
    let (signal_trigger, mut signal) = shutdown::channel();
    shutdown::on_signals(signal_trigger);
    signal.wait().await;
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Every `herald-*` consumer has nothing pending and nothing unacked.
async fn drained(js: &async_nats::jetstream::Context, g: &Global) -> bool {
    let Ok(stream) = js.get_stream(&g.stream).await else {
        return false;
    };
    match herald::status::consumers(&stream).await {
        Ok(cs) => !cs.is_empty() && cs.iter().all(|c| c.pending == 0 && c.ack_pending == 0),
        Err(_) => false,
    }
}

pub async fn run_demo(g: &Global, cmd: DemoCmd) -> Result<ExitCode> {
    let samples = g.workflows.join("samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .map_err(|e| usage(format!("cannot read {}: {e}", samples.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(usage(format!(
            "no SUBJECT.json samples in {}",
            samples.display()
        )));
    }
    let running = start(g, &cmd.up).await?;
    let db = super::open_db(g, herald::db::Pool::OnDemand, "herald demo").await?;
    let started = Instant::now();
    let mut emitted = Vec::with_capacity(files.len());
    for f in &files {
        let subject = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(f)?;
        let payload: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: invalid JSON: {e}", f.display())))?;
        let txn = db.begin().await?;
        let id = outbox::enqueue(&txn, NewEvent::new(subject.clone(), payload))
            .await
            .map_err(|e| usage(format!("{}: {e}", f.display())))?;
        txn.commit().await?;
        println!("emitted {subject} ({id})");
        emitted.push(id);
    }
    // Done when the relay published everything and every consumer acked it.
    loop {
        let published = herald::relay::store::backlog(&db, chrono::Utc::now())
            .await?
            .pending
            == 0;
        if published && drained(&running.js, g).await {
            break;
        }
        if started.elapsed() > cmd.timeout {
            running.stop().await;
            anyhow::bail!(
                "the demo's emails were not all processed within {:?}",
                cmd.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted from the ledger: what was recorded for the events emitted here.
    let (mut sent, mut skipped, mut dead) = (0, 0, 0);
    for id in &emitted {
        for d in herald::ledger::deliveries_of(&db, *id).await? {
            match d.state {
                DeliveryState::Sent => sent += 1,
                DeliveryState::Skipped => skipped += 1,
                DeliveryState::Dead => dead += 1,
                _ => {}
            }
        }
    }
    running.stop().await;
    println!(
        "demo: {sent} email(s) sent, {skipped} skipped, {dead} dead-lettered, to {}",
        g.smtp_url
    );
    if let Some(dir) = g.smtp_url.strip_prefix("file://") {
        println!("demo: open the .eml files in {dir}");
    }
    Ok(if dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
