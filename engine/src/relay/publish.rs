//! Publishing outbox rows: the headers each message carries, the checks that
//! find a row that can never be published before it is tried, pipelined
//! publishing in seq order, and what each failure means. Shared by the relay
//! and `outbox republish`.
use std::collections::BTreeMap;

use async_nats::jetstream::{self, context::PublishErrorKind, publish::PublishAck};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use futures::future::join_all;

use crate::jetstream::headers;
use crate::outbox::store::Claimed;

/// Why a row was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishFailure {
    /// The row can never be published as it is (a subject no stream covers,
    /// larger than the server takes, unreadable headers): parked at once.
    Permanent(String),
    /// The server refused this row for another reason: counts an attempt.
    Row(String),
    /// The server is unreachable or slow, or the stream is gone: the row is
    /// released untouched.
    Transport(String),
    /// The stream is missing: recreated before the next batch.
    NoStream(String),
    /// Not published: the batch had held its rows longer than its lease
    /// (the process was frozen or starved), so another relay may own them
    /// now. Released untouched.
    Expired(String),
}

impl PublishFailure {
    pub fn message(&self) -> &str {
        match self {
            PublishFailure::Permanent(m)
            | PublishFailure::Row(m)
            | PublishFailure::Transport(m)
            | PublishFailure::NoStream(m)
            | PublishFailure::Expired(m) => m,
        }
    }
}

fn classify(kind: PublishErrorKind, err: &dyn std::fmt::Display) -> PublishFailure {
    let text = err.to_string();
    match kind {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => PublishFailure::Transport(text),
        // Every row's subject is under the stream's `events.>` (checked
        // first), so no stream means the stream itself is gone.
        PublishErrorKind::StreamNotFound => PublishFailure::NoStream(text),
        PublishErrorKind::MaxPayloadExceeded => PublishFailure::Permanent(text),
        _ if text.contains("maximum message size") || text.contains("payload") => {
            PublishFailure::Permanent(text)
        }
        _ => PublishFailure::Row(text),
    }
}

/// The message headers of a row: its own (`traceparent`, …) and Herald's.
/// Built with the fallible conversions: async-nats' `insert(&str, &str)`
/// asserts, and a row written by plain SQL must not crash the relay.
pub fn build_headers(row: &Claimed) -> Result<HeaderMap, String> {
    headers_of(row, &row_headers(row)?)
}

/// The row's `headers` column: a JSON object of strings.
fn row_headers(row: &Claimed) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(&row.headers)
        .map_err(|e| format!("the headers column is not a JSON object of strings: {e}"))
}

fn headers_of(row: &Claimed, extra: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    use std::str::FromStr;
    let mut h = HeaderMap::new();
    let mut put = |k: &str, v: &str| -> Result<(), String> {
        let name = HeaderName::from_str(k).map_err(|e| format!("header name {k:?}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
        h.insert(name, value);
        Ok(())
    };
    for (k, v) in extra {
        if k.eq_ignore_ascii_case(headers::MSG_ID) || k.to_ascii_lowercase().starts_with("herald-")
        {
            return Err(format!("header {k:?} is reserved for Herald"));
        }
        put(k, v)?;
    }
    put(headers::MSG_ID, &row.event_id.to_string())?;
    put(headers::OCCURRED_AT, &row.created_at.to_rfc3339())?;
    put(headers::OUTBOX_SEQ, &row.seq.to_string())?;
    if let Some(k) = &row.ordering_key {
        put(headers::AGGREGATE, k)?;
    }
    Ok(h)
}

/// Bytes a message takes against the server's `max_payload` (payload and
/// the header block, `NATS/1.0\r\n` … `\r\n`).
fn wire_size(row: &Claimed, h: &HeaderMap) -> usize {
    let headers: usize = h
        .iter()
        .map(|(k, vs)| {
            let name: &str = k.as_ref();
            vs.iter()
                .map(|v| name.len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    row.payload.len() + headers + 12
}

/// Everything that can be known about a row without publishing it: a
/// subject the stream covers, headers that make a message, a size the
/// server takes. A row that fails here would fail every attempt.
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // herald::internals
pub fn precheck(row: &Claimed, max_payload: usize) -> Result<HeaderMap, PublishFailure> {
    precheck_with(row, max_payload, |_, _| {})
}

/// [`precheck`], with `decorate` adding headers (the relay's trace
/// context) from the row's own before the size is checked, so that a
/// message they would push over `max_payload` is caught here too.
pub(crate) fn precheck_with(
    row: &Claimed,
    max_payload: usize,
    decorate: impl FnOnce(&BTreeMap<String, String>, &mut HeaderMap),
) -> Result<HeaderMap, PublishFailure> {
    crate::subject::validate_event_subject(&row.subject).map_err(|e| {
        PublishFailure::Permanent(format!(
            "no stream covers subject {:?} ({e}; the stream holds {})",
            row.subject,
            crate::jetstream::STREAM_SUBJECTS
        ))
    })?;
    let extra = row_headers(row).map_err(PublishFailure::Permanent)?;
    let mut h = headers_of(row, &extra).map_err(PublishFailure::Permanent)?;
    decorate(&extra, &mut h);
    let size = wire_size(row, &h);
    if max_payload > 0 && size > max_payload {
        return Err(PublishFailure::Permanent(format!(
            "the message is {size} bytes, over the NATS server's max_payload of {max_payload} bytes"
        )));
    }
    Ok(h)
}

/// Publish `rows` pipelined: every publish is issued in order before any
/// ack is awaited (the client writes them in this order, so the stream
/// keeps it), then all acks are awaited. One result per row, in order.
/// Once `expired` answers true, the rows not yet issued are not published
/// ([`PublishFailure::Expired`]).
pub async fn publish_all<'r>(
    js: &jetstream::Context,
    rows: Vec<(&'r Claimed, HeaderMap)>,
    expired: impl Fn() -> bool,
) -> Vec<(&'r Claimed, Result<PublishAck, PublishFailure>)> {
    let mut issued = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    for (row, h) in rows {
        if expired() {
            failed.push((
                row,
                Err(PublishFailure::Expired(
                    "the batch outlived its lease before this row was published".into(),
                )),
            ));
            continue;
        }
        match js
            .publish_with_headers(
                row.subject.clone(),
                h,
                bytes::Bytes::from(row.payload.clone()),
            )
            .await
        {
            Ok(fut) => issued.push((row, fut)),
            Err(e) => failed.push((row, Err(classify(e.kind(), &e)))),
        }
    }
    let mut out: Vec<_> = join_all(
        issued
            .into_iter()
            .map(|(row, fut)| async move { (row, fut.await.map_err(|e| classify(e.kind(), &e))) }),
    )
    .await;
    out.extend(failed);
    out.sort_by_key(|(row, _)| row.seq);
    out
}
