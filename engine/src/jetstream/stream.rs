//! The events stream: created or checked (`ensure_stream`, `open_stream`),
//! waiting out a cluster electing its leader, refusing a stream Herald cannot use.
use async_nats::jetstream::{self, stream};

use super::{STREAM_SUBJECTS, StreamError, StreamSettings, server_supported};

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
