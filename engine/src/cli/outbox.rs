use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use super::{Global, duration_arg};

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
}

pub async fn run(g: &Global, cmd: OutboxCmd) -> Result<ExitCode> {
    let db = herald::db::connect(&g.database_url).await?;
    herald::db::migrate(&db).await?;
    match cmd {
        OutboxCmd::Prune { older_than } => {
            let n = herald::relay::prune(&db, older_than).await?;
            println!("pruned {n} published row(s)");
        }
        OutboxCmd::Retry { seq } => {
            let n = herald::relay::store::unpark(&db, seq).await?;
            println!("re-queued {n} parked row(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
