//! Reading a workflows directory: the YAML files (recursively, sorted), the
//! template files they name (kept inside the directory, symlinks resolved),
//! and the partials under `templates/partials/`. Only I/O lives here; every
//! problem is collected, located, and nothing stops at the first one.
use std::path::{Component, Path, PathBuf};

use serde_saphyr::Spanned;

use super::Problem;
use super::spec::RawWorkflow;

/// One workflow file, parsed.
pub struct Parsed {
    pub file: PathBuf,
    /// The file's text: inline templates' problems are traced back into it.
    pub yaml: std::sync::Arc<str>,
    pub raw: RawWorkflow,
}

/// A partial: `templates/partials/NAME[.html|.txt].hbs`, registered as NAME.
pub struct Partial {
    pub name: String,
    pub file: PathBuf,
    pub text: String,
}

/// Every YAML file under `dir`, sorted, recursively; a symlink that leads
/// outside the directory is a problem (see [`files_under`]).
pub fn yaml_files(dir: &Path, problems: &mut Vec<Problem>) -> Result<Vec<PathBuf>, Problem> {
    let files = files_under(dir, problems)
        .map_err(|e| Problem::in_file(dir, format!("cannot read workflows directory: {e}")))?;
    Ok(files
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect())
}

/// Every file under `dir`, sorted, recursively. Symlinks are followed only
/// while they stay inside the directory: one that leads out is a problem
/// (templates and partials must not read files elsewhere, and neither may
/// workflows), and a directory reached again (a symlink loop) is read once.
fn files_under(dir: &Path, problems: &mut Vec<Problem>) -> std::io::Result<Vec<PathBuf>> {
    let root = dir.canonicalize()?;
    let mut seen = std::collections::BTreeSet::from([root.clone()]);
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        // Depth first, in order: subdirectories go on the stack reversed.
        let mut subdirs = Vec::new();
        for p in entries {
            let Ok(real) = p.canonicalize() else {
                continue; // a dangling link: nothing to read
            };
            if !real.starts_with(&root) {
                problems.push(Problem::in_file(
                    &p,
                    format!(
                        "a symlink that leads outside the workflows directory (to {}): not read",
                        real.display()
                    ),
                ));
            } else if real.is_dir() {
                if seen.insert(real) {
                    subdirs.push(p);
                }
            } else if real.is_file() {
                out.push(p);
            } else {
                // A FIFO or a device: reading it would block the load (and
                // a reload, and the shutdown behind it) or never end.
                problems.push(Problem::in_file(&p, "not a regular file: not read"));
            }
        }
        todo.extend(subdirs.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

/// A short hash of every file under `dir` (relative paths and contents, in
/// order): two loads of the same files have the same version. Unreadable
/// entries count as their names only.
pub fn version(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let files = files_under(dir, &mut Vec::new()).unwrap_or_default();
    let mut h = Sha256::new();
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        if let Ok(bytes) = std::fs::read(f) {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// serde-saphyr's message without its location prefix and snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let message = match first.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest.to_string(),
        _ => first.to_string(),
    };
    // The parser's advice is about its own API, not the author's file.
    match message.strip_suffix(", set DuplicateKeyPolicy in Options if acceptable") {
        Some(m) => format!("{m} (each key may appear once)"),
        None => message,
    }
}

/// Parse one file; YAML and shape errors come back located.
pub fn parse(file: &Path, text: &str) -> Result<RawWorkflow, Problem> {
    serde_saphyr::from_str::<RawWorkflow>(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let mut message = yaml_message(&e);
        // Only where a mapping came instead of a string: a `{{` starting a
        // line of a badly indented block is another mistake.
        let read_as_mapping =
            message.contains("invalid type: map") || message.contains("expected string scalar");
        if read_as_mapping && let Some(value) = unquoted_template(text, line, col) {
            message.push_str(&format!(
                " (a value that begins with {{{{ must be quoted, or YAML reads it as a mapping: write {value:?})"
            ));
        }
        Problem {
            file: file.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            message,
        }
    })
}

/// The rest of the line at 1-based (line, col) when it is an unquoted
/// template (begins with `{{`).
fn unquoted_template(text: &str, line: u64, col: u64) -> Option<String> {
    let (line, col) = (usize::try_from(line).ok()?, usize::try_from(col).ok()?);
    // Lines as YAML counts them (a lone CR ends one too).
    let rest: String = text
        .replace("\r\n", "\n")
        .split(['\n', '\r'])
        .nth(line.checked_sub(1)?)?
        .chars()
        .skip(col.checked_sub(1)?)
        .collect();
    rest.starts_with("{{").then(|| rest.trim_end().to_string())
}

/// Read and parse every workflow file; unreadable or malformed files become problems.
pub fn read_workflows(files: &[PathBuf], problems: &mut Vec<Problem>) -> Vec<Parsed> {
    let mut out = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::in_file(file, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse(file, &text) {
            Ok(raw) => out.push(Parsed {
                file: file.clone(),
                yaml: text.into(),
                raw,
            }),
            Err(p) => problems.push(p),
        }
    }
    out
}

/// Resolve a template file named by `field` strictly inside `dir`: relative,
/// no `..`, and its canonical path (symlinks followed) under the directory's.
pub fn read_template(
    dir: &Path,
    file: &Path,
    field: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let rel = Path::new(&field.value);
    let at = |message: String| Problem::at(file, &field.referenced, message);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        problems.push(at(format!(
            "template path {:?} must be relative and stay inside the workflows directory",
            field.value
        )));
        return None;
    }
    let path = dir.join(rel);
    let inside = match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => {
            problems.push(at(format!("template file {:?} not found", field.value)));
            return None;
        }
    };
    if !inside {
        problems.push(at(format!(
            "template path {:?} resolves outside the workflows directory",
            field.value
        )));
        return None;
    }
    if !path.is_file() {
        problems.push(at(format!(
            "template path {:?} is not a regular file",
            field.value
        )));
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(at(format!("cannot read template {:?}: {e}", field.value)));
            None
        }
    }
}

/// The partials of `dir` (`templates/partials/*.hbs`), sorted by file name.
pub fn read_partials(dir: &Path, problems: &mut Vec<Problem>) -> Vec<Partial> {
    let pdir = dir.join("templates/partials");
    let Ok(entries) = std::fs::read_dir(&pdir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    // What the directory walk keeps: a regular file inside the directory.
    let readable = |p: &Path| match (p.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d) && p.is_file(),
        _ => false,
    };
    let mut out = Vec::new();
    for p in paths {
        if !readable(&p) {
            // Reported by the walk (outside, not a regular file); a dangling
            // link has nothing to read, and a use of it is an unknown partial.
            continue;
        }
        let Some(stem) = p
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".hbs"))
        else {
            continue;
        };
        let name = stem
            .trim_end_matches(".html")
            .trim_end_matches(".txt")
            .to_string();
        match std::fs::read_to_string(&p) {
            Ok(text) => out.push(Partial {
                name,
                file: p,
                text,
            }),
            Err(e) => problems.push(Problem::in_file(&p, format!("cannot read partial: {e}"))),
        }
    }
    out
}

/// A locale tag as Herald accepts it in file names: `de`, `de-AT`, `pt-BR`,
/// `zh-Hant-TW` (letters and digits, `-` between subtags).
pub fn is_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The locale variants of a body template file: for `templates/welcome.txt.hbs`,
/// the files `templates/welcome.txt.{locale}.hbs` beside it, as (locale, path
/// relative to the workflows directory), sorted.
pub fn locale_variants(dir: &Path, rel: &str) -> Vec<(String, String)> {
    let Some(stem) = rel.strip_suffix(".hbs") else {
        return Vec::new();
    };
    let path = Path::new(stem);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir.join(parent)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let f = e.file_name().into_string().ok()?;
            let locale = f
                .strip_prefix(name)?
                .strip_prefix('.')?
                .strip_suffix(".hbs")?;
            is_locale(locale).then(|| {
                let rel = parent.join(&f).to_string_lossy().into_owned();
                (locale.to_string(), rel)
            })
        })
        .collect();
    out.sort();
    out
}
