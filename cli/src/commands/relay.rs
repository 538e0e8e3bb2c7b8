use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use herald::jetstream::StreamSettings;
use herald::metrics::Metrics;
use herald::relay::{Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use super::{Global, duration_arg};

/// Settings of the relay (also used by `herald up`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Relay options")]
pub struct RelayArgs {
    /// Rows claimed and published per batch.
    #[arg(long, env = "HERALD_RELAY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub relay_batch: u32,
    /// Batches in flight at once on PostgreSQL: while one awaits its acks and its published mark, the next is claimed and published (each holds a database connection). SQLite runs one batch at a time.
    #[arg(long, env = "HERALD_RELAY_IN_FLIGHT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub relay_in_flight: u32,
    /// Fallback poll interval for new rows (PostgreSQL also wakes on NOTIFY), e.g. 200ms, 1s.
    #[arg(long, env = "HERALD_RELAY_POLL", default_value = "200ms", value_parser = super::poll_arg)]
    pub relay_poll: Duration,
    /// How long a relay holds claimed rows before another relay may take them over (SQLite's leases; on PostgreSQL, how long a stalled batch may keep its rows locked).
    #[arg(long, env = "HERALD_RELAY_LEASE", default_value = "30s", value_parser = super::lease_arg)]
    pub relay_lease: Duration,
    /// Publish attempts of one row before it is parked (see `herald status`, `herald outbox retry`).
    #[arg(long, env = "HERALD_RELAY_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub relay_max_attempts: u32,
    /// Prune published rows older than this (e.g. 7d); off when not given.
    #[arg(long, env = "HERALD_OUTBOX_RETENTION", value_parser = duration_arg)]
    pub outbox_retention: Option<Duration>,
    /// JetStream duplicate window: a re-publish of the same event id within it is dropped.
    #[arg(long, env = "HERALD_DUPLICATE_WINDOW", default_value = "10m", value_parser = duration_arg)]
    pub duplicate_window: Duration,
    /// Stream replicas (clusters).
    #[arg(long, env = "HERALD_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
}

impl RelayArgs {
    /// Settings that are each valid but unsafe together: a batch that
    /// outlives its lease is published again by another relay, and only the
    /// stream's duplicate window drops the copies, so the lease must stay
    /// well inside it.
    pub fn check(&self) -> Result<()> {
        if self.relay_lease * 2 > self.duplicate_window {
            return Err(super::usage(format!(
                "--relay-lease {} must be at most half of --duplicate-window {}: rows a stalled relay still holds are published again by another after the lease, and only the duplicate window drops the copies",
                herald::duration::human(self.relay_lease),
                herald::duration::human(self.duplicate_window)
            )));
        }
        Ok(())
    }

    pub fn config(&self) -> RelayConfig {
        RelayConfig::default()
            .batch_size(self.relay_batch)
            .in_flight(self.relay_in_flight as usize)
            .lease(self.relay_lease)
            .poll_interval(self.relay_poll)
            .retention(self.outbox_retention)
            .max_attempts(self.relay_max_attempts)
    }

    pub fn stream(&self, g: &Global) -> StreamSettings {
        StreamSettings::named(g.stream.clone())
            .duplicate_window(self.duplicate_window)
            .replicas(self.stream_replicas)
    }
}

#[derive(Args, Debug)]
pub struct RelayCmd {
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub http: super::HttpArgs,
}

/// Build a relay: database, NATS, stream. Fails fast on configuration errors.
/// The console (when served) reads from its database and NATS unless it
/// was given others first.
pub async fn build(
    g: &Global,
    args: &RelayArgs,
    metrics: std::sync::Arc<Metrics>,
    console: &crate::http::Sources,
) -> Result<Relay> {
    // One connection per batch in flight (on PostgreSQL a batch holds its
    // rows in a transaction), the NOTIFY listener and the health check,
    // opened now: opening one mid-batch is slow.
    args.check()?;
    let pool = herald::db::Pool::Warm(args.relay_in_flight + 2);
    let db = super::open_db(g, pool, "herald relay").await?;
    herald::db::migrate(&db).await?;
    console.set_db(&db);
    let client = herald::jetstream::connect(g.nats_url.expose(), "herald-relay").await?;
    let js = herald::relay::jetstream_context(client, args.relay_batch);
    let stream = args.stream(g);
    herald::jetstream::ensure_stream(&js, &stream).await?;
    console.set_jetstream(&js);
    Ok(Relay::new(db, js, args.config(), metrics).recreate_stream_with(stream))
}

pub async fn run(g: &Global, cmd: RelayCmd) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    super::cancel_on_signals(stop.clone());
    let started = super::unless_stopped(&stop, async {
        let o = super::observe(g, "relay", &cmd.http, &stop).await?;
        let relay = build(g, &cmd.relay, o.metrics.clone(), &o.console).await?;
        Ok((o, relay))
    })
    .await?;
    let Some((o, relay)) = started else {
        return Ok(ExitCode::SUCCESS);
    };
    tracing::info!(stream = %g.stream, "relay started");
    relay.run(o.health, stop).await;
    super::service::Observed::http_stopped(o.server).await;
    Ok(ExitCode::SUCCESS)
}
