//! `--http ADDR` of `relay`, `worker` and `up`: the operations endpoints
//! (`/healthz`, `/readyz`, `/metrics`, in `ops.rs`) and the web console
//! (`console/` reads, `actions.rs` re-drives and discards, `views.rs`
//! renders), one axum router on one listener.
//!
//! The connection loop is hyper's, driven here rather than by `axum::serve`
//! so that a client that sends no request head is cut off
//! ([`HEADER_TIMEOUT`]) and request heads are bounded ([`MAX_HEAD`]); every
//! request then has [`REQUEST_TIMEOUT`] to be answered. Shutdown follows the
//! process's `CancellationToken`: stop accepting, let requests in flight
//! finish (at most [`DRAIN`]).
mod actions;
mod console;
mod ops;
mod unsubscribe;
mod views;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use herald::health::Health;
use herald::metrics::Metrics;
use herald::worker::Worker;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// A connection must send its request head within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A request must be answered within this (408 otherwise).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest request head (line and headers) read: a longer one is
/// refused (414 for a long URI, 431 for long headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest request body (the console's forms are a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;
/// On shutdown, requests in flight get this long to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// `--http-token`: the secret that enables the console's writes. Never
/// printed: Debug is redacted, and the log writer replaces it in every line.
#[derive(Clone)]
pub struct HttpToken(String);

impl HttpToken {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Equal to `given`, compared in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpToken({})", herald::secret::REDACTED)
    }
}

impl std::str::FromStr for HttpToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("the token must not be empty".into());
        }
        Ok(HttpToken(s.to_string()))
    }
}

/// `--http PORT` (on 127.0.0.1) or `--http IP:PORT`.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = s.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("expected PORT (listens on 127.0.0.1) or IP:PORT such as 127.0.0.1:9464, got {s:?}")
    })
}

/// What the console reads from, filled in as the command gets it: the
/// listener starts first (so `/healthz` answers while the rest connects).
pub struct Sources {
    db: OnceLock<sea_orm::DatabaseConnection>,
    js: OnceLock<async_nats::jetstream::Context>,
    worker: OnceLock<Arc<Worker>>,
    /// The events stream's name.
    pub stream: String,
    /// The workflows directory (a relay has no catalog: it loads from here).
    pub workflows: PathBuf,
}

impl Sources {
    pub fn new(stream: String, workflows: PathBuf) -> Arc<Sources> {
        Arc::new(Sources {
            db: OnceLock::new(),
            js: OnceLock::new(),
            worker: OnceLock::new(),
            stream,
            workflows,
        })
    }

    /// The database to read (the first one given is kept).
    pub fn set_db(&self, db: &sea_orm::DatabaseConnection) {
        let _ = self.db.set(db.clone());
    }

    /// The JetStream context for the stream and its consumers.
    pub fn set_jetstream(&self, js: &async_nats::jetstream::Context) {
        let _ = self.js.set(js.clone());
    }

    /// The worker that re-drives (only `worker` and `up` have one).
    pub fn set_worker(&self, worker: &Arc<Worker>) {
        let _ = self.worker.set(worker.clone());
    }
}

/// Everything a request handler may use.
pub struct State {
    /// `relay`, `worker` or `up`.
    pub role: String,
    pub metrics: Arc<Metrics>,
    pub health: Health,
    pub sources: Arc<Sources>,
    pub token: Option<HttpToken>,
    /// One console action at a time (a double click re-drives once).
    pub actions: Arc<tokio::sync::Mutex<()>>,
}

impl State {
    pub fn db(&self) -> Option<&sea_orm::DatabaseConnection> {
        self.sources.db.get()
    }

    pub fn jetstream(&self) -> Option<&async_nats::jetstream::Context> {
        self.sources.js.get()
    }

    pub fn worker(&self) -> Option<&Arc<Worker>> {
        self.sources.worker.get()
    }

    /// Writes are possible: a token is configured and this process has a
    /// worker to re-drive with.
    pub fn writes(&self) -> WriteMode {
        match (&self.token, self.worker()) {
            (None, _) => WriteMode::NoToken,
            (Some(_), None) => WriteMode::NoWorker,
            (Some(_), Some(_)) => WriteMode::Enabled,
        }
    }
}

/// Whether the console may change anything, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Enabled,
    /// No `--http-token`: read-only.
    NoToken,
    /// A relay: nothing to re-drive with.
    NoWorker,
}

pub type AppState = Arc<State>;

/// The whole application: operations endpoints, console pages, actions.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/", get(console::overview))
        .route("/search", get(console::search))
        .route("/events/{event_id}", get(console::event))
        .route("/dead-letters", get(console::dead_letters))
        .route("/dead-letters/{id}", get(console::dead_letter))
        .route("/dead-letters/{id}/redrive", post(actions::redrive))
        .route("/dead-letters/{id}/discard", post(actions::discard))
        .route(
            "/u/{token}",
            get(unsubscribe::confirm).post(unsubscribe::record),
        )
        .route("/reload", post(actions::reload))
        .fallback(console::not_found)
        .method_not_allowed_fallback(console::method_not_allowed)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Pages set their own policy (with their style nonce); everything
        // else may load nothing at all.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Not `no-referrer`: under it browsers send `Origin: null` with a
        // same-origin form POST, which the CSRF check (rightly) refuses.
        // Nothing leaks to other sites either way: the pages link nowhere else.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

/// Bind `addr` and serve until `stop`. A bind error is returned at once
/// (the caller makes it a configuration error); so is a template that does
/// not compile (a bug, caught by every test that starts a listener).
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    views::init()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| super::commands::usage(format!("cannot listen on --http {addr}: {e}")))?;
    let local = listener.local_addr()?;
    // Joined by the command once `stop` is cancelled (service::Observed),
    // so requests in flight finish before the process exits.
    let server = tokio::spawn(accept_loop(listener, router(state), stop));
    Ok((local, server))
}

async fn accept_loop(listener: TcpListener, app: Router, stop: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let sock = match accepted {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, go on.
                tracing::warn!(error = %e, "--http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = http.serve_connection(TokioIo::new(sock), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that hangs up or times out is not an error of ours.
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("--http: requests still running after {DRAIN:?} at shutdown were cut off");
    }
}
