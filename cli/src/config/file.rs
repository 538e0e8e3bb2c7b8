//! The file itself: read, parsed with positions, every key and value
//! checked; problems at FILE:LINE:COL with "did you mean".
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Key, Kind, Setting};
use crate::commands::usage;

/// How the file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Flag,
    Env,
    WorkingDir,
}

/// A position in the file, 1-based (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One value of the file, as the string clap takes.
#[derive(Debug, Clone)]
pub struct FileValue {
    pub raw: String,
    pub at: Pos,
}

/// A configuration file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub found: Found,
    pub values: BTreeMap<Key, FileValue>,
}

impl ConfigFile {
    pub fn at(&self, p: Pos) -> String {
        format!("{}:{}:{}", self.path.display(), p.line, p.col)
    }

    /// How the file was chosen, for `herald config`.
    pub fn how(&self) -> &'static str {
        match self.found {
            Found::Flag => "--config",
            Found::Env => "HERALD_CONFIG",
            Found::WorkingDir => "found in the working directory",
        }
    }
}

/// Byte offset → line and column.
pub(super) fn position(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    Pos { line, col }
}

/// Read and check a configuration file against `settings`. Every problem
/// is reported, one `FILE:LINE:COL: message` line each.
pub fn load(path: &Path, found: Found, settings: &[Setting]) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let named = match found {
            Found::Flag => format!("--config {}", path.display()),
            Found::Env => format!("HERALD_CONFIG={}", path.display()),
            Found::WorkingDir => path.display().to_string(),
        };
        usage(format!("cannot read the configuration file {named}: {e}"))
    })?;
    parse(&text, path, found, settings).map_err(|problems| match problems.as_slice() {
        [one] => usage(one),
        _ => usage(format!(
            "{} problems in {}:\n{}",
            problems.len(),
            path.display(),
            problems.join("\n")
        )),
    })
}

/// Parse and check the text of a configuration file.
pub fn parse(
    text: &str,
    path: &Path,
    found: Found,
    settings: &[Setting],
) -> Result<ConfigFile, Vec<String>> {
    use toml::de::DeTable;
    let at = |offset: usize| {
        let p = position(text, offset);
        format!("{}:{}:{}", path.display(), p.line, p.col)
    };
    let root = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        vec![format!(
            "{}: invalid TOML: {}",
            at(offset),
            e.message().trim()
        )]
    })?;
    let by_key: BTreeMap<&Key, &Setting> = settings.iter().map(|s| (&s.key, s)).collect();
    let sections: BTreeSet<&str> = settings
        .iter()
        .filter_map(|s| s.key.section.as_deref())
        .collect();
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    let entries = entries(root.get_ref(), &sections, &at, &mut problems);
    for (section, k, v) in entries {
        let key = Key {
            section: section.clone(),
            name: k.get_ref().to_string(),
        };
        let Some(setting) = by_key.get(&key) else {
            problems.push((
                k.span().start,
                format!("{}: {}", at(k.span().start), unknown_key(&key, settings)),
            ));
            continue;
        };
        let raw = match raw_value(setting, &key, v.get_ref()) {
            Ok(raw) => raw,
            Err(m) => {
                problems.push((v.span().start, format!("{}: {m}", at(v.span().start))));
                continue;
            }
        };
        values.insert(
            key,
            FileValue {
                raw,
                at: position(text, v.span().start),
            },
        );
    }
    if problems.is_empty() {
        Ok(ConfigFile {
            path: path.to_path_buf(),
            found,
            values,
        })
    } else {
        problems.sort();
        Err(problems.into_iter().map(|(_, p)| p).collect())
    }
}

/// (section, key, value) of every setting the file gives.
type Entry<'a, 'i> = (
    Option<String>,
    &'a toml::Spanned<toml::de::DeString<'i>>,
    &'a toml::Spanned<toml::de::DeValue<'i>>,
);

/// The file's settings, at the top level and in known sections; an unknown
/// section is a problem.
fn entries<'a, 'i>(
    root: &'a toml::de::DeTable<'i>,
    sections: &BTreeSet<&str>,
    at: &impl Fn(usize) -> String,
    problems: &mut Vec<(usize, String)>,
) -> Vec<Entry<'a, 'i>> {
    use toml::de::DeValue;
    let mut entries: Vec<Entry> = Vec::new();
    for (k, v) in root {
        match v.get_ref() {
            DeValue::Table(t) if sections.contains(k.get_ref().as_ref()) => {
                for (k2, v2) in t {
                    entries.push((Some(k.get_ref().to_string()), k2, v2));
                }
            }
            DeValue::Table(_) => problems.push((
                k.span().start,
                format!(
                    "{}: unknown section [{}]{}",
                    at(k.span().start),
                    k.get_ref(),
                    hint(k.get_ref(), sections.iter().copied())
                ),
            )),
            _ => entries.push((None, k, v)),
        }
    }
    entries
}

/// A file value as the text clap is given for `setting`, or why it is not
/// one (the message without its position).
fn raw_value(setting: &Setting, key: &Key, v: &toml::de::DeValue) -> Result<String, String> {
    use toml::de::DeValue;
    let raw = match (setting.kind, v) {
        (Kind::Integer, DeValue::Integer(i)) => i64::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|e| format!("{key}: {e}"))?,
        (Kind::Bool, DeValue::Boolean(b)) => b.to_string(),
        (Kind::Text, DeValue::String(s)) => s.to_string(),
        (kind, other) => {
            let wanted = match kind {
                Kind::Integer => "an integer",
                Kind::Bool => "true or false",
                Kind::Text => "a string",
            };
            return Err(format!("{key} must be {wanted}, not {}", describe(other)));
        }
    };
    setting
        .check(&raw)
        .map_err(|reason| format!("invalid {key} {:?}: {reason}", setting.shown(&raw)))?;
    Ok(raw)
}

fn describe(v: &toml::de::DeValue) -> String {
    use toml::de::DeValue;
    match v {
        DeValue::String(_) => "a string".into(),
        DeValue::Integer(_) => "an integer".into(),
        DeValue::Float(_) => "a float".into(),
        DeValue::Boolean(_) => "a boolean".into(),
        DeValue::Datetime(_) => "a date-time".into(),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// Why a key is unknown, with the fix when there is an obvious one.
fn unknown_key(key: &Key, settings: &[Setting]) -> String {
    let elsewhere: Vec<String> = settings
        .iter()
        .filter(|s| s.key.name == key.name && s.key.section != key.section)
        .map(|s| match &s.key.section {
            Some(sec) => format!("in [{sec}]"),
            None => "at the top level (before any [section])".to_string(),
        })
        .collect();
    if key.section.is_none()
        && settings
            .iter()
            .any(|s| s.key.section.as_deref() == Some(&key.name))
    {
        return format!(
            "{:?} is a section: write [{}] on a line of its own, then its keys",
            key.name, key.name
        );
    }
    let place = match &key.section {
        Some(s) => format!("in [{s}]"),
        None => "at the top level".to_string(),
    };
    if !elsewhere.is_empty() {
        return format!(
            "unknown key {:?} {place}: it belongs {}",
            key.name,
            elsewhere.join(" or ")
        );
    }
    let near = settings
        .iter()
        .filter(|s| s.key.section == key.section)
        .map(|s| s.key.name.as_str());
    format!(
        "unknown key {:?} {place}{}",
        key.name,
        hint(&key.name, near)
    )
}

pub(super) fn hint<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::jaro(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}
