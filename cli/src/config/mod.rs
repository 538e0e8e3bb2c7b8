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
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::commands::{Cli, ColorWhen};

/// The file read when neither `--config` nor `HERALD_CONFIG` names one.
pub const DEFAULT_FILE: &str = "herald.toml";

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

/// Whether the command line asks only for help or the version.
fn asks_for_help(argv: &[OsString]) -> bool {
    argv.get(1).and_then(|a| a.to_str()) == Some("help")
        || argv
            .iter()
            .skip(1)
            .any(|a| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version")))
}

/// Parse the process's command line with the configuration file's values
/// applied. Help, version and clap's usage errors exit here, as `Cli::parse`
/// would; a bad configuration file is an error (exit 2).
pub fn parse_args(argv: Vec<OsString>) -> Result<Parsed> {
    let base = Cli::command();
    let first = early(&base, &argv);
    let all = settings(&base);
    // A file that failed to load, set aside in case clap only prints help.
    let (file, set_aside) = file_for(&first, &all, &argv)?;
    let mut command = source::negative_numbers_are_values(match &file {
        Some(f) => apply(base, f),
        None => base,
    });
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
    let matches = match command.try_get_matches_from_mut(&argv) {
        Ok(m) => {
            // Not help after all (a `-h` given as some flag's value): the
            // broken file stops the command as it would have.
            if let Some(e) = set_aside {
                return Err(e);
            }
            for warning in source::unknown_variables(&command) {
                eprintln!("{warning}");
            }
            m
        }
        Err(e) => {
            use clap::error::ErrorKind::{
                DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion,
            };
            match set_aside {
                Some(problem)
                    if matches!(
                        e.kind(),
                        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
                    ) =>
                {
                    eprintln!("herald: {problem:#} (ignored for --help and --version)");
                }
                // A usage error besides the broken file: the file comes first.
                Some(problem) => return Err(problem),
                None => {}
            }
            if let Some(text) = source::from_environment(&e, &command, &argv) {
                eprint!("{text}");
                std::process::exit(e.exit_code());
            }
            e.exit()
        }
    };
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

/// The configuration file this command reads, if any; a file that failed
/// to load is set aside (second) when the command line asks for help.
fn file_for(
    first: &Early,
    all: &[Setting],
    argv: &[OsString],
) -> Result<(Option<ConfigFile>, Option<anyhow::Error>)> {
    let mut set_aside = None;
    let file = if first
        .command
        .as_deref()
        .is_some_and(|c| WITHOUT_FILE.contains(&c))
    {
        None
    } else {
        let loaded = match &first.config {
            Some((path, found)) => Some(load(path, *found, all)),
            None => {
                let here = PathBuf::from(DEFAULT_FILE);
                here.exists().then(|| load(&here, Found::WorkingDir, all))
            }
        };
        match loaded {
            Some(Ok(f)) => Some(f),
            // `--help` and `--version` answer even with a broken file (the
            // help is where one looks up how to fix it); the problem is
            // still said, and every other command refuses to start on it.
            Some(Err(e)) if asks_for_help(argv) => {
                set_aside = Some(e);
                None
            }
            Some(Err(e)) => return Err(e),
            None => None,
        }
    };
    Ok((file, set_aside))
}

mod effective;
mod file;
mod settings;
mod source;
#[cfg(test)]
mod tests;

pub use effective::{Effective, Source};
pub use file::{ConfigFile, Found, load};
use settings::setting_of;
pub use settings::{Key, Kind, Setting, settings};
