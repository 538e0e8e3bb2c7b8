//! What the long-running commands share: metrics, health and `--http`;
//! start-up raced against signals; reload on SIGHUP.

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::{Global, HttpArgs};

/// What a long-running command (relay, worker, up) reports: its metrics
/// (labelled with its role) and its health, served on `--http ADDR` until
/// `stop` when given, with the console, which reads from `console` once the
/// command has opened its database and NATS.
pub struct Observed {
    pub metrics: std::sync::Arc<herald::metrics::Metrics>,
    pub health: herald::health::Health,
    pub console: std::sync::Arc<crate::http::Sources>,
    /// Where `--http` listens, when it does.
    pub http: Option<std::net::SocketAddr>,
    /// The `--http` server's task: it ends once `stop` is cancelled and
    /// the requests in flight are answered (see [`Observed::http_stopped`]).
    pub server: Option<tokio::task::JoinHandle<()>>,
}

impl Observed {
    /// Wait for the `--http` server to finish its requests in flight after
    /// `stop` (bounded by its own drain time), so none is cut by the exit.
    pub async fn http_stopped(server: Option<tokio::task::JoinHandle<()>>) {
        if let Some(s) = server {
            let _ = s.await;
        }
    }
}

pub async fn observe(
    g: &Global,
    role: &str,
    http: &HttpArgs,
    stop: &CancellationToken,
) -> Result<Observed> {
    let metrics = herald::metrics::Metrics::new();
    metrics.set_label("role", role);
    let health = herald::health::Health::new();
    let console = crate::http::Sources::new(g.stream.clone(), g.workflows.clone());
    let mut listening = None;
    let mut server = None;
    match http.http {
        Some(addr) => {
            let state = std::sync::Arc::new(crate::http::State {
                role: role.to_string(),
                metrics: metrics.clone(),
                health: health.clone(),
                sources: console.clone(),
                token: http.http_token.clone(),
                actions: Default::default(),
            });
            let (bound, task) = crate::http::serve(addr, state, stop.clone()).await?;
            listening = Some(bound);
            server = Some(task);
            tracing::info!(%bound, "serving the console (/) and /healthz /readyz /metrics");
            match (&http.http_token, bound.ip().is_loopback()) {
                (None, false) => tracing::warn!(%bound,
                    "the console is reachable from the network without --http-token: read-only, but it shows payloads and addresses"),
                (Some(_), false) => tracing::warn!(%bound,
                    "the console's token travels over plain HTTP on a network address: put it behind TLS"),
                _ => {}
            }
            if http.http_token.is_some() && role == "relay" {
                tracing::warn!(
                    "--http-token has no effect on a relay: its console is read-only (re-drive needs a worker)"
                );
            }
        }
        None if http.http_token.is_some() => {
            tracing::warn!("--http-token is set but --http is not: no console is served");
        }
        None => {}
    }
    Ok(Observed {
        metrics,
        health,
        console,
        http: listening,
        server,
    })
}

/// Start-up (database, NATS, the stream) raced against SIGINT/SIGTERM,
/// which [`cancel_on_signals`] turns into `stop` from the first line: a
/// service asked to stop while it waits for a cluster to elect a leader
/// stops at once and exits 0, as it does once running, instead of dying
/// of the signal. `None` when it was stopped.
pub async fn unless_stopped<T>(
    stop: &CancellationToken,
    start: impl std::future::Future<Output = Result<T>>,
) -> Result<Option<T>> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => {
            tracing::info!("stopped during start-up");
            Ok(None)
        }
        r = start => r.map(Some),
    }
}

/// Cancel `token` on the first SIGINT or SIGTERM (finish in-flight work and
/// stop); a second signal is left to its default action.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work"),
                _ = int.recv() => tracing::info!("SIGINT: finishing in-flight work"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        token.cancel();
    });
}

/// SIGHUP: load the workflows directory again (`Worker::reload`); a set
/// with problems is refused with each problem logged, the running set goes on.
pub fn reload_on_sighup(worker: std::sync::Arc<herald::worker::Worker>, stop: CancellationToken) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            tracing::info!("SIGHUP: loading the workflows again");
            let w = worker.clone();
            match tokio::task::spawn_blocking(move || w.reload()).await {
                Ok(r) => log_reload(&r),
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (worker, stop);
}

/// One log record per reload, saying what changed or every problem.
pub fn log_reload(r: &Result<herald::worker::Reloaded, herald::worker::ReloadError>) {
    match r {
        Ok(r) if r.version == r.previous => {
            tracing::info!(version = %r.version, "reload: the workflows are unchanged")
        }
        Ok(r) => tracing::info!(version = %r.version, previous = %r.previous,
            added = %herald::logfields::list(&r.added), removed = %herald::logfields::list(&r.removed), "reload: workflows loaded"),
        Err(herald::worker::ReloadError::Invalid(problems)) => {
            for p in &problems.0 {
                tracing::error!(problem = %p, "reload refused");
            }
            tracing::error!(
                problems = problems.0.len(),
                "reload refused: the running workflows are unchanged"
            );
        }
        Err(e) => tracing::error!(error = %e, "reload refused"),
    }
}

/// The answer to `POST /reload`.
pub fn describe_reload(r: &herald::worker::Reloaded) -> String {
    if r.version == r.previous {
        return format!("unchanged: version {}\n", r.version);
    }
    format!(
        "reloaded: version {} (was {}); added: {}; removed: {}\n",
        r.version,
        r.previous,
        if r.added.is_empty() {
            "none".into()
        } else {
            r.added.join(", ")
        },
        if r.removed.is_empty() {
            "none".into()
        } else {
            r.removed.join(", ")
        },
    )
}
