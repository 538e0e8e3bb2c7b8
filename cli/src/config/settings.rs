//! The settings: every flag with an environment variable, its key in the
//! file, and how a file value is checked against the flag's parser.
use std::collections::BTreeMap;

use anyhow::Result;
use clap::builder::ValueParser;
use clap::{Arg, ArgAction, Command};

use crate::commands::GLOBAL_HEADING;

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
pub(super) fn setting_of(arg: &Arg, path: &[&str]) -> Option<Setting> {
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

pub(super) fn is_integer(p: &ValueParser) -> bool {
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
