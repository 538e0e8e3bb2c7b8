//! Where a bad value came from. clap names the flag even when the value
//! came from the flag's environment variable, which sent users looking
//! for a flag they never typed; and it reads `-1` after a numeric flag as
//! an unknown flag rather than as a value to check.
use std::ffi::OsString;

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
