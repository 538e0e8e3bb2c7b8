//! The `herald` binary: a thin shell over the `herald` library. `try_main`
//! does the work; `main` turns its error into one line on stderr (plus the
//! causes that line does not already say) and an exit code.
use std::process::ExitCode;

mod commands;
mod config;
mod http;
mod json_log;
mod telemetry;

fn main() -> ExitCode {
    match commands::try_main() {
        Ok(code) => code,
        Err(err) => {
            for line in error_lines(&err) {
                eprintln!("{line}");
            }
            commands::exit_code_of(&err)
        }
    }
}

/// `herald: ERROR` and a `caused by:` line for each cause whose text the
/// lines before do not already contain (library errors often embed their
/// cause in their own message).
fn error_lines(err: &anyhow::Error) -> Vec<String> {
    let mut said = err.to_string();
    let mut lines = vec![format!("herald: {said}")];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.trim().is_empty() && !said.contains(text.trim()) {
            lines.push(format!("  caused by: {text}"));
            said.push('\n');
            said.push_str(&text);
        }
        source = cause.source();
    }
    lines
}
