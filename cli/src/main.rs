//! The `herald` binary: a thin shell over the `herald` library. `try_main` does the
//! work; `main` turns its error into one line on stderr and an exit code.
use std::process::ExitCode;

mod commands;

fn main() -> ExitCode {
    match commands::try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("herald: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            commands::exit_code_of(&err)
        }
    }
}
