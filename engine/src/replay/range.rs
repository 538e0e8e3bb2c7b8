//! The range a replay reads: the stream opened, the start turned into a
//! deliver policy, an ephemeral ordered consumer over the workflow's subjects.
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};

use super::{ReplayError, ReplayOptions, Start, stream_error};
use crate::workflow::Workflow;

/// The workflow's subjects in the range, read by an ephemeral ordered
/// consumer; `None` when the stream holds nothing.
pub(super) async fn open_range(
    js: &jetstream::Context,
    stream_name: &str,
    wf: &Workflow,
    opts: &ReplayOptions,
) -> Result<Option<consumer::pull::Ordered>, ReplayError> {
    let err = |detail: String| stream_error(stream_name, detail);
    let mut stream = js.get_stream(stream_name).await.map_err(|e| {
        err(if crate::jetstream::stream_missing(&e) {
            "no such stream on this NATS server (a relay creates it when it starts)".into()
        } else {
            e.to_string()
        })
    })?;
    let state = stream
        .info()
        .await
        .map_err(|e| err(e.to_string()))?
        .state
        .clone();
    let deliver_policy = deliver_policy(&opts.start, &state).map_err(|e| match e {
        PolicyError::Gone(e) => e,
        PolicyError::Time(detail) => err(detail),
    })?;
    if state.messages == 0 || state.last_sequence == 0 {
        return Ok(None);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: wf.subjects.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
    Ok(Some(messages))
}

/// Why a replay's start cannot be turned into a deliver policy.
enum PolicyError {
    Gone(ReplayError),
    Time(String),
}

/// Where the replay's consumer starts: a sequence the stream still holds, or
/// a time (warning when the stream's older messages are gone).
fn deliver_policy(
    start: &Start,
    state: &jetstream::stream::State,
) -> Result<consumer::DeliverPolicy, PolicyError> {
    Ok(match *start {
        Start::Seq(n) if n < state.first_sequence && state.messages > 0 => {
            return Err(PolicyError::Gone(ReplayError::RangeGone {
                requested: n,
                first: state.first_sequence,
            }));
        }
        Start::Seq(n) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: n.max(1),
        },
        Start::Time(t) => {
            let first: DateTime<Utc> =
                DateTime::from_timestamp(state.first_timestamp.unix_timestamp(), 0).unwrap_or(t);
            // Only when messages were removed (the first sequence moved
            // on): a stream created after `t` holds everything since.
            if state.messages > 0 && state.first_sequence > 1 && first > t {
                tracing::warn!(requested = %t, first = %first, "the stream holds messages only from {first}: older ones are gone (retention)");
            }
            let secs = t.timestamp();
            consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|e| PolicyError::Time(e.to_string()))?,
            }
        }
    })
}
