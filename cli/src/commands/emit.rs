use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use herald::outbox::{self, NewEvent};
use sea_orm::TransactionTrait;

use super::{Global, usage};

#[derive(Args, Debug)]
pub struct EmitArgs {
    /// Subject to publish on; must start with `events.` (e.g. events.contract.signed).
    #[arg(long)]
    pub subject: String,
    /// The event payload: a JSON object inline, or @FILE to read it from a file.
    #[arg(long)]
    pub payload: String,
    /// Aggregate id: events of one aggregate are published in order.
    #[arg(long)]
    pub aggregate: Option<String>,
    /// Aggregate type [default: the subject's second token, e.g. `contract`].
    #[arg(long, requires = "aggregate")]
    pub aggregate_type: Option<String>,
    /// Use this event id instead of a new UUIDv7 (idempotent producers).
    #[arg(long)]
    pub event_id: Option<herald::EventId>,
    /// W3C trace context to carry with the event.
    #[arg(long)]
    pub traceparent: Option<String>,
}

/// Read `JSON` or `@FILE` into a JSON value; any problem is a usage error.
pub fn read_payload(arg: &str) -> Result<serde_json::Value> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read payload file {path}: {e}")))?,
            path.to_string(),
        ),
        None => (arg.to_string(), "--payload".to_string()),
    };
    serde_json::from_str(&text).map_err(|e| usage(format!("invalid JSON in {origin}: {e}")))
}

pub async fn run(g: &Global, args: EmitArgs) -> Result<ExitCode> {
    // Everything about the event is checked before the database is touched.
    herald::subject::validate_event_subject(&args.subject)
        .map_err(|e| usage(format!("invalid subject {:?}: {e}", args.subject)))?;
    let payload = read_payload(&args.payload)?;
    let mut event = NewEvent::new(args.subject.clone(), payload);
    if let Some(id) = &args.aggregate {
        let kind = args.aggregate_type.clone().unwrap_or_else(|| {
            args.subject
                .split('.')
                .nth(1)
                .unwrap_or("event")
                .to_string()
        });
        event = event.aggregate(kind, id);
    }
    if let Some(id) = args.event_id {
        event = event.event_id(id);
    }
    if let Some(tp) = args.traceparent {
        event = event.traceparent(tp);
    }
    outbox::validate(&event, &outbox::EnqueueOptions::default()).map_err(usage)?;
    let db = super::open_db(g, herald::db::Pool::OnDemand, "herald emit").await?;
    herald::db::migrate(&db).await?;
    let txn = db.begin().await.context("cannot begin transaction")?;
    let id = match outbox::enqueue(&txn, event).await {
        Ok(id) => id,
        Err(e) if e.is_invalid_input() => return Err(usage(e)),
        Err(e) => return Err(e.into()),
    };
    txn.commit().await.context("cannot commit the outbox row")?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
