use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use herald::metrics::Metrics;
use herald::worker::WorkerConfig;

use super::worker::Database::MustExist;

use super::{Global, usage};

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// List dead letters not yet re-driven (oldest first).
    List {
        #[arg(long)]
        workflow: Option<String>,
        /// Include dead letters already re-driven.
        #[arg(long)]
        all: bool,
        /// Print JSON: an array of dead letters, each with its event's headers and payload.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter whole: reason, last SMTP reply, event headers and payload, and the email as it would render now.
    Show {
        id: i64,
        /// Print JSON (the keys of `dlq list --json`, and `rendered`).
        #[arg(long)]
        json: bool,
    },
    /// Re-drive dead letters through the workflow again (the ledger prevents double sends).
    Retry {
        /// The dead letter to re-drive.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Re-drive every dead letter not yet re-driven (optionally of one --workflow).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Close a dead letter without delivering it; the events of its aggregate held behind it are then re-driven.
    Discard {
        /// The dead letter to close.
        id: i64,
    },
}

fn row_json(d: &herald_entities::dead_letter::Model) -> serde_json::Value {
    serde_json::json!({
        "id": d.id, "event_id": d.event_id, "workflow": d.workflow, "recipient": d.recipient,
        "subject": d.subject, "aggregate": d.aggregate, "stream_seq": d.stream_seq, "kind": d.kind, "reason": d.reason,
        "smtp_reply": d.smtp_reply, "attempts": d.attempts, "created_at": d.created_at,
        "retried_at": d.retried_at, "discarded_at": d.discarded_at,
        "headers": serde_json::from_str::<serde_json::Value>(&d.headers).unwrap_or_default(),
        "payload": serde_json::from_str::<serde_json::Value>(&d.payload).unwrap_or(serde_json::Value::String(d.payload.clone())),
    })
}

pub async fn run(g: &Global, cmd: DlqCmd) -> Result<ExitCode> {
    match cmd {
        DlqCmd::List {
            workflow,
            all,
            json,
        } => list(g, workflow, all, json).await,
        DlqCmd::Show { id, json } => show(g, id, json).await,
        DlqCmd::Discard { id } => discard(g, id).await,
        DlqCmd::Retry { id, all, workflow } => retry(g, id, all, workflow).await,
    }
}

/// `dlq list`: a table, or JSON with each event whole.
async fn list(g: &Global, workflow: Option<String>, all: bool, json: bool) -> Result<ExitCode> {
    let db = super::open_existing_db(g, "herald dlq").await?;
    herald::db::migrate(&db).await?;
    let rows = herald::dlq::list(&db, workflow.as_deref(), all).await?;
    if json {
        let v: Vec<_> = rows.iter().map(row_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<[String; 6]> = rows
            .iter()
            .map(|d| {
                [
                    d.id.to_string(),
                    d.workflow.clone(),
                    d.recipient
                        .as_deref()
                        .unwrap_or("(whole event)")
                        .to_string(),
                    d.kind.to_string(),
                    state(d).to_string(),
                    d.reason.lines().next().unwrap_or("").to_string(),
                ]
            })
            .collect();
        let header = ["id", "workflow", "recipient", "kind", "state", "reason"];
        print!("{}", super::text::table(header, &rows));
        println!("{} dead letter(s)", rows.len());
        if let Some(name) = &workflow
            && rows.is_empty()
        {
            let known = herald::dlq::workflows(&db).await?;
            if !known.contains(name) {
                eprintln!(
                    "no dead letters of a workflow named {name:?}; workflows with dead letters: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a dead letter stands: still open, re-driven, or discarded.
fn state(d: &herald_entities::dead_letter::Model) -> &'static str {
    match (d.discarded_at, d.retried_at) {
        (Some(_), _) => "discarded",
        (None, Some(_)) => "re-driven",
        (None, None) => "open",
    }
}

/// `dlq show ID`: one dead letter whole, with the email as it renders now.
async fn show(g: &Global, id: i64, json: bool) -> Result<ExitCode> {
    let db = super::open_existing_db(g, "herald dlq").await?;
    herald::db::migrate(&db).await?;
    let d = herald::dlq::get(&db, id)
        .await?
        .ok_or_else(|| usage(format!("no dead letter with id {id}")))?;
    let mut shown = row_json(&d);
    shown["rendered"] = rendered(g, &d);
    if json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else {
        print!("{}", super::text::render(&shown));
    }
    Ok(ExitCode::SUCCESS)
}

/// `dlq discard ID`: close it, then re-drive what its aggregate held behind it.
async fn discard(g: &Global, id: i64) -> Result<ExitCode> {
    let smtp = g.smtp_for("dlq discard")?;
    let engine = super::worker::engine(
        g,
        &smtp,
        herald::db::Pool::OnDemand,
        "herald dlq",
        MustExist,
    )
    .await?;
    let d = herald::dlq::get(&engine.db, id)
        .await?
        .ok_or_else(|| usage(format!("no dead letter with id {id}")))?;
    if d.retried_at.is_some() {
        return Err(usage(format!("dead letter {id} is already closed")));
    }
    herald::dlq::discard(&engine.db, id).await?;
    // Held to the end of the command: dropping it ends the notice task.
    let _waiting = say_when_waiting(&engine.transport);
    let worker = engine.worker(WorkerConfig::default(), Metrics::new());
    let mut tally = Tally::default();
    for (fid, o) in worker.release_followers(&d).await? {
        tally.count(fid, Ok(o));
    }
    println!(
        "discarded dead letter {id}; re-drove {} held behind it: {} delivered, {} failed; sent {}",
        tally.redriven, tally.ok, tally.failed, tally.sent
    );
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `dlq retry`: re-drive one dead letter or all (of a workflow), each with
/// the events held behind it.
async fn retry(
    g: &Global,
    id: Option<i64>,
    all: bool,
    workflow: Option<String>,
) -> Result<ExitCode> {
    let smtp = g.smtp_for("dlq retry")?;
    let engine = super::worker::engine(
        g,
        &smtp,
        herald::db::Pool::OnDemand,
        "herald dlq",
        MustExist,
    )
    .await?;
    if let Some(name) = &workflow
        && engine.catalog.get(name).is_none()
    {
        let names: Vec<&str> = engine
            .catalog
            .workflows
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        return Err(usage(format!(
            "no workflow named {name:?} in {} (workflows: {})",
            g.workflows.display(),
            names.join(", ")
        )));
    }
    let rows = match id {
        Some(id) => {
            let d = herald::dlq::get(&engine.db, id)
                .await?
                .ok_or_else(|| usage(format!("no dead letter with id {id}")))?;
            if d.retried_at.is_some() || d.discarded_at.is_some() {
                return Err(usage(format!(
                    "dead letter {id} is already closed (re-driven or discarded): `herald dlq list` shows the open ones"
                )));
            }
            vec![d]
        }
        None if all => herald::dlq::list(&engine.db, workflow.as_deref(), false).await?,
        None => unreachable_args()?,
    };
    // Held to the end of the command: dropping it ends the notice task.
    let _waiting = say_when_waiting(&engine.transport);
    let worker = engine.worker(WorkerConfig::default(), Metrics::new());
    let mut tally = Tally::default();
    for d in &rows {
        // Re-driven meanwhile as one held behind an earlier one?
        let Some(d) = herald::dlq::get(worker.db(), d.id).await? else {
            continue;
        };
        if d.retried_at.is_some() {
            continue;
        }
        let r = worker.redrive(&d).await;
        if tally.count(d.id, r) {
            for (id, o) in worker.release_followers(&d).await? {
                tally.count(id, Ok(o));
            }
        }
    }
    let Tally {
        redriven,
        ok,
        failed,
        sent,
    } = tally;
    println!("re-drove {redriven} dead letter(s): {ok} delivered, {failed} failed; sent {sent}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A re-drive waits for an SMTP server that cannot be reached (no attempt
/// counted), however long: say so once, and that stopping is safe. The
/// task ends when the returned guard is dropped.
fn say_when_waiting(
    transport: &herald::smtp::Transport,
) -> tokio_util::task::AbortOnDropHandle<()> {
    let mut states = transport.subscribe();
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        while states.changed().await.is_ok() {
            if !states.borrow().is_up() {
                eprintln!(
                    "herald: waiting for the SMTP server to answer; Ctrl-C stops, and what is not re-driven stays open for a later `herald dlq retry`"
                );
                return;
            }
        }
    }))
}

/// What a re-drive did, for its summary line.
#[derive(Default)]
struct Tally {
    redriven: u64,
    ok: u64,
    failed: u64,
    sent: u64,
}

impl Tally {
    /// Count one re-drive; true when it was delivered.
    fn count(
        &mut self,
        id: i64,
        r: Result<herald::worker::ProcessOutcome, herald::worker::RedriveError>,
    ) -> bool {
        self.redriven += 1;
        match r {
            Ok(o) => {
                self.sent += o.sent;
                if o.delivered() {
                    self.ok += 1;
                    return true;
                }
                self.failed += 1;
                eprintln!("dead letter {id}: not delivered: {}", o.disposition);
            }
            Err(e) => {
                self.failed += 1;
                eprintln!("dead letter {id}: {e}");
            }
        }
        false
    }
}

/// clap guarantees an id or --all; this keeps the match total without a panic.
fn unreachable_args<T>() -> Result<T> {
    Err(usage("give a dead letter id or --all"))
}

/// The emails the workflow renders for the dead letter's event now (headers
/// only), or why it cannot: what an operator compares with the reason.
fn rendered(g: &Global, d: &herald_entities::dead_letter::Model) -> serde_json::Value {
    let catalog = match herald::workflow::load(&g.workflows) {
        Ok(c) => c,
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    let Some(wf) = catalog.get(&d.workflow) else {
        return serde_json::json!({ "error": format!("workflow {:?} not in {}", d.workflow, g.workflows.display()) });
    };
    let payload: serde_json::Value = serde_json::from_str(&d.payload).unwrap_or_default();
    let meta = herald::workflow::render::Meta {
        id: d.event_id.to_string(),
        subject: d.subject.clone(),
        aggregate: None,
        occurred_at: String::new(),
        workflow: d.workflow.clone(),
    };
    match catalog.render(wf, &payload, &meta) {
        Ok(herald::workflow::render::Outcome::Emails(emails)) => serde_json::Value::Array(
            emails
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "from": e.from, "to": e.to, "cc": e.cc, "bcc": e.bcc, "reply_to": e.reply_to,
                        "subject": e.subject, "headers": e.headers,
                        "message_id": format!("<{}>", herald::worker::message_id(d.event_id.into(), &d.workflow, e.index, &e.from)),
                    })
                })
                .collect(),
        ),
        Ok(herald::workflow::render::Outcome::Skipped { guard }) => serde_json::json!({ "skipped": guard }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}
