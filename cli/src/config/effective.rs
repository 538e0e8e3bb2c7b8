//! `herald config`'s view: each setting's effective value and its source.

use anyhow::Result;
use clap::CommandFactory;
use clap::parser::ValueSource;

use super::{Loaded, Setting, settings};
use crate::commands::{Cli, usage};

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
