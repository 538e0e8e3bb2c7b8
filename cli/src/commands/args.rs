//! The top-level clap definitions: `Cli`, the global options (help heading
//! apart from each command's own), `--color`, `--log-format`, `--http`.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, ValueEnum};
use herald::secret::SecretUrl;

use super::{Command, VERSION, usage};

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

/// The help heading of the global flags; also how `config/` knows they
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
