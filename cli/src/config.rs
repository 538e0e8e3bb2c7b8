//! `herald.toml`: where it is, what it may hold, and how its values reach
//! clap. A setting is a flag that has an environment variable; its key is the
//! flag's long name with `_`, at the top level for the global flags and in
//! the section named by the flag's help heading otherwise (`[relay]`,
//! `[worker]`, `[http]`, `[up]`). The file's values become the arguments'
//! defaults before the command line is parsed, so clap keeps doing the
//! layering: flag > environment > file > built-in default. Every key and
//! value of the file is checked before that, against every command's
//! settings (not only the running one's), and each problem names
//! FILE:LINE:COL.
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::commands::{Cli, ColorWhen, GLOBAL_HEADING, usage};

/// The file read when neither `--config` nor `HERALD_CONFIG` names one.
pub const DEFAULT_FILE: &str = "herald.toml";

/// Global flags that are not settings of the file: the file itself.
const NOT_IN_FILE: &[&str] = &["config"];

/// Where a setting lives in the file: `section` is `None` at the top level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub section: Option<String>,
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.section {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What TOML type a setting's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Bool,
    Text,
}

/// One setting: a flag with an environment variable.
#[derive(Clone)]
pub struct Setting {
    pub key: Key,
    pub id: String,
    pub long: String,
    pub env: String,
    /// Its value is never printed whole (`hide_env_values`): URLs are shown
    /// redacted, anything else as `***`.
    pub secret: bool,
    pub kind: Kind,
    pub defaults: Vec<String>,
    parser: ValueParser,
    action: ArgAction,
}

impl Setting {
    /// Check one value the way clap checks the flag's, without the rest of
    /// the command line: `Err` is the reason, in clap's words.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let arg = Arg::new(self.id.clone())
            .long(self.long.clone())
            .action(self.action.clone())
            .value_parser(self.parser.clone());
        let probe = Command::new("herald")
            .no_binary_name(true)
            .disable_help_flag(true)
            .arg(arg);
        let args = match self.kind {
            Kind::Bool if value == "true" => vec![format!("--{}", self.long)],
            Kind::Bool => vec![],
            _ => vec![format!("--{}={value}", self.long)],
        };
        match probe.try_get_matches_from(args) {
            Ok(_) => Ok(()),
            Err(e) => Err(clap_reason(&e)),
        }
    }

    /// The value as people should see it.
    pub fn shown(&self, value: &str) -> String {
        if !self.secret {
            value.to_string()
        } else if value.contains("://") {
            herald::secret::redact_url(value)
        } else {
            herald::secret::REDACTED.to_string()
        }
    }
}

/// The reason of a clap value error without clap's framing ("error: …",
/// "For more information…"): the value parser's own message, or the values
/// that are possible.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    e.kind().to_string()
}

/// Every setting of every command, once each (the relay's settings are also
/// `up`'s and `demo`'s).
pub fn settings(cmd: &Command) -> Vec<Setting> {
    let mut out: BTreeMap<Key, Setting> = BTreeMap::new();
    collect(cmd, &[], &mut out);
    out.into_values().collect()
}

fn collect(cmd: &Command, path: &[&str], out: &mut BTreeMap<Key, Setting>) {
    for arg in cmd.get_arguments() {
        if let Some(s) = setting_of(arg, path) {
            out.entry(s.key.clone()).or_insert(s);
        }
    }
    for sub in cmd.get_subcommands() {
        let mut p = path.to_vec();
        p.push(sub.get_name());
        collect(sub, &p, out);
    }
}

/// The file's key of an argument: `None` when it is not a setting.
fn setting_of(arg: &Arg, path: &[&str]) -> Option<Setting> {
    let env = arg.get_env()?.to_string_lossy().into_owned();
    let long = arg.get_long()?.to_string();
    let id = arg.get_id().as_str().to_string();
    if NOT_IN_FILE.contains(&id.as_str()) {
        return None;
    }
    let section = match arg.get_help_heading() {
        Some(GLOBAL_HEADING) => None,
        Some(h) => Some(h.trim_end_matches(" options").to_ascii_lowercase()),
        None if arg.is_global_set() || path.is_empty() => None,
        None => Some(path.join(".")),
    };
    let parser = arg.get_value_parser().clone();
    let kind = if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        Kind::Bool
    } else if is_integer(&parser) {
        Kind::Integer
    } else {
        Kind::Text
    };
    Some(Setting {
        key: Key {
            section,
            name: long.replace('-', "_"),
        },
        id,
        long,
        env,
        secret: arg.is_hide_env_values_set(),
        kind,
        defaults: arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect(),
        parser,
        action: arg.get_action().clone(),
    })
}

fn is_integer(p: &ValueParser) -> bool {
    use std::any::TypeId;
    let t = p.type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]
    .into_iter()
    .any(|id| t == id)
}

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
fn position(text: &str, offset: usize) -> Pos {
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
    use toml::de::{DeTable, DeValue};
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
    // (section, key, value) of every setting the file gives.
    type Entry<'a, 'i> = (
        Option<String>,
        &'a toml::Spanned<toml::de::DeString<'i>>,
        &'a toml::Spanned<DeValue<'i>>,
    );
    let mut entries: Vec<Entry> = Vec::new();
    for (k, v) in root.get_ref() {
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
        let raw = match (setting.kind, v.get_ref()) {
            (Kind::Integer, DeValue::Integer(i)) => {
                match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => n.to_string(),
                    Err(e) => {
                        problems.push((
                            v.span().start,
                            format!("{}: {key}: {e}", at(v.span().start)),
                        ));
                        continue;
                    }
                }
            }
            (Kind::Bool, DeValue::Boolean(b)) => b.to_string(),
            (Kind::Text, DeValue::String(s)) => s.to_string(),
            (kind, other) => {
                let wanted = match kind {
                    Kind::Integer => "an integer",
                    Kind::Bool => "true or false",
                    Kind::Text => "a string",
                };
                problems.push((
                    v.span().start,
                    format!(
                        "{}: {key} must be {wanted}, not {}",
                        at(v.span().start),
                        describe(other)
                    ),
                ));
                continue;
            }
        };
        if let Err(reason) = setting.check(&raw) {
            problems.push((
                v.span().start,
                format!(
                    "{}: invalid {key} {:?}: {reason}",
                    at(v.span().start),
                    setting.shown(&raw)
                ),
            ));
            continue;
        }
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

fn hint<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::jaro(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// The file's values as the defaults of the arguments they set.
fn apply(cmd: Command, file: &ConfigFile) -> Command {
    apply_at(cmd, file, &[])
}

fn apply_at(cmd: Command, file: &ConfigFile, path: &[String]) -> Command {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let cmd = cmd.mut_args(|arg| {
        let Some(s) = setting_of(&arg, &p) else {
            return arg;
        };
        match file.values.get(&s.key) {
            // A secret's file value must not appear in --help as a default.
            Some(v) => arg
                .default_value(v.raw.clone())
                .hide_default_value(s.secret),
            None => arg,
        }
    });
    cmd.mut_subcommands(|sub| {
        let mut p = path.to_vec();
        p.push(sub.get_name().to_string());
        apply_at(sub, file, &p)
    })
}

/// What the command line says before the file is read: which file, which
/// colour, which command. Parsed leniently (help and errors are left to
/// the real parse).
struct Early {
    config: Option<(PathBuf, Found)>,
    color: Option<ColorWhen>,
    command: Option<String>,
}

fn quiet(cmd: Command) -> Command {
    cmd.disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .mut_subcommands(quiet)
}

fn early(cmd: &Command, argv: &[OsString]) -> Early {
    let Ok(m) = quiet(cmd.clone())
        .ignore_errors(true)
        .try_get_matches_from(argv)
    else {
        return Early {
            config: None,
            color: None,
            command: None,
        };
    };
    let config = m.get_one::<PathBuf>("config").map(|p| {
        let found = match m.value_source("config") {
            Some(ValueSource::EnvVariable) => Found::Env,
            _ => Found::Flag,
        };
        (p.clone(), found)
    });
    Early {
        config,
        // Only when said: a default must not hide the file's `color`.
        color: match m.value_source("color") {
            Some(ValueSource::CommandLine | ValueSource::EnvVariable) => {
                m.get_one::<ColorWhen>("color").copied()
            }
            _ => None,
        },
        command: m.subcommand_name().map(str::to_string),
    }
}

/// The parsed command line, and what `herald config` needs to explain it.
pub struct Parsed {
    pub cli: Cli,
    pub loaded: Loaded,
}

/// The configuration as loaded: the file (if any), the command with the
/// file's defaults, and the top-level matches (for where each global came from).
pub struct Loaded {
    pub file: Option<ConfigFile>,
    pub command: Command,
    pub matches: ArgMatches,
}

/// Commands that never read the configuration file: they describe the
/// command line itself (and packagers run them anywhere).
const WITHOUT_FILE: &[&str] = &["completions", "man"];

/// Parse the process's command line with the configuration file's values
/// applied. Help, version and clap's usage errors exit here, as `Cli::parse`
/// would; a bad configuration file is an error (exit 2).
pub fn parse_args(argv: Vec<OsString>) -> Result<Parsed> {
    let base = Cli::command();
    let first = early(&base, &argv);
    let all = settings(&base);
    let file = if first
        .command
        .as_deref()
        .is_some_and(|c| WITHOUT_FILE.contains(&c))
    {
        None
    } else {
        match first.config {
            Some((path, found)) => Some(load(&path, found, &all)?),
            None => {
                let here = PathBuf::from(DEFAULT_FILE);
                if here.exists() {
                    Some(load(&here, Found::WorkingDir, &all)?)
                } else {
                    None
                }
            }
        }
    };
    let mut command = match &file {
        Some(f) => apply(base, f),
        None => base,
    };
    // The colour of clap's own help and errors; `--color` in the file counts too.
    let color = first.color.or_else(|| {
        file.as_ref()
            .and_then(|f| {
                f.values.get(&Key {
                    section: None,
                    name: "color".into(),
                })
            })
            .and_then(|v| <ColorWhen as clap::ValueEnum>::from_str(&v.raw, true).ok())
    });
    command = command.color(crate::commands::clap_color(
        color.unwrap_or(ColorWhen::Auto),
    ));
    let matches = command
        .try_get_matches_from_mut(&argv)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok(Parsed {
        cli,
        loaded: Loaded {
            file,
            command,
            matches,
        },
    })
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    File(String),
    Default,
    Unset,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Flag(_) => "flag",
            Source::Env(_) => "env",
            Source::File(_) => "file",
            Source::Default => "default",
            Source::Unset => "unset",
        }
    }

    /// The flag, variable or FILE:LINE:COL it came from.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Source::Flag(s) | Source::Env(s) | Source::File(s) => Some(s),
            Source::Default | Source::Unset => None,
        }
    }
}

/// One setting's effective value (`None`: not set) and where it came from.
pub struct Effective {
    pub setting: Setting,
    pub value: Option<String>,
    pub source: Source,
}

impl Loaded {
    /// Every setting's effective value. The global settings are read from
    /// this command line; the others (which only their commands take as
    /// flags) from the environment, the file and the defaults, each checked
    /// as clap would check it.
    pub fn effective(&self) -> Result<Vec<Effective>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for s in settings(&Cli::command()) {
            let file_value = self.file.as_ref().and_then(|f| {
                f.values
                    .get(&s.key)
                    .map(|v| (v.raw.clone(), Source::File(f.at(v.at))))
            });
            let (value, source) = if s.key.section.is_none() {
                let value = self.matches.get_raw(&s.id).map(|vals| {
                    vals.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                });
                let source = match self.matches.value_source(&s.id) {
                    Some(ValueSource::CommandLine) => Source::Flag(format!("--{}", s.long)),
                    Some(ValueSource::EnvVariable) => Source::Env(s.env.clone()),
                    Some(ValueSource::DefaultValue) => match &file_value {
                        Some((_, src)) => src.clone(),
                        None => Source::Default,
                    },
                    _ => Source::Unset,
                };
                (value, source)
            } else if let Some(v) = std::env::var_os(&s.env) {
                let v = v.to_string_lossy().into_owned();
                if let Err(reason) = s.check(&v) {
                    problems.push(format!("invalid {}={:?}: {reason}", s.env, s.shown(&v)));
                }
                (Some(v), Source::Env(s.env.clone()))
            } else if let Some((v, src)) = file_value {
                (Some(v), src)
            } else if !s.defaults.is_empty() {
                (Some(s.defaults.join(",")), Source::Default)
            } else {
                (None, Source::Unset)
            };
            let source = if value.is_none() {
                Source::Unset
            } else {
                source
            };
            out.push(Effective {
                setting: s,
                value,
                source,
            });
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(usage(problems.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ConfigFile, Vec<String>> {
        parse(
            text,
            Path::new("h.toml"),
            Found::Flag,
            &settings(&Cli::command()),
        )
    }

    #[test]
    fn every_setting_has_a_known_section() {
        let all = settings(&Cli::command());
        let sections: BTreeSet<_> = all.iter().map(|s| s.key.section.clone()).collect();
        let known: BTreeSet<Option<String>> = [
            None,
            Some("relay"),
            Some("worker"),
            Some("http"),
            Some("up"),
        ]
        .into_iter()
        .map(|s| s.map(str::to_string))
        .collect();
        assert!(
            sections.is_subset(&known),
            "a setting outside the documented sections: {sections:?}"
        );
        for name in [
            "database_url",
            "nats_url",
            "smtp_url",
            "workflows",
            "stream",
        ] {
            assert!(
                all.iter()
                    .any(|s| s.key.section.is_none() && s.key.name == name),
                "{name}"
            );
        }
        assert!(all.iter().all(|s| s.key.name != "config"));
    }

    #[test]
    fn values_are_kept_with_their_position() {
        let f = check("stream = \"S\"\n\n[relay]\nrelay_batch = 7\n").unwrap();
        let v = &f.values[&Key {
            section: Some("relay".into()),
            name: "relay_batch".into(),
        }];
        assert_eq!(v.raw, "7");
        assert_eq!(v.at, Pos { line: 4, col: 15 });
    }

    #[test]
    fn problems_name_file_line_col() {
        let e = check("strem = \"S\"\n[relay]\nrelay_batch = \"many\"\nconcurrency = 3\n[wrker]\n")
            .unwrap_err();
        let all = e.join("\n");
        assert!(
            all.contains(
                "h.toml:1:1: unknown key \"strem\" at the top level (did you mean \"stream\"?)"
            ),
            "{all}"
        );
        assert!(
            all.contains("h.toml:3:15: relay.relay_batch must be an integer, not a string"),
            "{all}"
        );
        assert!(
            all.contains(
                "h.toml:4:1: unknown key \"concurrency\" in [relay]: it belongs in [worker]"
            ),
            "{all}"
        );
        assert!(
            all.contains("h.toml:5:2: unknown section [wrker] (did you mean \"worker\"?)"),
            "{all}"
        );
        let e = check("[relay]\nrelay_batch = 0\nrelay_poll = \"soon\"\n").unwrap_err();
        assert!(
            e[0].starts_with("h.toml:2:15: invalid relay.relay_batch \"0\": 0 is not in 1..=10000"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("h.toml:3:14: invalid relay.relay_poll \"soon\""),
            "{e:?}"
        );
        let e = check("relay = 5\n").unwrap_err();
        assert!(
            e[0].contains("\"relay\" is a section: write [relay]"),
            "{e:?}"
        );
        let e = check("log_format = \"xml\"\n").unwrap_err();
        assert!(e[0].contains("expected one of text, json"), "{e:?}");
        let e = check("stream = \n").unwrap_err();
        assert!(e[0].starts_with("h.toml:1:"), "{e:?}");
        assert!(e[0].contains("invalid TOML"), "{e:?}");
    }

    #[test]
    fn secrets_are_not_echoed_in_problems() {
        let e = check("[http]\nhttp_token = 5\n").unwrap_err();
        assert!(e[0].contains("must be a string"), "{e:?}");
        let e = check("database_url = \"postgres://u:hunter2@h/d\"\nnats_url = 7\n").unwrap_err();
        assert!(!e.join("").contains("hunter2"));
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(position("é = 1\nab", 7), Pos { line: 2, col: 1 });
        assert_eq!(position("é = 1", 4), Pos { line: 1, col: 4 });
    }
}
