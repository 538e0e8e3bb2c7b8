//! The fuzz targets' saved inputs, replayed through the same entry points
//! (`herald_tests::fuzz`) on every test run, without cargo-fuzz: the seeds
//! (`fuzz/seeds/TARGET/`) and every input that once found a bug
//! (`fuzz/regressions/TARGET/`, named after the bug). `scripts/fuzz.sh`
//! runs the fuzzers themselves.
use std::path::PathBuf;

use herald_tests::{fuzz, workspace_root};

/// Every saved input of `target`, sorted; at least one seed each.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = workspace_root().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, bytes));
        }
    }
    assert!(
        !out.is_empty(),
        "no saved inputs for the fuzz target {target}"
    );
    out
}

/// Feed each saved input of `target` to `entry`, naming the file that fails.
fn replay(target: &str, entry: fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        eprintln!("{target}: {}", path.display());
        entry(&bytes);
    }
}

#[test]
fn fuzz_inputs_workflow_load() {
    replay("workflow_load", fuzz::workflow_load);
}

#[test]
fn fuzz_inputs_render() {
    replay("render", fuzz::render);
}

#[test]
fn fuzz_inputs_stream_message() {
    replay("stream_message", fuzz::stream_message);
}

#[test]
fn fuzz_inputs_urls() {
    replay("urls", fuzz::urls);
}

#[test]
fn fuzz_inputs_duration() {
    replay("duration", fuzz::duration);
}
