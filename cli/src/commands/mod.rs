//! Command-line interface: argument parsing (clap), configuration checks and
//! the mapping from errors to exit codes (0 ok, 1 runtime, 2 usage/config).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use herald::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

mod config;
mod dlq;
mod emit;
mod migrate;
mod outbox;
mod progress;
mod relay;
mod replay;
mod send_test;
mod shell;
mod status;
mod suppressions;
mod text;
mod trace;
mod up;
mod worker;
mod workflows;

/// An error that is the user's to fix (bad flag, bad input, bad workflow): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Wrap an error so that it exits with code 2.
pub fn usage(msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.to_string()))
}

pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<UsageError>()) {
        return ExitCode::from(2);
    }
    if let Some(herald::db::DbError::InvalidUrl { .. }) = err.downcast_ref::<herald::db::DbError>()
    {
        return ExitCode::from(2);
    }
    ExitCode::from(1)
}

/// `herald --version`: a test build (with failpoints) says so, and the test
/// suite refuses any other (its crash tests would wait in vain).
const VERSION: &str = if cfg!(feature = "failpoints") {
    concat!(env!("CARGO_PKG_VERSION"), " +failpoints")
} else {
    env!("CARGO_PKG_VERSION")
};

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version = VERSION,
    about = "Notification workflow engine: transactional outbox -> NATS JetStream -> YAML workflows -> email",
    long_about = "Herald sends the emails your application's state changes call for, never losing one and, \
in the normal course, never sending one twice.\n\n\
Your application inserts an outbox row in the same database transaction as its change \
(`herald emit` does this from the shell). `herald relay` publishes committed rows to NATS JetStream. \
`herald worker` runs the YAML workflows in --workflows: it renders each email, sends it over SMTP, \
records it in the delivery ledger and only then acknowledges the message.\n\n\
Every setting is a flag, an environment variable and a key of herald.toml (or --config FILE): \
flag > environment > file > default; `herald config` shows each value and where it came from.\n\
Exit codes: 0 success, 1 runtime failure (server unreachable, database error), 2 invalid usage, configuration or workflow."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the global flags; also how `config.rs` knows they
/// are top-level keys of herald.toml (other headings name sections).
pub const GLOBAL_HEADING: &str = "Global options";

/// Settings shared by every command. The URLs may hold passwords: they are
/// `SecretUrl`s (shown redacted everywhere) and their environment values
/// are never printed by `--help`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct Global {
    /// Configuration file [default: herald.toml in the working directory, when there is one]. Keys are the flags' names with `_`; see `herald config`.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Database holding the outbox, the delivery ledger and the dead letters (sqlite://… or postgres://…).
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db?mode=rwc",
        hide_env_values = true,
        global = true
    )]
    pub database_url: SecretUrl,
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "HERALD_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub nats_url: SecretUrl,
    /// Where email goes: smtp://[user:pass@]host:port (STARTTLS when offered), smtps://… (implicit TLS), file://DIR (one .eml per message). Required by the commands that send (worker, dlq retry, replay); `up` and `demo` default to file://./outbox-mail.
    #[arg(long, env = "HERALD_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<SecretUrl>,
    /// Directory of workflow YAML files (searched recursively).
    #[arg(
        long,
        env = "HERALD_WORKFLOWS",
        default_value = "workflows/",
        global = true
    )]
    pub workflows: PathBuf,
    /// JetStream stream holding the events (subjects events.>).
    #[arg(long, env = "HERALD_STREAM", default_value = "HERALD", global = true)]
    pub stream: String,
    /// Log filter (tracing EnvFilter syntax, e.g. `info,herald=debug`).
    #[arg(
        long,
        env = "HERALD_LOG",
        default_value = "warn,herald=info",
        global = true
    )]
    pub log: String,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Colour in logs and help: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, env = "HERALD_COLOR", value_enum, default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
}

/// The capture `up` and `demo` send to when no --smtp-url is given.
pub const DEV_SMTP_URL: &str = "file://./outbox-mail";

impl Global {
    /// The transport of a command that delivers email: an explicit
    /// --smtp-url is required, so that a forgotten setting cannot mark real
    /// deliveries sent into a local folder.
    pub fn smtp_for(&self, command: &str) -> Result<SecretUrl> {
        self.smtp_url.clone().ok_or_else(|| {
            usage(format!(
                "`herald {command}` sends email: give --smtp-url or HERALD_SMTP_URL (smtp://host:port, smtps://…, or file://DIR to capture to files)"
            ))
        })
    }

    /// The transport of `up` and `demo`: the file capture unless told otherwise.
    pub fn smtp_or_capture(&self) -> SecretUrl {
        self.smtp_url
            .clone()
            .unwrap_or_else(|| SecretUrl::new(DEV_SMTP_URL))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--color`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether to colour output going to a stream that `is_terminal` or
    /// not: `NO_COLOR` (set and not empty, https://no-color.org) turns
    /// `auto` off; an explicit `always` wins over it.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => is_terminal && !no_color(),
        }
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The same choice for clap's help and error messages.
pub fn clap_color(c: ColorWhen) -> clap::ColorChoice {
    match c {
        ColorWhen::Always => clap::ColorChoice::Always,
        ColorWhen::Never => clap::ColorChoice::Never,
        ColorWhen::Auto if no_color() => clap::ColorChoice::Never,
        ColorWhen::Auto => clap::ColorChoice::Auto,
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or upgrade Herald's tables (idempotent).
    Migrate,
    /// Insert one event into the outbox in its own transaction, as an application would; prints its id.
    Emit(emit::EmitArgs),
    /// Publish committed outbox rows to JetStream until stopped (SIGINT/SIGTERM: finish the batch, exit 0).
    Relay(relay::RelayCmd),
    /// Everything in one process for a laptop: migrate, start `nats-server -c nats.conf` if none answers, relay and worker. Ctrl-C stops.
    Up(up::UpCmd),
    /// Run `up` briefly: emit workflows/samples/SUBJECT.json events, wait until their emails are processed, say where they are, exit.
    Demo(up::DemoCmd),
    /// Consume workflows' subjects and send their emails until stopped (SIGINT/SIGTERM: finish in-flight messages, exit 0).
    Worker(worker::WorkerCmd),
    /// Validate, render or describe workflow definitions.
    #[command(subcommand)]
    Workflows(workflows::WorkflowsCmd),
    /// Send one workflow's email for a payload to ADDR only, through --smtp-url, marked `X-Herald-Test: 1`; no database, no NATS, no ledger.
    SendTest(send_test::SendTestArgs),
    /// Run a workflow again over a range of the stream; the ledger skips what was sent (unless --resend).
    Replay(replay::ReplayCmd),
    /// Inspect and re-drive dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Where is my email? One event's outbox row, publish, and each workflow's deliveries and dead letters.
    Trace(trace::TraceCmd),
    /// Outbox backlog and parked rows, stream state, consumer lag, delivery counts, dead letters.
    Status(status::StatusCmd),
    /// Outbox maintenance: prune published rows, re-drive parked rows.
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// Addresses that get no mail: hard bounces and manual entries.
    #[command(subcommand)]
    Suppressions(suppressions::SuppressionsCmd),
    /// One-click unsubscribes per address and category.
    #[command(subcommand)]
    Unsubscribes(suppressions::UnsubscribesCmd),
    /// Print the effective configuration (secrets redacted) and where each value came from: flag, env, file or default. Exit 2 when it is invalid.
    Config(config::ConfigCmd),
    /// Print a shell completion script: `herald completions bash > /etc/bash_completion.d/herald`.
    Completions(shell::CompletionsCmd),
    /// Print the man page (roff), or write one page per command with --out-dir.
    Man(shell::ManCmd),
}

impl Command {
    /// Runs until stopped (a service), rather than printing and exiting.
    fn is_service(&self) -> bool {
        matches!(
            self,
            Command::Relay(_) | Command::Worker(_) | Command::Up(_) | Command::Demo(_)
        )
    }

    /// The `--http-token` of a long-running command (a secret the log hides).
    fn http_token(&self) -> Option<&str> {
        let http = match self {
            Command::Relay(c) => &c.http,
            Command::Worker(c) => &c.http,
            Command::Up(c) => &c.http,
            Command::Demo(c) => &c.up.http,
            _ => return None,
        };
        http.http_token.as_ref().map(crate::http::HttpToken::expose)
    }
}

/// Connect to NATS as `name` and make sure the events stream exists: created
/// with default settings when missing, an existing one left as it is (the
/// relay applies its own settings, such as `--stream-replicas`).
pub async fn jetstream_for(g: &Global, name: &str) -> Result<async_nats::jetstream::Context> {
    let client = herald::jetstream::connect(g.nats_url.expose(), name).await?;
    let js = async_nats::jetstream::new(client);
    let settings = herald::jetstream::StreamSettings::named(g.stream.clone());
    herald::jetstream::open_stream(&js, &settings).await?;
    Ok(js)
}

/// Every database pool a command opened, closed in one place when the
/// command ends however it ends: PostgreSQL then sees orderly disconnects
/// instead of logging a reset for each connection (16 per worker restart).
static OPEN_POOLS: std::sync::Mutex<Vec<sea_orm::DatabaseConnection>> =
    std::sync::Mutex::new(Vec::new());

/// Open the database for this command (see [`herald::db::connect_with`]).
pub async fn open_db(
    g: &Global,
    pool: herald::db::Pool,
    role: &str,
) -> Result<sea_orm::DatabaseConnection> {
    let db = herald::db::connect_with(g.database_url.expose(), pool, role).await?;
    if let Ok(mut open) = OPEN_POOLS.lock() {
        open.push(db.clone());
    }
    Ok(db)
}

/// [`open_db`] for a command that only reads: a SQLite file that does not
/// exist is an error, not a new empty database (the default URL creates one,
/// which `up` and the services want; `herald status` run in the wrong
/// directory should say so, not report an empty Herald).
pub async fn open_existing_db(g: &Global, role: &str) -> Result<sea_orm::DatabaseConnection> {
    let url = g.database_url.expose();
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
    // Only where the URL would create the file (?mode=rwc) in a directory
    // that exists; otherwise connecting fails with its own hint.
    let creates = url.contains("mode=rwc");
    if let Some(p) = path
        && creates
        && !std::path::Path::new(p).exists()
        && std::path::Path::new(p)
            .parent()
            .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
    {
        return Err(anyhow::anyhow!(
            "no database at {p}: nothing has run here yet (`herald up`, `herald migrate` or a relay or worker creates it); check --database-url / HERALD_DATABASE_URL"
        ));
    }
    open_db(g, herald::db::Pool::OnDemand, role).await
}

/// Close what [`open_db`] opened; a pool still in use after 5 s is left to the exit.
async fn close_dbs() {
    let open: Vec<_> = OPEN_POOLS
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    for db in open {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), db.close()).await;
    }
}

/// `--http` and `--http-token` of the long-running commands.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "HTTP options")]
pub struct HttpArgs {
    /// Serve /healthz, /readyz, /metrics and the web console on this address: PORT (on 127.0.0.1) or IP:PORT (0.0.0.0:PORT exposes it to the network).
    #[arg(long, env = "HERALD_HTTP", value_name = "ADDR", value_parser = crate::http::listen_addr)]
    pub http: Option<std::net::SocketAddr>,
    /// Enables the console's re-drive and discard of dead letters (worker and up): each must carry this token. Without it the console is read-only. A secret: never printed.
    #[arg(
        long,
        env = "HERALD_HTTP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub http_token: Option<crate::http::HttpToken>,
}

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
            let bound = crate::http::serve(addr, state, stop.clone()).await?;
            listening = Some(bound);
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

/// Parse `500ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds).
pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    herald::duration::parse(s).map_err(|e| e.to_string())
}

/// Log output with every secret of the configured URLs replaced: Herald
/// never logs a URL unredacted, and this also covers what a dependency
/// might log at a verbose level a user asked for.
#[derive(Clone)]
struct RedactingStderr {
    secrets: std::sync::Arc<Vec<String>>,
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut text = String::from_utf8_lossy(buf).into_owned();
        for s in self.secrets.iter() {
            text = text.replace(s.as_str(), herald::secret::REDACTED);
        }
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn init_logging(global: &Global, http_token: Option<&str>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .map_err(|e| usage(format!("invalid --log filter {:?}: {e}", global.log)))?;
    let mut secrets: Vec<String> = [
        Some(&global.database_url),
        Some(&global.nats_url),
        global.smtp_url.as_ref(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|u| herald::secret::secrets_in(u.expose()))
    .chain(http_token.map(str::to_string))
    .collect();
    // Longest first: a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let writer = RedactingStderr {
        secrets: std::sync::Arc::new(secrets),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(
            global
                .color
                .enabled(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        );
    // A second init (tests calling in-process) is harmless, so its error is ignored.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(crate::json_log::ListsAsArrays::default())
            .try_init(),
    };
    Ok(())
}

/// `herald status | head` must end quietly when `head` has read enough, as
/// Unix tools do: the Rust runtime ignores SIGPIPE, which turns the closed
/// pipe into a panic inside `println!`. Restoring the default action ends
/// the process on it instead. Only for commands that print and exit: a
/// service keeps SIGPIPE ignored (its sockets report EPIPE as errors).
fn quiet_on_broken_pipe() {
    // SAFETY: called once at start-up, before any thread is spawned; it only
    // sets the disposition of one signal to its default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn try_main() -> Result<ExitCode> {
    let crate::config::Parsed { cli, loaded } =
        crate::config::parse_args(std::env::args_os().collect())?;
    if !cli.command.is_service() {
        quiet_on_broken_pipe();
    }
    init_logging(&cli.global, cli.command.http_token())?;
    let telemetry = crate::telemetry::Telemetry::init(&cli.command);
    // A panic is a bug: say so in the log (where operators look), with its
    // location. Herald catches panics per message and per consumer, so the
    // process goes on.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic (a bug in Herald: please report it)");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(cli, loaded));
    // After the work stopped (graceful shutdown included): the last spans.
    telemetry.shutdown();
    result
}

async fn run(cli: Cli, loaded: crate::config::Loaded) -> Result<ExitCode> {
    let result = dispatch(cli, loaded).await;
    close_dbs().await;
    result
}

async fn dispatch(cli: Cli, loaded: crate::config::Loaded) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Config(cmd) => config::run(&g, cmd, &loaded),
        Command::Completions(cmd) => shell::completions(cmd),
        Command::Man(cmd) => shell::man(cmd),
        Command::Migrate => migrate::run(&g).await,
        Command::Emit(args) => emit::run(&g, args).await,
        Command::Relay(cmd) => relay::run(&g, cmd).await,
        Command::Outbox(cmd) => outbox::run(&g, cmd).await,
        Command::Replay(cmd) => replay::run(&g, cmd).await,
        Command::Dlq(cmd) => dlq::run(&g, cmd).await,
        Command::Trace(cmd) => trace::run(&g, cmd).await,
        Command::Status(cmd) => status::run(&g, cmd).await,
        Command::Up(cmd) => up::run_up(&g, cmd).await,
        Command::Demo(cmd) => up::run_demo(&g, cmd).await,
        Command::Worker(cmd) => worker::run(&g, cmd).await,
        Command::Workflows(cmd) => workflows::run(&g, cmd).await,
        Command::SendTest(args) => send_test::run(&g, args).await,
        Command::Suppressions(cmd) => suppressions::run(&g, cmd).await,
        Command::Unsubscribes(cmd) => suppressions::run_unsubscribes(&g, cmd).await,
    }
}
