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
    /// Print the emails a workflow would send for a payload (headers and decoded bodies); sends nothing.
    Render {
        name: String,
        /// JSON object inline, or @FILE.
        #[arg(long)]
        payload: String,
        /// Subject to pretend the event came on [default: the workflow's first filter with wildcards filled].
        #[arg(long)]
        subject: Option<String>,
        /// Print the message as sent on the wire (MIME, quoted-printable, encoded words) instead of decoded.
        #[arg(long)]
        raw: bool,
        /// Also write the HTML body to FILE, to open in a browser (with several emails: FILE.1.html, FILE.2.html, …).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Print the JSON Schema of the workflow format (for editors).
    Schema,
}

pub async fn run(g: &Global, cmd: WorkflowsCmd) -> Result<ExitCode> {
    match cmd {
        WorkflowsCmd::Validate { dir, json: true } => validate_json(g, dir),
        WorkflowsCmd::List { json } => list(g, json),
        WorkflowsCmd::Validate { dir, json: false } => validate(g, dir),
        WorkflowsCmd::Render {
            name,
            payload,
            subject,
            raw,
            html,
        } => render(g, name, payload, subject, raw, html),
        WorkflowsCmd::Schema => schema(),
    }
}

/// `workflows validate --json`: the result as one JSON document.
fn validate_json(g: &Global, dir: Option<PathBuf>) -> Result<ExitCode> {
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

/// `workflows list`: a table, or JSON.
fn list(g: &Global, json: bool) -> Result<ExitCode> {
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
        let rows: Vec<[String; 3]> = catalog
            .workflows
            .iter()
            .map(|w| {
                [
                    w.name.clone(),
                    w.category().unwrap_or("-").to_string(),
                    w.subjects.join(", "),
                ]
            })
            .collect();
        print!(
            "{}",
            super::text::table(["name", "category", "subjects"], &rows)
        );
        println!(
            "{} workflow(s) in {} (version {})",
            catalog.workflows.len(),
            catalog.dir.display(),
            catalog.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `workflows validate`: a count, or one line per problem (exit 2).
fn validate(g: &Global, dir: Option<PathBuf>) -> Result<ExitCode> {
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

/// `workflows render`: each email a payload makes, decoded or raw; sends nothing.
fn render(
    g: &Global,
    name: String,
    payload: String,
    subject: Option<String>,
    raw: bool,
    html: Option<PathBuf>,
) -> Result<ExitCode> {
    let sample = sample(g, &name, &payload, subject)?;
    let emails = match sample.outcome {
        Outcome::Skipped { guard } => {
            println!("skipped: guard did not hold: {guard}");
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::Emails(emails) => emails,
    };
    if let Some(path) = &html {
        write_html(path, &emails)?;
    }
    let n = emails.len();
    for (i, e) in emails.iter().enumerate() {
        let mid = herald::worker::message_id(sample.id, &name, e.index, &e.from);
        let wire = herald::smtp::build(e, &mid)?;
        if raw {
            println!("{}", String::from_utf8_lossy(&wire));
            continue;
        }
        if n > 1 {
            println!("=== email {} of {n} ===", i + 1);
        }
        print!("{}", decoded(&wire)?);
        if i + 1 < n {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `workflows schema`: the JSON Schema of the format.
fn schema() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&herald::workflow::spec::json_schema())?
    );
    Ok(ExitCode::SUCCESS)
}

/// What a workflow makes of one payload, rendered as the worker would but
/// for an event that exists nowhere (a fresh id; nothing is stored).
pub struct Sample {
    pub id: herald::EventId,
    pub outcome: Outcome,
}

/// Load the workflows, find `name`, read the payload and render it. Every
/// problem is the user's to fix (exit 2): a workflow set that does not
/// validate, an unknown name, a payload that is not a JSON object, a
/// payload the templates cannot render.
pub fn sample(g: &Global, name: &str, payload: &str, subject: Option<String>) -> Result<Sample> {
    let catalog = herald::workflow::load(&g.workflows).map_err(usage)?;
    let wf = catalog.get(name).ok_or_else(|| {
        let names: Vec<&str> = catalog.workflows.iter().map(|w| w.name.as_str()).collect();
        usage(format!(
            "no workflow named {name:?} in {} (workflows: {})",
            g.workflows.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })?;
    let payload = read_payload(payload)?;
    if !payload.is_object() {
        return Err(usage(
            "the payload must be a JSON object (an event's payload always is)",
        ));
    }
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
        workflow: name.to_string(),
    };
    let outcome = catalog
        .render(wf, &payload, &meta)
        .map_err(|e| usage(format!("cannot render {name}: {e}")))?;
    Ok(Sample { id, outcome })
}

/// A message as a person reads it: its headers with encoded words decoded,
/// then each body part decoded (no quoted-printable or base64), under a
/// line naming its type. MIME plumbing headers are left out.
fn decoded(wire: &[u8]) -> Result<String> {
    use std::fmt::Write as _;
    let msg = mailparse::parse_mail(wire)?;
    let mut out = String::new();
    for h in &msg.headers {
        let key = h.get_key();
        let plumbing = ["MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k));
        if !plumbing {
            writeln!(out, "{key}: {}", h.get_value())?;
        }
    }
    let mut leaves = Vec::new();
    collect_leaves(&msg, &mut leaves);
    for part in leaves {
        // The wire's CRLF line ends, as the terminal's.
        let body = part.get_body()?.replace("\r\n", "\n");
        writeln!(out, "\n--- {} ---", part.ctype.mimetype)?;
        writeln!(out, "{}", body.trim_end_matches(['\r', '\n']))?;
    }
    Ok(out)
}

fn collect_leaves<'a>(
    m: &'a mailparse::ParsedMail<'a>,
    out: &mut Vec<&'a mailparse::ParsedMail<'a>>,
) {
    if m.subparts.is_empty() {
        out.push(m);
    }
    for p in &m.subparts {
        collect_leaves(p, out);
    }
}

/// `--html FILE`: the HTML body of each email, for a browser.
fn write_html(path: &std::path::Path, emails: &[herald::workflow::render::Email]) -> Result<()> {
    if emails.iter().all(|e| e.html.is_none()) {
        return Err(usage(
            "--html: this workflow's email has no HTML body (html or html_file)",
        ));
    }
    for (i, e) in emails.iter().enumerate() {
        let Some(html) = &e.html else { continue };
        let file = if emails.len() == 1 {
            path.to_path_buf()
        } else {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let ext = path
                .extension()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_else(|| "html".into());
            path.with_file_name(format!("{stem}.{}.{ext}", i + 1))
        };
        std::fs::write(&file, html)
            .map_err(|err| usage(format!("--html: cannot write {}: {err}", file.display())))?;
        eprintln!("wrote the HTML body to {}", file.display());
    }
    Ok(())
}
