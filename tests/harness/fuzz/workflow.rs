//! Targets `workflow_load` (a workflows directory from bytes, loaded and
//! rendered) and `render` (a payload through an example workflow).
use std::path::{Component, Path};

use serde_json::{Value, json};

use super::{examples, meta, on_worker_stack, render_all};

/// A directory of files as one input: text before the first marker line is
/// `workflow.yaml`; a line `%%% PATH` starts the file PATH (relative; only
/// `[A-Za-z0-9._-]` in its parts). `payload.json`, if given, is the payload
/// a loaded workflow is rendered with (besides a few fixed ones).
fn files_of(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![("workflow.yaml".into(), Vec::new())];
    for line in data.split_inclusive(|b| *b == b'\n') {
        if let Some(path) = line.strip_prefix(b"%%% ") {
            let path = String::from_utf8_lossy(path).trim().to_string();
            files.push((path, Vec::new()));
        } else if let Some((_, text)) = files.last_mut() {
            text.extend_from_slice(line);
        }
    }
    files.retain(|(path, _)| is_safe_path(path));
    files.truncate(16);
    files
}

fn is_safe_path(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && path.len() <= 120
        && p.components().count() <= 4
        && p.components().all(|c| match c {
            Component::Normal(s) => s.to_str().is_some_and(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            }),
            _ => false,
        })
}

/// Target `workflow_load`: a workflows directory (YAML, templates,
/// partials) through `herald::workflow::load`; what loads is rendered on a
/// worker's stack with a few payloads. Finds: panics, stack overflows and
/// hangs in loading or rendering, and templates that validation passes but
/// that fail to render whatever the payload.
pub fn workflow_load(data: &[u8]) {
    let files = files_of(data);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut payload = None;
    for (path, text) in &files {
        let p = dir.path().join(path);
        if let Some(parent) = p.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            continue;
        }
        // A path that is a directory already (`a` then `a/b`): skip it.
        let _ = std::fs::write(&p, text);
        if path == "payload.json" {
            payload = serde_json::from_slice::<Value>(text).ok();
        }
    }
    let catalog = match herald::workflow::load(dir.path()) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                assert!(p.line >= 1 && p.col >= 1, "problem without a position: {p}");
                assert!(
                    p.file.starts_with(dir.path()),
                    "problem outside the directory: {p}"
                );
                // A position traced into a file is a place in that file
                // (lines as YAML counts them: a lone CR breaks a line too).
                if let Ok(text) = std::fs::read_to_string(&p.file) {
                    let lines = (text
                        .replace("\r\n", "\n")
                        .replace('\r', "\n")
                        .lines()
                        .count()
                        .max(1)) as u64;
                    assert!(
                        p.line <= lines + 1,
                        "problem past the file's end ({lines} lines): {p}"
                    );
                }
            }
            let _ = problems.to_string();
            return;
        }
    };
    let mut payloads = vec![
        json!({}),
        json!({"name": "Ada", "email": "ada@example.com", "at": "2026-03-01T12:30:00Z",
               "items": [{"name": "x", "email": "x@example.com"}], "n": 2, "flag": true}),
    ];
    payloads.extend(payload);
    on_worker_stack(|| {
        for wf in &catalog.workflows {
            let subject = wf
                .subjects
                .first()
                .map(|s| s.replace(['*', '>'], "x"))
                .unwrap_or_default();
            let m = meta(wf, &subject);
            for p in &payloads {
                render_all(&catalog, wf, p, &m);
            }
        }
    });
}

/// Target `render`: an arbitrary payload through one of the example
/// workflows (`workflows/*.yaml`). The first byte picks the workflow; the
/// rest is the payload's JSON (an array is a digest's events). Finds:
/// panics and stack overflows in guards, `for_each`, templates, helpers,
/// address parsing and building the message.
pub fn render(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let catalog = examples();
    let Some(wf) = catalog
        .workflows
        .get(usize::from(pick) % catalog.workflows.len())
    else {
        return;
    };
    let subject = wf.subjects.first().cloned().unwrap_or_default();
    let m = meta(wf, &subject);
    on_worker_stack(|| render_all(catalog, wf, &payload, &m));
}
