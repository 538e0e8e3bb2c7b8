//! The JetStream side of Herald: connecting, the events stream and its settings.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::jetstream::{StreamSettings, connect, open_stream};
//! let js = async_nats::jetstream::new(connect("nats://127.0.0.1:4222", "my-app").await?);
//! let stream = open_stream(&js, &StreamSettings::named("HERALD")).await?;
//! # Ok(()) }
//! ```
use std::time::Duration;

use async_nats::jetstream::{self, stream};

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

/// The innermost cause of an error, e.g. `Connection refused (os error 111)`.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// Connect to NATS. `urls` may be comma-separated. The first connection
/// must succeed at once (a clear error naming the URL and the cause, not a
/// timeout later); after that the client reconnects forever, and Herald's
/// loops treat failed requests as transient.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = herald::jetstream::connect("nats://n1:4222,nats://n2:4222", "billing-relay").await?;
/// let js = async_nats::jetstream::new(client);
/// # Ok(()) }
/// ```
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, StreamError> {
    let addrs: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let err = |reason: String| StreamError::Connect {
        url: crate::secret::redact_url(urls),
        reason,
    };
    if addrs.is_empty() {
        return Err(err("no URL given".into()));
    }
    // Credentials go to the client as options, never inside the URLs it
    // keeps: async-nats logs its server addresses (with any password in
    // them) at debug level.
    let mut credentials: Option<(String, Option<String>)> = None;
    let mut bare = Vec::with_capacity(addrs.len());
    for a in &addrs {
        let mut u = url::Url::parse(a).map_err(|e| err(format!("invalid URL: {e}")))?;
        if !u.username().is_empty() {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let c = (dec(u.username()), u.password().map(dec));
            if credentials.as_ref().is_some_and(|prev| *prev != c) {
                return Err(err("every URL must carry the same credentials".into()));
            }
            credentials = Some(c);
            let _ = u.set_username("");
            let _ = u.set_password(None);
        }
        bare.push(u.to_string());
    }
    let mut opts = async_nats::ConnectOptions::new();
    opts = match credentials {
        Some((user, Some(pass))) => opts.user_and_password(user, pass),
        // nats://TOKEN@host
        Some((token, None)) => opts.token(token),
        None => opts,
    };
    opts.name(name)
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None)
        // The list, not one string joined by commas: async-nats parses a
        // string as a single address ("invalid port number" for a list).
        .connect(bare)
        .await
        .map_err(|e| err(root_cause(&e)))
}

/// The server answered that the stream does not exist: not a timeout, not a
/// cluster without a leader (those say nothing about the stream).
///
/// ```no_run
/// # async fn example(js: async_nats::jetstream::Context) {
/// match js.get_stream("HERALD").await {
///     Err(e) if herald::jetstream::stream_missing(&e) => eprintln!("the stream is gone"),
///     Err(e) => eprintln!("no answer, try again: {e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
pub fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// How long start-up keeps asking for the stream while the cluster settles.
const STREAM_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Create the events stream, or check and update an existing one.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::jetstream::{StreamSettings, connect, ensure_stream};
/// let js = async_nats::jetstream::new(connect("nats://127.0.0.1:4222", "my-relay").await?);
/// let stream = ensure_stream(&js, &StreamSettings::named("HERALD").replicas(3)).await?;
/// # Ok(()) }
/// ```
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, StreamError> {
    stream_with(js, settings, true).await
}

/// Create the events stream if it is missing, or check an existing one
/// without changing its settings. For the commands that do not own the
/// stream's settings (worker, republish, replay): applying their defaults
/// would scale an operator's R3 stream down to one replica, or shorten its
/// duplicate window, each time one of them starts.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::jetstream::{StreamSettings, connect, open_stream};
/// let js = async_nats::jetstream::new(connect("nats://127.0.0.1:4222", "my-worker").await?);
/// let stream = open_stream(&js, &StreamSettings::named("HERALD")).await?;
/// # Ok(()) }
/// ```
pub async fn open_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, StreamError> {
    stream_with(js, settings, false).await
}

async fn stream_with(
    js: &jetstream::Context,
    settings: &StreamSettings,
    apply: bool,
) -> Result<stream::Stream, StreamError> {
    let wanted = stream::Config {
        name: settings.name.clone(),
        subjects: vec![STREAM_SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        max_age: settings.max_age.unwrap_or_default(),
        ..Default::default()
    };
    let req = |e: &dyn std::fmt::Display| StreamError::Request {
        name: settings.name.clone(),
        detail: e.to_string(),
    };
    // Older servers silently ignore `filter_subjects` and would hand every
    // workflow every event: refuse them before creating anything.
    let version = js.client().server_info().version;
    if !server_supported(&version) {
        return Err(StreamError::ServerTooOld { version });
    }
    let mut s = get_or_create(js, &wanted, settings).await?;
    let info = s.info().await.map_err(|e| req(&e))?.config.clone();
    check_existing(&info, settings)?;
    let differs = apply
        && (info.duplicate_window != settings.duplicate_window
            || info.num_replicas != settings.replicas
            || info.max_age != wanted.max_age);
    if differs {
        let mut updated = info;
        updated.duplicate_window = settings.duplicate_window;
        updated.num_replicas = settings.replicas;
        updated.max_age = wanted.max_age;
        js.update_stream(updated)
            .await
            .map_err(|e| StreamError::Conflict {
                name: settings.name.clone(),
                detail: format!("cannot apply settings: {e}"),
            })?;
        s = js.get_stream(&settings.name).await.map_err(|e| req(&e))?;
    }
    Ok(s)
}

/// The events stream, created when missing, waiting out a cluster that
/// elects its leader.
async fn get_or_create(
    js: &jetstream::Context,
    wanted: &stream::Config,
    settings: &StreamSettings,
) -> Result<stream::Stream, StreamError> {
    // A cluster that is electing the stream's leader (a node restarted, the
    // stream just recreated) fails requests for a few seconds: a service
    // starting then must not exit for it. Bounded, so that a real problem
    // still ends the start-up with its error.
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(250);
    let mut said = false;
    let s = loop {
        let e = match js.get_or_create_stream(wanted.clone()).await {
            Ok(s) => break s,
            Err(e) => e,
        };
        // Permanent: waiting would not make the other stream go away.
        if matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP)
        {
            return Err(StreamError::Overlap {
                name: settings.name.clone(),
                detail: e.to_string(),
            });
        }
        // Said at the first failure, before the fallback below: against a
        // cluster without a leader each request waits out its timeout, and
        // the operator should know why the start-up is silent meanwhile. Not
        // for the one expected race (the name taken by another process's
        // create), which the fallback settles at once.
        if !said && !name_taken(&e) {
            said = true;
            tracing::info!(stream = %settings.name, error = %e,
                "waiting for the events stream (a cluster electing its leader answers within seconds)");
        }
        // Another process created it between our look and our create (a
        // relay recreating a lost stream as a worker starts): "already in
        // use with a different configuration". Take the one that exists.
        if let Ok(s) = js.get_stream(&settings.name).await {
            break s;
        }
        if started.elapsed() >= STREAM_SETTLE {
            return Err(StreamError::Request {
                name: settings.name.clone(),
                detail: format!(
                    "{e} (no usable answer for {}: a cluster needs a JetStream leader, so are enough of its nodes up?)",
                    crate::duration::human(STREAM_SETTLE)
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    };
    Ok(s)
}

/// The stream's name is already taken (another process created it first).
fn name_taken(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST)
}

/// Refuse a stream Herald cannot use: other subjects, or memory storage.
fn check_existing(info: &stream::Config, settings: &StreamSettings) -> Result<(), StreamError> {
    if !info.subjects.iter().any(|x| x == STREAM_SUBJECTS) {
        return Err(StreamError::Conflict {
            name: settings.name.clone(),
            detail: format!(
                "subjects are {:?}, Herald needs [{STREAM_SUBJECTS:?}]",
                info.subjects
            ),
        });
    }
    if info.storage != stream::StorageType::File {
        return Err(StreamError::Conflict {
            name: settings.name.clone(),
            detail: "storage is memory, Herald needs file".into(),
        });
    }
    Ok(())
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
