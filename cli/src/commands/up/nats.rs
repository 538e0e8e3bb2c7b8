//! The nats-server child of `up`: found, started when none answers,
//! supervised, terminated with the command.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::commands::{Global, usage};

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

/// The last fatal or error line nats-server wrote (e.g. a port in use),
/// without its timestamp, so the reason reaches the terminal. A bad config
/// file is reported before logging starts, as `nats-server: FILE:LINE:COL: ...`.
fn last_error(log: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("[FTL]") || l.contains("[ERR]") || l.starts_with("nats-server: "))?;
    let reason = match line.find("[FTL]").or_else(|| line.find("[ERR]")) {
        Some(at) => &line[at + 5..],
        None => line.trim_start_matches("nats-server: "),
    };
    Some(reason.trim().to_string())
}

/// How `up` runs its own nats-server.
pub(super) struct NatsSpec {
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
                    "{} exited at start ({status}){}; see .herald/nats.log",
                    self.bin.display(),
                    last_error(".herald/nats.log")
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
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
pub(super) async fn supervise_nats(
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
pub(super) async fn ensure_nats(
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
