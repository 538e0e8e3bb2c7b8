use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use herald::outbox::Republish;

use super::{Global, duration_arg, usage};

#[derive(Subcommand, Debug)]
pub enum OutboxCmd {
    /// Delete published rows older than a given age, in small batches.
    Prune {
        /// e.g. 7d, 12h.
        #[arg(long, value_parser = duration_arg)]
        older_than: Duration,
    },
    /// Re-drive parked rows (publishing gave up on them): all, or one by --seq.
    Retry {
        #[arg(long)]
        seq: Option<i64>,
    },
    /// Publish again rows already published in a time range (the outbox keeps them until pruned),
    /// e.g. after JetStream lost acknowledged messages; the ledger prevents duplicate email.
    Republish {
        /// RFC 3339 time or a duration ago (e.g. 2h).
        #[arg(long, value_parser = super::replay::time_arg)]
        since: chrono::DateTime<chrono::Utc>,
        /// RFC 3339 time or a duration ago [default: now].
        #[arg(long, value_parser = super::replay::time_arg)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only subjects matching this NATS filter (e.g. events.vault.>).
        #[arg(long)]
        subject: Option<String>,
        /// Rows read and published per round (memory stays bounded however long the range).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
    },
}

pub async fn run(g: &Global, cmd: OutboxCmd) -> Result<ExitCode> {
    let db = super::open_existing_db(g, "herald outbox").await?;
    herald::db::migrate(&db).await?;
    match cmd {
        OutboxCmd::Prune { older_than } => {
            let n = herald::outbox::prune(&db, older_than).await?;
            println!("pruned {n} published row(s)");
        }
        OutboxCmd::Retry { seq } => {
            let n = herald::outbox::unpark(&db, seq).await?;
            println!("re-queued {n} parked row(s)");
        }
        OutboxCmd::Republish {
            since,
            until,
            subject,
            batch,
        } => {
            let mut range = Republish::since(since).batch(batch);
            if let Some(f) = subject {
                herald::subject::validate_filter(&f)
                    .map_err(|e| usage(format!("--subject {f:?}: {e}")))?;
                range = range.subject(f);
            }
            if let Some(u) = until {
                range = range.until(u);
            }
            let js = super::jetstream_for(g, "herald-republish").await?;
            let mut progress = super::progress::Progress::new("republish", "seq");
            let done = herald::outbox::republish(&db, &js, &range, |p| {
                progress.update(p.read, p.total, p.seq)
            })
            .await?;
            progress.finish();
            println!(
                "republished {} row(s): {} stored again, {} still held by the stream (dropped as duplicates)",
                done.rows, done.published, done.duplicates
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
