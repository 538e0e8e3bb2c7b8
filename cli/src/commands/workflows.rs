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
        /// Print JSON on stdout: {"valid", "dir", "workflows", "version", "problems": [{"file", "line", "col", "message"}]} (exit codes unchanged).
        #[arg(long)]
        json: bool,
    },
    /// List the workflows of --workflows: name, subjects, category, file.
    List {
        /// Print JSON: an array of {"name", "description", "subjects", "category", "file"}.
        #[arg(long)]
        json: bool,
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
        WorkflowsCmd::Validate { dir, json: true } => {
            let dir = dir.unwrap_or_else(|| g.workflows.clone());
            let (out, code) = match herald::workflow::load(&dir) {
                Ok(c) => (
                    serde_json::json!({
                        "valid": true, "dir": dir, "workflows": c.workflows.len(),
                        "version": c.version, "problems": [],
                    }),
                    ExitCode::SUCCESS,
                ),
                Err(problems) => (
                    serde_json::json!({
                        "valid": false, "dir": dir, "workflows": null, "version": null,
                        "problems": problems.0.iter().map(|p| serde_json::json!({
                            "file": p.file, "line": p.line, "col": p.col, "message": p.message,
                        })).collect::<Vec<_>>(),
                    }),
                    ExitCode::from(2),
                ),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        WorkflowsCmd::List { json } => {
            let catalog = herald::workflow::load(&g.workflows).map_err(usage)?;
            if json {
                let v: Vec<_> = catalog
                    .workflows
                    .iter()
                    .map(|w| {
                        serde_json::json!({
                            "name": w.name, "description": w.description, "subjects": w.subjects,
                            "category": w.category(), "file": w.file,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<32}  {:<12}  subjects", "name", "category");
                for w in &catalog.workflows {
                    println!(
                        "{:<32}  {:<12}  {}",
                        w.name,
                        w.category().unwrap_or("-"),
                        w.subjects.join(", ")
                    );
                }
                println!(
                    "{} workflow(s) in {} (version {})",
                    catalog.workflows.len(),
                    catalog.dir.display(),
                    catalog.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsCmd::Validate { dir, json: false } => {
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
