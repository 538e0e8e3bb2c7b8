use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use herald::metrics::Metrics;
use herald::replay::{self, ReplayOptions, Start};
use herald::worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use super::worker::engine;
use super::{Global, usage};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["since", "from_seq"])))]
pub struct ReplayCmd {
    /// The workflow to run again over its subjects.
    #[arg(long)]
    pub workflow: String,
    /// Start at this time: RFC 3339 (2026-11-23T09:00:00Z) or a duration ago (1h, 30m).
    #[arg(long, value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Start at this stream sequence (e.g. the one an interrupted replay printed); the first is 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub from_seq: Option<u64>,
    /// Stop at messages published after this time (RFC 3339 or a duration ago).
    #[arg(long, value_parser = time_arg)]
    pub until: Option<DateTime<Utc>>,
    /// Print each email that would be sent (recipient, subject); send and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send again deliveries the ledger has as sent, with a new Message-ID suffix; the reason is recorded.
    #[arg(long)]
    pub resend: bool,
    /// Reason recorded with --resend.
    #[arg(long, default_value = "herald replay --resend", requires = "resend")]
    pub reason: String,
}

/// RFC 3339, or a duration meaning "that long ago".
pub fn time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = herald::duration::parse(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration (1h, 30m)"))?;
    let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
    Ok(Utc::now() - d)
}

pub async fn run(g: &Global, cmd: ReplayCmd) -> Result<ExitCode> {
    // The flags first: a usage error needs no server.
    let opts = options(&cmd)?;
    // A dry run sends nothing: no transport is needed for it.
    let smtp = match (cmd.dry_run, &g.smtp_url) {
        (true, None) => herald::secret::SecretUrl::new(super::DEV_SMTP_URL),
        _ => g.smtp_for("replay")?,
    };
    let engine = engine(
        g,
        &smtp,
        herald::db::Pool::OnDemand,
        "herald replay",
        super::worker::Database::MustExist,
    )
    .await?;
    let wf = engine.catalog.get(&cmd.workflow).cloned().ok_or_else(|| {
        usage(format!(
            "no workflow named {:?} in {}",
            cmd.workflow,
            g.workflows.display()
        ))
    })?;
    let client = herald::jetstream::connect(g.nats_url.expose(), "herald-replay").await?;
    let js = async_nats::jetstream::new(client);
    let mut worker = engine.worker(WorkerConfig::default(), Metrics::new());
    if cmd.resend {
        worker = worker.resending(cmd.reason.clone());
    }
    let stop = CancellationToken::new();
    super::cancel_on_signals(stop.clone());

    let mut progress = super::progress::Progress::new("replay", "seq");
    let mut done = 0u64;
    let on_progress = |p: &replay::Progress| {
        done += 1;
        if opts.dry_run {
            list_would_send(p);
        }
        progress.update(
            done,
            done + p.remaining,
            i64::try_from(p.seq).unwrap_or(i64::MAX),
        );
    };
    let summary = replay::replay(&worker, &js, &g.stream, &wf, &opts, on_progress, stop).await?;
    progress.finish();
    Ok(report(&summary, opts.dry_run))
}

/// The range and mode the flags ask for.
fn options(cmd: &ReplayCmd) -> Result<ReplayOptions> {
    let start = match (cmd.from_seq, cmd.since) {
        (Some(n), _) => Start::Seq(n),
        (None, Some(t)) => Start::Time(t),
        (None, None) => return Err(usage("give --since or --from-seq")),
    };
    if let (Some(since), Some(until)) = (cmd.since, cmd.until)
        && until < since
    {
        return Err(usage(format!(
            "--until {} is before --since {}: the range is empty",
            until.to_rfc3339(),
            since.to_rfc3339()
        )));
    }
    Ok(ReplayOptions::from(start)
        .until(cmd.until)
        .dry_run(cmd.dry_run))
}

/// A dry run's line per email a message would send.
fn list_would_send(p: &replay::Progress) {
    for w in &p.would_send {
        if w.to.is_empty() {
            println!("seq {}  {}", p.seq, w.preview);
        } else {
            println!(
                "seq {}  to {}  subject {:?}  ({})",
                p.seq, w.to, w.subject, w.preview
            );
        }
    }
}

/// The summary line, where to continue after an interruption, and the exit
/// code: 1 when interrupted or when any delivery failed.
fn report(summary: &replay::Summary, dry_run: bool) -> ExitCode {
    println!(
        "replayed {}, sent {}, skipped {}, failed {}{}",
        summary.replayed,
        summary.sent,
        summary.skipped,
        summary.failed,
        if dry_run {
            " (dry run: \"sent\" counts what would be sent; nothing was)"
        } else {
            ""
        }
    );
    if summary.interrupted {
        match summary.last_seq {
            Some(s) => eprintln!(
                "interrupted after sequence {s}: continue with --from-seq {}",
                s + 1
            ),
            None => eprintln!("interrupted before the first message"),
        }
        return ExitCode::from(1);
    }
    if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
