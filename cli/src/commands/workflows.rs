use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use herald::workflow::render::{Meta, Outcome};

use super::{Global, emit::read_payload, usage};

#[derive(Subcommand, Debug)]
pub enum WorkflowsCmd {
    /// Check every workflow: exit 0 when valid, else exit 2 with one FILE:LINE:COL: message line per problem.
    Validate {
        /// Directory to check [default: --workflows].
        dir: Option<PathBuf>,
    },
    /// Print the emails a workflow would send for a payload (headers and bodies); sends nothing.
    Render {
        name: String,
        /// JSON object inline, or @FILE.
        #[arg(long)]
        payload: String,
        /// Subject to pretend the event came on [default: the workflow's first filter with wildcards filled].
        #[arg(long)]
        subject: Option<String>,
    },
    /// Print the JSON Schema of the workflow format (for editors).
    Schema,
}

pub async fn run(g: &Global, cmd: WorkflowsCmd) -> Result<ExitCode> {
    match cmd {
        WorkflowsCmd::Validate { dir } => {
            let dir = dir.unwrap_or_else(|| g.workflows.clone());
            match herald::workflow::load(&dir) {
                Ok(c) => {
                    println!(
                        "{} workflow(s) valid in {}",
                        c.workflows.len(),
                        dir.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for p in &problems.0 {
                        eprintln!("{p}");
                    }
                    Ok(ExitCode::from(2))
                }
            }
        }
        WorkflowsCmd::Render {
            name,
            payload,
            subject,
        } => {
            let catalog = herald::workflow::load(&g.workflows).map_err(usage)?;
            let wf = catalog
                .get(&name)
                .ok_or_else(|| usage(format!("no workflow named {name:?}")))?;
            let payload = read_payload(&payload)?;
            let subject = subject.unwrap_or_else(|| {
                wf.subjects[0]
                    .replace(".>", ".sample")
                    .replace('*', "sample")
            });
            let id = herald::EventId::new();
            let meta = Meta {
                id: id.to_string(),
                subject,
                aggregate: None,
                occurred_at: chrono::Utc::now().to_rfc3339(),
                workflow: name.clone(),
            };
            match catalog.render(wf, &payload, &meta).map_err(usage)? {
                Outcome::Skipped { guard } => println!("skipped: guard did not hold: {guard}"),
                Outcome::Emails(emails) => {
                    for e in emails {
                        let mid = herald::worker::message_id(id, &name, e.index, &e.from);
                        let raw = herald::smtp::build(&e, &mid)?;
                        println!("{}", String::from_utf8_lossy(&raw));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsCmd::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&herald::workflow::spec::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
