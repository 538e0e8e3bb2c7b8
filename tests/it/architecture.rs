//! ARCHITECTURE.md against the tree: its code map names every module of the
//! library and the binary (one line each) and nothing that is gone; every
//! source path it names exists, and every function it names as the place to
//! look is in that file; no source file grows past ~400 lines without saying
//! why.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use herald_tests::workspace_root;

fn architecture() -> String {
    std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap()
}

/// The `.rs` files under `dir`, relative to it, with `/` separators.
fn rust_files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

/// The paths a code-map section lists: the backquoted `.rs` names before
/// the dash of each of its `- ` lines.
fn code_map_section(text: &str, heading: &str) -> BTreeSet<String> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no heading {heading}"));
    let body = &text[start + heading.len()..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    let mut out = BTreeSet::new();
    for line in body.lines().filter(|l| l.starts_with("- `")) {
        let names = line.split(" — ").next().unwrap_or("");
        for name in names.split('`').skip(1).step_by(2) {
            if name.ends_with(".rs") {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn the_code_map_lists_every_module_once_and_nothing_gone() {
    let text = architecture();
    let mut problems = Vec::new();
    for (heading, dir) in [
        ("### `engine/src`", "engine/src"),
        ("### `cli/src`", "cli/src"),
    ] {
        let listed = code_map_section(&text, heading);
        let present = rust_files(&workspace_root().join(dir));
        for missing in present.difference(&listed) {
            problems.push(format!("{dir}/{missing} is not in the code map"));
        }
        for gone in listed.difference(&present) {
            problems.push(format!(
                "the code map lists {dir}/{gone}, which does not exist"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

/// Every `engine/src/…` or `cli/src/…` path in the text, and the backquoted
/// name right after it in parentheses, if any (`path` (`name`: …)).
fn named_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let quoted: Vec<&str> = text.split('`').collect();
    for (i, q) in quoted.iter().enumerate().skip(1).step_by(2) {
        if !(q.starts_with("engine/src/") || q.starts_with("cli/src/")) {
            continue;
        }
        let after = quoted.get(i + 1).copied().unwrap_or("");
        let name = (after == " (")
            .then(|| quoted.get(i + 2).map(|s| s.to_string()))
            .flatten();
        out.push((q.to_string(), name));
    }
    out
}

#[test]
fn where_to_look_names_files_and_functions_that_exist() {
    let text = architecture();
    let root = workspace_root();
    let mut problems = Vec::new();
    let paths = named_paths(&text);
    let functions = paths.iter().filter(|(_, name)| name.is_some()).count();
    assert!(
        paths.len() >= 8 && functions >= 10,
        "too few paths found: {paths:?}"
    );
    for (path, name) in paths {
        let file: PathBuf = root.join(&path);
        if path.ends_with('/') {
            if !file.is_dir() {
                problems.push(format!("{path} does not exist"));
            }
            continue;
        }
        let Ok(source) = std::fs::read_to_string(&file) else {
            problems.push(format!("{path} does not exist"));
            continue;
        };
        if let Some(name) = name.filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_')) {
            let defines = ["fn ", "struct ", "enum ", "trait ", "type ", "const "]
                .iter()
                .any(|k| source.contains(&format!("{k}{name}")));
            if !defines {
                problems.push(format!("{path} defines no {name}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

/// A file over the limit must say why, in a comment beginning with this.
const REASON: &str = "Over 400 lines, and left so:";

#[test]
fn no_source_file_is_over_400_lines_without_a_reason() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for dir in [
        "engine/src",
        "cli/src",
        "entities/src",
        "migration/src",
        "tests/harness",
        "tests/it",
    ] {
        for rel in rust_files(&root.join(dir)) {
            let source = std::fs::read_to_string(root.join(dir).join(&rel)).unwrap();
            let lines = source.lines().count();
            if lines > 400 && !source.contains(REASON) {
                problems.push(format!("{dir}/{rel}: {lines} lines"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "split these files by subject, or say why not in a comment beginning {REASON:?}:\n{}",
        problems.join("\n")
    );
}
