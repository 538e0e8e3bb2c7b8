//! The shape of Herald's boundary errors, as async-nats shapes its own: a
//! kind to match on ([`Error::kind`]), a message that names the cause in one
//! line, and the underlying error kept as the source (for logs that want the
//! chain). Nothing is flattened into a bare `String`.
//!
//! ```no_run
//! # async fn example(relay: herald::relay::Relay) {
//! use herald::relay::RelayErrorKind;
//! if let Err(e) = relay.run_once().await {
//!     // One line naming the cause; the kind says what to do about it.
//!     let retry = matches!(e.kind(), RelayErrorKind::Database);
//!     eprintln!("{e} (retry: {retry})");
//! }
//! # }
//! ```
use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of kind `K`.
///
/// ```no_run
/// # async fn example(relay: herald::relay::Relay) {
/// use herald::relay::RelayErrorKind;
/// if let Err(e) = relay.run_once().await {
///     match e.kind() {
///         RelayErrorKind::Database => eprintln!("database: {e}"),
///         _ => eprintln!("relay: {e}"),
///     }
/// }
/// # }
/// ```
pub struct Error<K> {
    kind: K,
    message: String,
    source: Option<BoxError>,
}

impl<K: Copy> Error<K> {
    /// What went wrong, to match on.
    ///
    /// ```no_run
    /// # async fn example(relay: herald::relay::Relay) {
    /// use herald::relay::RelayErrorKind;
    /// match relay.run_once().await {
    ///     Err(e) if e.kind() == RelayErrorKind::Unreachable => eprintln!("NATS down, rows released: {e}"),
    ///     Err(e) => eprintln!("{e}"),
    ///     Ok(done) => println!("{} published", done.published),
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> K {
        self.kind
    }
}

impl<K> Error<K> {
    pub(crate) fn new(kind: K, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keep `source` as the cause (its text is already in the message).
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl<K> fmt::Display for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<K: fmt::Debug> fmt::Debug for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl<K: fmt::Debug> std::error::Error for Error<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A value that does not parse or is out of range (a rate, an address, an
/// unsubscribe setting): one line naming the value and what would be
/// accepted. Its own type, so a caller can tell it from I/O failures.
///
/// ```
/// let e: herald::error::InvalidValue = herald::rate::Rate::parse("fast").unwrap_err();
/// assert!(e.to_string().contains("N/s"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);
