use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{Global, usage};

#[derive(Args, Debug)]
pub struct TraceCmd {
    /// The event id `herald emit` (or enqueue) returned.
    pub event_id: herald::EventId,
    /// Print JSON (keys: event_id, outbox, deliveries, dead_letters).
    #[arg(long)]
    pub json: bool,
}

/// Prints the event's life (as JSON with --json); exit 2 when Herald knows nothing of it.
pub async fn run(g: &Global, cmd: TraceCmd) -> Result<ExitCode> {
    let db = super::open_existing_db(g, "herald trace").await?;
    herald::db::migrate(&db).await?;
    let t = herald::trace::trace(&db, cmd.event_id).await?;
    if t.outbox.is_none() && t.deliveries.is_empty() && t.dead_letters.is_empty() {
        return Err(usage(format!(
            "no event {} in the outbox, the ledger or the dead letters",
            cmd.event_id
        )));
    }
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        print!("{}", super::text::render(&serde_json::to_value(&t)?));
    }
    Ok(ExitCode::SUCCESS)
}
