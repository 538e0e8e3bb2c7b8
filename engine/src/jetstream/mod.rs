//! The JetStream side of Herald: connecting, the events stream and its settings.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::jetstream::{StreamSettings, connect, open_stream};
//! let js = async_nats::jetstream::new(connect("nats://127.0.0.1:4222", "my-app").await?);
//! let stream = open_stream(&js, &StreamSettings::named("HERALD")).await?;
//! # Ok(()) }
//! ```
mod connect;
mod stream;

use std::time::Duration;

pub use connect::connect;
pub use stream::{ensure_stream, open_stream, stream_missing};

/// Header names Herald sets on every published event.
pub mod headers {
    /// JetStream's de-duplication header: the event id, so that a row published
    /// twice (a relay crash between publish and mark) is stored once.
    ///
    /// ```
    /// assert_eq!(herald::jetstream::headers::MSG_ID, "Nats-Msg-Id");
    /// ```
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// The event's aggregate (`type/id`), for consumers that keep per-entity order.
    ///
    /// ```no_run
    /// # fn example(msg: &async_nats::jetstream::Message) {
    /// use herald::jetstream::headers;
    /// let aggregate = msg.headers.as_ref().and_then(|h| h.get(headers::AGGREGATE));
    /// # }
    /// ```
    pub const AGGREGATE: &str = "Herald-Aggregate";
    /// When the application enqueued the event (RFC 3339), not when it was
    /// published: what templates show as `meta.occurred_at`.
    ///
    /// ```no_run
    /// # fn example(msg: &async_nats::jetstream::Message) {
    /// use herald::jetstream::headers;
    /// let at = msg.headers.as_ref().and_then(|h| h.get(headers::OCCURRED_AT));
    /// # }
    /// ```
    pub const OCCURRED_AT: &str = "Herald-Occurred-At";
    /// The outbox row's `seq`, so that a stream message can be traced back to
    /// the row it was published from.
    ///
    /// ```no_run
    /// # fn example(msg: &async_nats::jetstream::Message) {
    /// use herald::jetstream::headers;
    /// let seq = msg.headers.as_ref().and_then(|h| h.get(headers::OUTBOX_SEQ));
    /// # }
    /// ```
    pub const OUTBOX_SEQ: &str = "Herald-Outbox-Seq";
}

/// Subjects the events stream captures.
///
/// ```
/// assert!(herald::subject::matches(herald::jetstream::STREAM_SUBJECTS, "events.user.joined"));
/// ```
pub const STREAM_SUBJECTS: &str = "events.>";

/// How the events stream is configured (file storage, `events.>`).
///
/// ```
/// let s = herald::jetstream::StreamSettings::named("HERALD").replicas(3);
/// assert_eq!(s.replicas, 3);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamSettings {
    pub name: String,
    /// Window in which JetStream drops a re-published `Nats-Msg-Id`. A relay that
    /// crashes after publishing and before marking re-publishes within this window.
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Drop events older than this (None: keep until limits).
    pub max_age: Option<Duration>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: "HERALD".into(),
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
            max_age: None,
        }
    }
}

impl StreamSettings {
    /// The default settings for a stream of this name.
    ///
    /// ```
    /// let s = herald::jetstream::StreamSettings::named("HERALD_STAGING");
    /// assert_eq!(s.name, "HERALD_STAGING");
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        StreamSettings {
            name: name.into(),
            ..Default::default()
        }
    }

    /// How long JetStream remembers a `Nats-Msg-Id`: at least as long as a
    /// crashed relay's claim lease, so a re-publish is dropped.
    ///
    /// ```
    /// let s = herald::jetstream::StreamSettings::named("HERALD").duplicate_window(std::time::Duration::from_secs(600));
    /// ```
    pub fn duplicate_window(mut self, d: Duration) -> Self {
        self.duplicate_window = d;
        self
    }

    /// How many servers of a cluster keep the stream (3 survives losing one).
    ///
    /// ```
    /// let s = herald::jetstream::StreamSettings::named("HERALD").replicas(3);
    /// ```
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Drop events older than this from the stream (None keeps them until the
    /// stream's limits); the outbox keeps its own copy for its retention.
    ///
    /// ```
    /// let s = herald::jetstream::StreamSettings::named("HERALD").max_age(Some(std::time::Duration::from_secs(30 * 86_400)));
    /// ```
    pub fn max_age(mut self, d: Option<Duration>) -> Self {
        self.max_age = d;
        self
    }
}

/// Why the stream could not be reached, created or checked.
///
/// ```no_run
/// # async fn example() {
/// use herald::jetstream::StreamError;
/// match herald::jetstream::connect("nats://127.0.0.1:4222", "my-app").await {
///     Err(StreamError::Connect { url, reason }) => eprintln!("NATS at {url} is down: {reason}"),
///     Err(e) => eprintln!("{e}"),
///     Ok(_client) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No server answered (the URL is redacted; the reason is the OS's).
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "stream {name} exists with a conflicting configuration: {detail} (fix or delete the stream, or choose another with --stream)"
    )]
    Conflict { name: String, detail: String },
    /// Another stream on the server already takes Herald's subjects: a
    /// second `--stream` on one server, or two installs sharing it.
    #[error(
        "stream {name} cannot be created: another stream on this NATS server already takes events.> ({detail}); streams cannot share subjects, so use that stream's --stream name, or give each environment its own NATS server or account"
    )]
    Overlap { name: String, detail: String },
    #[error("JetStream request for stream {name} failed: {detail}")]
    Request { name: String, detail: String },
    #[error(
        "nats-server {version} is too old: Herald needs >= 2.10 (multi-subject consumer filters); scripts/setup.sh installs one"
    )]
    ServerTooOld { version: String },
}

/// Is this nats-server version (`2.10.4`, `v2.9.10`) at least 2.10?
///
/// ```
/// use herald::jetstream::server_supported;
/// assert!(server_supported("2.10.4"));
/// assert!(server_supported("v2.12.0"));
/// assert!(!server_supported("v2.9.10"));
/// ```
pub fn server_supported(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions() {
        assert!(super::server_supported("2.10.0"));
        assert!(super::server_supported("2.15.1"));
        assert!(super::server_supported("3.0.0"));
        assert!(!super::server_supported("2.9.10"));
        assert!(!super::server_supported("v2.9.25"));
        assert!(!super::server_supported(""));
    }
}
