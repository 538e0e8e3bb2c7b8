//! The `herald` binary: a thin shell over the library. `try_main` does the
//! work; `main` turns its error into one line on stderr and an exit code.
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("herald: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            cli::exit_code_of(&err)
        }
    }
}
