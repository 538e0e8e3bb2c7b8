//! `herald completions SHELL` and `herald man`: generated from the clap
//! definitions (clap_complete, clap_mangen), so they list exactly the flags
//! the binary takes.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsCmd {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManCmd {
    /// Write herald.1 and one herald-COMMAND.1 per command into DIR instead of printing herald.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(cmd: CompletionsCmd) -> Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(cmd.shell, &mut Cli::command(), "herald", &mut buf);
    print(&buf)
}

pub fn man(cmd: ManCmd) -> Result<ExitCode> {
    match cmd.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            print(&buf)
        }
    }
}

/// Write to stdout; a reader that stopped early (`| head`) is not an error.
fn print(buf: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
