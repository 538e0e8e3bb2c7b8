//! Where a bad value came from. clap names the flag even when the value
//! came from the flag's environment variable, which sent users looking
//! for a flag they never typed; and it reads `-1` after a numeric flag as
//! an unknown flag rather than as a value to check.
use std::ffi::OsString;

use std::collections::BTreeSet;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command};

/// clap's message for `e`, naming the environment variable instead of the
/// flag when the bad value came from there (the value itself hidden for a
/// secret); `None` when the flag was on the command line or `e` is not
/// about a value.
pub fn from_environment(e: &clap::Error, cmd: &Command, argv: &[OsString]) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = shown.strip_prefix("--")?.split([' ', '=']).next()?;
    let on_line = argv.iter().any(|a| {
        a.to_str().is_some_and(|a| {
            a.strip_prefix("--")
                .is_some_and(|rest| rest == long || rest.starts_with(&format!("{long}=")))
        })
    });
    if on_line {
        return None;
    }
    let arg = find(cmd, long)?;
    let env = arg.get_env()?.to_string_lossy().into_owned();
    std::env::var_os(&env)?;
    let mut text = e.render().to_string().replace(
        &format!("'{shown}'"),
        &format!("{env} (the environment variable of --{long})"),
    );
    if arg.is_hide_env_values_set()
        && let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue)
        && !value.is_empty()
    {
        text = text.replace(value.as_str(), "<hidden>");
    }
    Some(text)
}

/// The argument with long name `long`, in `cmd` or any subcommand.
fn find<'c>(cmd: &'c Command, long: &str) -> Option<&'c Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| cmd.get_subcommands().find_map(|s| find(s, long)))
}

/// Numeric flags take `-1` as a value (then refused by their range, with
/// the reason) instead of as an unknown flag.
pub fn negative_numbers_are_values(cmd: Command) -> Command {
    cmd.mut_args(|a| {
        if super::settings::is_integer(a.get_value_parser()) {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    })
    .mut_subcommands(negative_numbers_are_values)
}

/// `HERALD_*` variables Herald reads besides its settings' (the nats-server
/// `up` starts, the test suite's failpoints and harness).
const OTHER_VARIABLES: [&str; 3] = ["HERALD_NATS_SERVER_BIN", "HERALD_FAILPOINT", "HERALD_BIN"];
const OTHER_PREFIXES: [&str; 2] = ["HERALD_TEST_", "HERALD_BENCH_"];

/// One warning per `HERALD_*` variable in the environment that no setting
/// reads: a misspelt name (`HERALD_CONCURRENCY` for
/// `HERALD_WORKER_CONCURRENCY`) was silently ignored.
pub fn unknown_variables(cmd: &Command) -> Vec<String> {
    let mut known = BTreeSet::new();
    collect_env(cmd, &mut known);
    let mut out = Vec::new();
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("HERALD_")
            || known.contains(name)
            || OTHER_VARIABLES.contains(&name)
            || OTHER_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        out.push(format!(
            "herald: warning: {name} is not a Herald setting and is ignored{}",
            super::file::hint(name, known.iter().map(String::as_str))
        ));
    }
    out.sort();
    out
}

fn collect_env(cmd: &Command, known: &mut BTreeSet<String>) {
    for a in cmd.get_arguments() {
        if let Some(e) = a.get_env() {
            known.insert(e.to_string_lossy().into_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        collect_env(sub, known);
    }
}
