//! Every example of `docs/workflows.md`, checked, so the author's reference
//! cannot drift from what Herald does:
//! - each ```` ```yaml ```` block validates: a whole workflow (it has a
//!   `name:`) as it is, a fragment added to a minimal workflow; the files it
//!   names (`text_file: …`) are stubbed;
//! - each ```` ```handlebars file=PATH ```` block is a file of every
//!   example's workflows directory (partials);
//! - each ```` ```handlebars example ```` block holds cases: setup lines
//!   (`event: JSON`, `events: [JSON…]` for a digest, `locale: TAG`,
//!   `for_each: PATH`, `body: html|text`), a template, and `→ OUTPUT` lines
//!   (one per email), `→ error: TEXT` (rendering fails saying TEXT) or
//!   `→ invalid: TEXT` (validation reports TEXT). Each case renders through
//!   the real pipeline: load (validate, compile), then render.
//!
//! The commands the page shows (`workflows render`, `send-test`) are
//! checked by the integration tests of the CLI (`tests/it/authoring/`).
use std::path::Path;

use serde_json::Value;

use super::render::{Meta, Outcome};

const DOC: &str = include_str!("../../../docs/workflows.md");

struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in DOC.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    body: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(b), None) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "docs/workflows.md: a code block is not closed"
    );
    out
}

/// The partials and other files the page defines.
fn files() -> Vec<(String, String)> {
    blocks()
        .into_iter()
        .filter_map(|b| {
            let path = b.info.strip_prefix("handlebars file=")?;
            Some((path.to_string(), b.body.trim_end_matches('\n').to_string()))
        })
        .collect()
}

fn write_dir(files: &[(String, String)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(d.path(), name, text);
    }
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const MINIMAL: &str = "name: doc\non: { subjects: [events.doc.example] }\nemail:\n  from: shop@example.com\n  to: ada@example.com\n  subject: example\n  text: example\n";

#[test]
fn every_yaml_example_validates() {
    let yaml: Vec<Block> = blocks().into_iter().filter(|b| b.info == "yaml").collect();
    assert!(yaml.len() >= 4, "the page lost its YAML examples");
    for b in yaml {
        let whole = b.body.lines().any(|l| l.starts_with("name:"));
        // A fragment lists optional keys, some exclusive of others (a
        // digest has no delay): each top-level key is checked on its own.
        let texts: Vec<String> = if whole {
            vec![b.body.clone()]
        } else {
            let mut keys: Vec<String> = Vec::new();
            for l in b.body.lines() {
                match keys.last_mut() {
                    Some(k) if l.starts_with([' ', '-']) => {
                        k.push_str(l);
                        k.push('\n');
                    }
                    _ => keys.push(format!("{l}\n")),
                }
            }
            keys.into_iter().map(|k| format!("{MINIMAL}{k}")).collect()
        };
        for text in texts {
            validates(&b, text);
        }
    }
}

fn validates(b: &Block, text: String) {
    {
        let mut files = files();
        for l in text.lines() {
            if let Some((_, path)) = l.split_once("_file: ") {
                let path = path.split('#').next().unwrap().trim();
                files.push((path.to_string(), "stub".to_string()));
            }
        }
        files.push(("w.yaml".into(), text.clone()));
        let d = write_dir(&files);
        if let Err(p) = super::load(d.path()) {
            panic!(
                "docs/workflows.md:{}: the YAML example does not validate: {p}\n{text}",
                b.line
            );
        }
    }
}

/// One case of an example block.
#[derive(Default, Clone)]
struct Setup {
    event: Option<Value>,
    events: Option<Vec<Value>>,
    locale: Option<String>,
    for_each: Option<String>,
    html: bool,
}

fn meta() -> Meta {
    Meta {
        id: "01990000-0000-7000-8000-000000000000".into(),
        subject: "events.doc.example".into(),
        aggregate: Some("order/42".into()),
        occurred_at: "2026-03-01T12:30:00Z".into(),
        workflow: "doc".into(),
    }
}

/// Render `template` as the body of a workflow set up as `s`: the output
/// of each email, or the error (`error: …` or `invalid: …`).
fn run(s: &Setup, template: &str) -> Result<Vec<String>, String> {
    let mut wf = String::from("name: doc\non: { subjects: [events.doc.example] }\n");
    if let Some(l) = &s.locale {
        wf.push_str(&format!("locale: \"{l}\"\n"));
    }
    if let Some(f) = &s.for_each {
        wf.push_str(&format!("for_each: {f}\n"));
    }
    if s.events.is_some() {
        wf.push_str("digest: { key: \"all\", window: 10m }\n");
    }
    let body = if s.html { "html_file" } else { "text_file" };
    wf.push_str(&format!(
        "email:\n  from: shop@example.com\n  to: ada@example.com\n  subject: example\n  {body}: templates/example.hbs\n"
    ));
    let mut files = files();
    files.push(("w.yaml".into(), wf));
    files.push(("templates/example.hbs".into(), template.to_string()));
    let d = write_dir(&files);
    let catalog = super::load(d.path()).map_err(|p| {
        format!(
            "invalid: {}",
            p.0.iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let wf = catalog.get("doc").unwrap();
    let outcome = match &s.events {
        Some(events) => catalog.render_digest(wf, events, &meta()),
        None => catalog.render(wf, s.event.as_ref().unwrap_or(&Value::Null), &meta()),
    }
    .map_err(|e| format!("error: {e}"))?;
    match outcome {
        Outcome::Emails(emails) => Ok(emails
            .into_iter()
            .map(|e| if s.html { e.html } else { e.text }.unwrap_or_default())
            .collect()),
        Outcome::Skipped { guard } => Err(format!("skipped: {guard}")),
    }
}

/// The page writes the no-break spaces CLDR puts in numbers (`1 234,50`)
/// as plain spaces.
fn plain_spaces(s: &str) -> String {
    s.replace(['\u{a0}', '\u{202f}'], " ")
}

#[test]
fn every_template_example_renders_as_shown() {
    let mut cases = 0;
    for b in blocks()
        .into_iter()
        .filter(|b| b.info == "handlebars example")
    {
        let mut setup = Setup::default();
        let mut template: Vec<&str> = Vec::new();
        let mut expected: Vec<String> = Vec::new();
        let lines: Vec<&str> = b.body.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let at = b.line + 1 + i;
            if let Some(out) = line.strip_prefix("→ ") {
                expected.push(out.to_string());
                if lines.get(i + 1).is_some_and(|n| n.starts_with("→ ")) {
                    continue;
                }
                let got = run(&setup, &template.join("\n"));
                cases += 1;
                let want = expected.join("\n");
                match got {
                    Ok(outputs) => {
                        let got = plain_spaces(&outputs.join("\n"));
                        assert_eq!(
                            got.trim_end(),
                            want,
                            "docs/workflows.md:{at}: {}",
                            template.join("\n")
                        );
                    }
                    Err(e) => assert!(
                        (want.starts_with("error: ") || want.starts_with("invalid: "))
                            && e.starts_with(&want[..want.find(':').unwrap_or(0)])
                            && e.contains(want.split_once(": ").map(|x| x.1).unwrap_or("")),
                        "docs/workflows.md:{at}: {}\n  expected {want}\n  got      {e}",
                        template.join("\n")
                    ),
                }
                template.clear();
                expected.clear();
                continue;
            }
            let directive = line
                .split_once(": ")
                .filter(|(k, _)| matches!(*k, "event" | "events" | "locale" | "for_each" | "body"));
            match directive {
                Some(("event", json)) => setup.event = Some(serde_json::from_str(json).unwrap()),
                Some(("events", json)) => setup.events = Some(serde_json::from_str(json).unwrap()),
                Some(("locale", tag)) => setup.locale = Some(tag.to_string()),
                Some(("for_each", path)) => setup.for_each = Some(path.to_string()),
                Some(("body", kind)) => setup.html = kind == "html",
                _ => template.push(line),
            }
        }
        assert!(
            template.is_empty(),
            "docs/workflows.md:{}: a template without its → output",
            b.line
        );
    }
    assert!(cases >= 30, "the page lost its template examples ({cases})");
}

/// Every helper a template may call is shown in the page with an example.
#[test]
fn every_helper_is_documented() {
    for name in [
        "upper",
        "lower",
        "urlencode",
        "json",
        "pluralize",
        "default",
        "date",
        "number",
        "money",
    ] {
        assert!(
            DOC.contains(&format!("#### `{name} ")) || DOC.contains(&format!(", `{name} ")),
            "docs/workflows.md has no section for {name}"
        );
        assert!(
            DOC.contains(&format!("{{{{{name} ")),
            "docs/workflows.md has no example of {name}"
        );
    }
}
