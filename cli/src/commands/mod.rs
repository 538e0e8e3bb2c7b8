//! Command-line interface: argument parsing (clap), configuration checks and
//! the mapping from errors to exit codes (0 ok, 1 runtime, 2 usage/config).
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

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

mod args;
mod connect;
mod logging;
mod service;

pub use args::{
    Cli, ColorWhen, DEV_SMTP_URL, GLOBAL_HEADING, Global, HttpArgs, LogFormat, clap_color,
};
use connect::close_dbs;
pub use connect::{jetstream_for, open_db, open_existing_db, refuse_missing_sqlite};
use logging::init_logging;
pub use service::{
    cancel_on_signals, describe_reload, log_reload, observe, reload_on_sighup, unless_stopped,
};

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

/// Parse `500ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds).
pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    herald::duration::parse(s).map_err(|e| e.to_string())
}

/// A relay's lease: at least 1s. A batch publishes only while under 90% of
/// its lease, so a shorter one (0s) would leave every batch unpublished.
pub fn lease_arg(s: &str) -> Result<std::time::Duration, String> {
    at_least(
        s,
        std::time::Duration::from_secs(1),
        "1s",
        "a batch publishes only within 90% of its lease",
    )
}

/// The worker's ack wait: at least 1s. It is also the ledger's claim lease,
/// and a claim that is stale at once would let two workers send one email.
pub fn ack_wait_arg(s: &str) -> Result<std::time::Duration, String> {
    at_least(
        s,
        std::time::Duration::from_secs(1),
        "1s",
        "it is also the lease of a delivery's claim",
    )
}

/// The relay's poll interval: at least 10ms (0ms is a busy loop).
pub fn poll_arg(s: &str) -> Result<std::time::Duration, String> {
    at_least(
        s,
        std::time::Duration::from_millis(10),
        "10ms",
        "shorter is a busy loop",
    )
}

fn at_least(
    s: &str,
    min: std::time::Duration,
    shown: &str,
    why: &str,
) -> Result<std::time::Duration, String> {
    let d = duration_arg(s)?;
    if d < min {
        return Err(format!("{s:?} is too short: at least {shown} ({why})"));
    }
    Ok(d)
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
