//! `Problem` and `Problems`: what `load` reports, each problem at its
//! FILE:LINE:COL.
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// One validation problem, located in a file.
///
/// ```no_run
/// if let Err(problems) = herald::workflow::load("workflows".as_ref()) {
///     for p in &problems.0 {
///         eprintln!("{}:{}:{}: {}", p.file.display(), p.line, p.col, p.message);
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    pub message: String,
}

impl Problem {
    /// A problem at a YAML location.
    pub(crate) fn at(file: &Path, loc: &Location, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: loc.line().max(1),
            col: loc.column().max(1),
            message: message.into(),
        }
    }

    /// A problem with a whole file (line 1, column 1).
    pub(crate) fn in_file(file: &Path, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// All problems found in a workflows directory.
///
/// ```no_run
/// match herald::workflow::load("workflows".as_ref()) {
///     Ok(catalog) => println!("{} workflows", catalog.workflows.len()),
///     Err(problems) => { eprintln!("{problems}"); std::process::exit(2) }
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in workflows:\n{}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);
