//! `herald demo`: up, emit the sample events, wait for their emails, exit.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use herald::outbox::{self, NewEvent};
use herald_entities::delivery::DeliveryState;
use sea_orm::TransactionTrait;
use tokio_util::sync::CancellationToken;

use crate::commands::{Global, usage};

use super::{DemoCmd, start};

/// Every `herald-*` consumer has nothing pending and nothing unacked.
async fn drained(js: &async_nats::jetstream::Context, g: &Global) -> bool {
    let Ok(stream) = js.get_stream(&g.stream).await else {
        return false;
    };
    match herald::status::consumers(&stream).await {
        Ok(cs) => !cs.is_empty() && cs.iter().all(|c| c.pending == 0 && c.ack_pending == 0),
        Err(_) => false,
    }
}

pub async fn run_demo(g: &Global, cmd: DemoCmd) -> Result<ExitCode> {
    let samples = g.workflows.join("samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .map_err(|e| usage(format!("cannot read {}: {e}", samples.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(usage(format!(
            "no SUBJECT.json samples in {}",
            samples.display()
        )));
    }
    let smtp = g.smtp_or_capture();
    let running = start(g, &cmd.up, &smtp, CancellationToken::new()).await?;
    let db = crate::commands::open_db(g, herald::db::Pool::OnDemand, "herald demo").await?;
    let started = Instant::now();
    let mut emitted = Vec::with_capacity(files.len());
    for f in &files {
        let subject = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(f)?;
        let payload: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: invalid JSON: {e}", f.display())))?;
        let txn = db.begin().await?;
        let id = outbox::enqueue(&txn, NewEvent::new(subject.clone(), payload))
            .await
            .map_err(|e| usage(format!("{}: {e}", f.display())))?;
        txn.commit().await?;
        println!("emitted {subject} ({id})");
        emitted.push(id);
    }
    // Done when the relay published everything and every consumer acked it.
    loop {
        let published = herald::outbox::backlog(&db).await?.pending == 0;
        if published && drained(&running.js, g).await {
            break;
        }
        if running.stop.is_cancelled() {
            running.stop().await?;
            anyhow::bail!("the demo stopped before its emails were processed");
        }
        if started.elapsed() > cmd.timeout {
            running.stop().await?;
            anyhow::bail!(
                "the demo's emails were not all processed within {:?}",
                cmd.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted from the ledger: what was recorded for the events emitted here.
    let (mut sent, mut skipped, mut dead) = (0, 0, 0);
    for id in &emitted {
        for d in herald::ledger::deliveries_of(&db, *id).await? {
            match d.state {
                DeliveryState::Sent => sent += 1,
                DeliveryState::Skipped => skipped += 1,
                DeliveryState::Dead => dead += 1,
                _ => {}
            }
        }
    }
    running.stop().await?;
    println!("demo: {sent} email(s) sent, {skipped} skipped, {dead} dead-lettered, to {smtp}");
    if let Some(dir) = smtp.expose().strip_prefix("file://") {
        println!("demo: open the .eml files in {dir}");
    }
    Ok(if dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
