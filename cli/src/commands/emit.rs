use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use herald::outbox::{self, NewEvent};
use sea_orm::TransactionTrait;

use super::{Global, usage};

#[derive(Args, Debug)]
pub struct EmitArgs {
    /// Subject to publish on; must start with `events.` (e.g. events.contract.signed).
    #[arg(long, required_unless_present = "jsonl")]
    pub subject: Option<String>,
    /// The event payload: a JSON object inline, or @FILE to read it from a file.
    #[arg(long, required_unless_present = "jsonl")]
    pub payload: Option<String>,
    /// Bulk: one event per line of FILE (`-` for standard input), each a JSON
    /// object with the outbox columns: `subject`, `payload`, and optionally
    /// `aggregate_type`, `aggregate_id`, `headers`, `event_id`. Every line is
    /// checked before anything is inserted; then `--batch` lines go in per
    /// transaction. Prints each event id, one per line, in input order.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["subject", "payload", "aggregate", "aggregate_type", "event_id", "traceparent"])]
    pub jsonl: Option<String>,
    /// With --jsonl: events per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000), requires = "jsonl")]
    pub batch: u32,
    /// Aggregate id: events of one aggregate are published in order.
    #[arg(long)]
    pub aggregate: Option<String>,
    /// Aggregate type [default: the subject's second token, e.g. `contract`].
    #[arg(long, requires = "aggregate")]
    pub aggregate_type: Option<String>,
    /// Use this event id instead of a new UUIDv7 (idempotent producers).
    #[arg(long)]
    pub event_id: Option<herald::EventId>,
    /// W3C trace context to carry with the event: `00-TRACEID-SPANID-FLAGS`
    /// (32 and 16 lower-case hex digits, not all zero).
    #[arg(long, value_parser = traceparent_arg)]
    pub traceparent: Option<String>,
}

/// A W3C `traceparent` (version 00 layout), checked here so that a typo is
/// an error now rather than a trace that silently starts afresh downstream.
fn traceparent_arg(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |p: &str| p.bytes().all(|b| b == b'0');
    match parts.as_slice() {
        [v, t, p, f] if hex(v, 2) && *v != "ff" && hex(t, 32) && hex(p, 16) && hex(f, 2) => {
            if zero(t) || zero(p) {
                Err("the trace id and the parent id must not be all zeros".into())
            } else {
                Ok(s.to_string())
            }
        }
        _ => Err(format!(
            "{s:?} is not a W3C traceparent: expected 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_is_checked() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(super::traceparent_arg(ok).as_deref(), Ok(ok));
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(super::traceparent_arg(bad).is_err(), "{bad}");
        }
    }
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
    if let Some(source) = &args.jsonl {
        return bulk(g, source, args.batch).await;
    }
    let (Some(subject), Some(payload)) = (&args.subject, &args.payload) else {
        return Err(usage(
            "--subject and --payload are required (or --jsonl FILE)",
        ));
    };
    // Everything about the event is checked before the database is touched.
    herald::subject::validate_event_subject(subject)
        .map_err(|e| usage(format!("invalid subject {subject:?}: {e}")))?;
    let payload = read_payload(payload)?;
    let mut event = NewEvent::new(subject.clone(), payload);
    if let Some(id) = &args.aggregate {
        let kind = args
            .aggregate_type
            .clone()
            .unwrap_or_else(|| subject.split('.').nth(1).unwrap_or("event").to_string());
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

/// One line of `--jsonl`: the outbox columns a producer may set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    subject: String,
    payload: serde_json::Value,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    event_id: Option<herald::EventId>,
}

impl Line {
    fn into_event(self) -> Result<NewEvent, String> {
        herald::subject::validate_event_subject(&self.subject)
            .map_err(|e| format!("subject {:?}: {e}", self.subject))?;
        let mut event = NewEvent::new(self.subject.clone(), self.payload);
        match (self.aggregate_type, self.aggregate_id) {
            (Some(kind), Some(id)) => event = event.aggregate(kind, id),
            (None, Some(id)) => {
                let kind = self
                    .subject
                    .split('.')
                    .nth(1)
                    .unwrap_or("event")
                    .to_string();
                event = event.aggregate(kind, id);
            }
            (Some(_), None) => return Err("aggregate_type without aggregate_id".into()),
            (None, None) => {}
        }
        for (name, value) in self.headers {
            event = event.header(name, value);
        }
        if let Some(id) = self.event_id {
            event = event.event_id(id);
        }
        outbox::validate(&event, &outbox::EnqueueOptions::default()).map_err(|e| e.to_string())?;
        Ok(event)
    }
}

/// Read and check every line of `source`; all problems at once, each with its line.
fn read_lines(source: &str) -> Result<Vec<NewEvent>> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(source).map_err(|e| usage(format!("cannot read {source}: {e}")))?,
        ))
    };
    let name = if source == "-" { "<stdin>" } else { source };
    let (mut events, mut problems) = (Vec::new(), Vec::new());
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| usage(format!("cannot read {name}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(&line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(Line::into_event);
        match parsed {
            Ok(e) => events.push(e),
            // Bounded: a wrong file should not print a million lines.
            Err(p) if problems.len() < 20 => problems.push(format!("{name}:{}: {p}", i + 1)),
            Err(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(usage(format!(
            "nothing was inserted; fix these lines:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(events)
}

async fn bulk(g: &Global, source: &str, batch: u32) -> Result<ExitCode> {
    let events = read_lines(source)?;
    let db = super::open_db(g, herald::db::Pool::OnDemand, "herald emit").await?;
    herald::db::migrate(&db).await?;
    let total = events.len() as u64;
    let mut progress = super::progress::Progress::new("emit", "events");
    let mut done = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let txn = db.begin().await.context("cannot begin transaction")?;
        let mut ids = Vec::with_capacity(batch as usize);
        for event in events.by_ref().take(batch as usize) {
            match outbox::enqueue(&txn, event).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "line {} of the events: {e}; the first {done} events are committed, the rest are not",
                        done + ids.len() as u64 + 1
                    ));
                }
            }
        }
        txn.commit().await.with_context(|| {
            format!("cannot commit; the first {done} events are committed, the rest are not")
        })?;
        done += ids.len() as u64;
        for id in ids {
            use std::io::Write;
            writeln!(out, "{id}")?;
        }
        progress.update(done, total, i64::try_from(done).unwrap_or(i64::MAX));
    }
    progress.finish();
    tracing::info!(events = done, "emitted");
    Ok(ExitCode::SUCCESS)
}
