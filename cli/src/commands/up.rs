//! `herald up` (everything in one process, for a laptop) and `herald demo`
//! (up, emit the sample events, wait for their emails, exit).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald::outbox::{self, NewEvent};
use herald::secret::SecretUrl;
use herald_entities::delivery::DeliveryState;
use sea_orm::TransactionTrait;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::relay::RelayArgs;
use super::worker::{WorkerArgs, engine};
use super::{Global, usage};

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

/// How `up` runs its own nats-server.
struct NatsSpec {
    bin: PathBuf,
    config: PathBuf,
    port: u16,
    url: String,
}

impl NatsSpec {
    /// Start it and wait until it answers.
    async fn start(&self) -> Result<tokio::process::Child> {
        std::fs::create_dir_all(".herald").context("cannot create .herald/")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(".herald/nats.log")
            .context("cannot open .herald/nats.log")?;
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (run scripts/setup.sh or set HERALD_NATS_SERVER_BIN)",
                    self.bin.display()
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers(&self.url).await {
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!(
                    "{} exited at start ({status}); see .herald/nats.log",
                    self.bin.display()
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "started {} but it does not answer at {}; see .herald/nats.log",
                    self.bin.display(),
                    self.url
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(url = %self.url, bin = %self.bin.display(), "started nats-server");
        Ok(child)
    }
}

/// Keep `up`'s nats-server running until `stop`: a child that dies is
/// started again (its store is on disk); if that fails, or it keeps dying,
/// everything stops and `up` exits 1 saying so (`failed` holds why).
async fn supervise_nats(
    spec: NatsSpec,
    mut child: tokio::process::Child,
    stop: CancellationToken,
    failed: Arc<Mutex<Option<String>>>,
) {
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = stop.cancelled() => {
                terminate(child).await;
                return;
            }
        };
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
        if restarts.len() >= 3 {
            give_up(
                &failed,
                &stop,
                format!(
                    "nats-server exited ({status}) for the 4th time within a minute; see .herald/nats.log"
                ),
            );
            return;
        }
        tracing::error!(%status, "nats-server exited; starting it again");
        restarts.push(Instant::now());
        match spec.start().await {
            Ok(c) => child = c,
            Err(e) => {
                give_up(
                    &failed,
                    &stop,
                    format!("nats-server exited ({status}) and could not be started again: {e:#}"),
                );
                return;
            }
        }
    }
}

fn give_up(failed: &Mutex<Option<String>>, stop: &CancellationToken, reason: String) {
    tracing::error!(%reason, "stopping");
    if let Ok(mut f) = failed.lock() {
        *f = Some(reason);
    }
    stop.cancel();
}

/// SIGTERM (nats-server flushes its store), then SIGKILL after 10 s.
async fn terminate(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Start `nats-server -c CONFIG -p PORT` unless a server answers at the URL.
async fn ensure_nats(
    g: &Global,
    config: &Path,
) -> Result<Option<(NatsSpec, tokio::process::Child)>> {
    let first = g
        .nats_url
        .expose()
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if answers(&first).await {
        return Ok(None);
    }
    let url = url::Url::parse(&first).map_err(|e| {
        usage(format!(
            "invalid --nats-url {}: {e}",
            herald::secret::redact_url(&first)
        ))
    })?;
    if !config.exists() {
        return Err(usage(format!(
            "no NATS server answers at {} and {} does not exist to start one",
            herald::secret::redact_url(&first),
            config.display()
        )));
    }
    let spec = NatsSpec {
        bin: nats_binary(),
        config: config.to_path_buf(),
        port: url.port().unwrap_or(4222),
        url: first,
    };
    let child = spec.start().await?;
    Ok(Some((spec, child)))
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
    // Configuration first (workflows, SMTP URL, database), then servers.
    let engine = engine(
        g,
        smtp,
        herald::db::Pool::Warm(cmd.worker.db_connections),
        "herald up",
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
    let smtp = g.smtp_or_capture();
    let running = start(g, &cmd.up, &smtp, CancellationToken::new()).await?;
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
        let published = herald::outbox::backlog(&db).await?.pending == 0;
        if published && drained(&running.js, g).await {
            break;
        }
        if running.stop.is_cancelled() {
            running.stop().await?;
            anyhow::bail!("the demo stopped before its emails were processed");
        }
        if started.elapsed() > cmd.timeout {
            running.stop().await?;
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
    running.stop().await?;
    println!("demo: {sent} email(s) sent, {skipped} skipped, {dead} dead-lettered, to {smtp}");
    if let Some(dir) = smtp.expose().strip_prefix("file://") {
        println!("demo: open the .eml files in {dir}");
    }
    Ok(if dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
