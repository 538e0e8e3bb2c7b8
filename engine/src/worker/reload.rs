//! What a reload reports: `Reloaded` (what changed), `ReloadError` (why the
//! new set was refused).

/// What a reload changed.
///
/// ```no_run
/// # fn example(worker: &herald::worker::Worker) -> Result<(), herald::worker::ReloadError> {
/// let r = worker.reload()?;
/// if r.version == r.previous { println!("nothing changed"); }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The version now loaded (the same as `previous` when nothing changed).
    pub version: String,
    pub previous: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Why a reload was refused (the running set goes on).
///
/// ```no_run
/// # fn example(worker: &herald::worker::Worker) {
/// use herald::worker::ReloadError;
/// match worker.reload() {
///     Err(ReloadError::Invalid(problems)) => eprintln!("{problems}"),
///     Err(e) => eprintln!("{e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("the workflows directory has problems; the running workflows are unchanged:\n{0}")]
    Invalid(crate::workflow::Problems),
    #[error("{}; the running workflows are unchanged", .0.join("; "))]
    Settings(Vec<String>),
}
