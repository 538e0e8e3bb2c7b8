use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Global;

#[derive(Args, Debug)]
pub struct StatusCmd {
    /// Print JSON (keys: outbox.pending, outbox.parked, deliveries.sent, deliveries.dead, dead_letters, stream, consumers).
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when everything answered; 1 (after printing what is known) when NATS did not.
pub async fn run(g: &Global, cmd: StatusCmd) -> Result<ExitCode> {
    let db = super::open_existing_db(g, "herald status").await?;
    herald::db::migrate(&db).await?;
    let mut status = herald::status::from_database(&db).await?;
    let nats = async {
        let client = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            herald::jetstream::connect(g.nats_url.expose(), "herald-status"),
        )
        .await
        .map_err(|_| format!("no NATS server answered at {}", g.nats_url))?
        .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        herald::status::add_stream(&mut status, &js, &g.stream)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = &nats {
        status.stream_error = Some(e.clone());
    }
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", herald::status::render_text(&status));
    }
    Ok(if nats.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
