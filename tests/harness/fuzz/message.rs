//! Target `stream_message`: a stream message from bytes through the worker's
//! decoding, its dead letter and back.
use serde_json::Value;

use super::{examples, on_worker_stack, render_all};

/// A stream message from bytes, as a NATS client would have read it: the
/// first line is the subject, then header lines (`Name: value`, as the
/// `HMSG` header block holds them) up to an empty line, then the payload.
/// Lines async-nats refuses (no `:`, an invalid name) are dropped; so are
/// values with a bare CR, on which async-nats 0.51 panics before Herald
/// sees the message (open upstream: `tests/it/poison_header.rs`).
fn message_of(data: &[u8]) -> async_nats::Message {
    use std::str::FromStr;
    let (head, payload) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let subject = lines.next().unwrap_or("").trim().to_string();
    let mut headers = async_nats::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::from_str(name),
            async_nats::HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    async_nats::Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::copy_from_slice(payload),
        headers: Some(headers),
        status: None,
        description: None,
        length: data.len(),
    }
}

/// Target `stream_message`: a message with arbitrary subject, headers and
/// payload through the worker's decoding (`Event::from_message`, or
/// `Event::undecodable` when it has no id), the dead letter it would become
/// and back (`Event::from_dead_letter`), and the example workflows whose
/// subjects match. Finds: panics in decoding, events that change through a
/// dead letter, and what `render` finds, reached through a message.
pub fn stream_message(data: &[u8]) {
    use herald::internals::worker::Event;
    let msg = message_of(data);
    let ev = match Event::from_message(&msg, Some(7)) {
        Ok(ev) => ev,
        Err(reason) => {
            assert!(!reason.to_string().is_empty());
            let ev = Event::undecodable(&msg, Some(7));
            assert!(ev.id.as_uuid().is_nil());
            return;
        }
    };
    let dl = herald_entities::dead_letter::Model {
        id: 1,
        event_id: ev.id.into(),
        workflow: "w".into(),
        recipient: None,
        subject: ev.subject.clone(),
        aggregate: ev.aggregate.clone(),
        stream_seq: ev.stream_seq.and_then(|s| i64::try_from(s).ok()),
        payload: ev.payload.clone(),
        headers: ev.headers.clone(),
        kind: herald_entities::dead_letter::DeadLetterKind::Permanent,
        reason: "fuzz".into(),
        smtp_reply: None,
        attempts: 1,
        created_at: chrono::Utc::now(),
        retried_at: None,
        discarded_at: None,
    };
    let back = Event::from_dead_letter(&dl);
    assert_eq!(
        (&back.id, &back.subject, &back.payload, &back.aggregate),
        (&ev.id, &ev.subject, &ev.payload, &ev.aggregate),
        "the event changed through its dead letter"
    );
    assert_eq!(
        (&back.occurred_at, back.outbox_seq, back.stream_seq),
        (&ev.occurred_at, ev.outbox_seq, ev.stream_seq),
        "the event changed through its dead letter"
    );
    // The worker's next step: a payload that is not a JSON object is a dead
    // letter; any other goes to every workflow whose subjects match.
    let Ok(payload @ Value::Object(_)) = serde_json::from_str::<Value>(&ev.payload) else {
        return;
    };
    let catalog = examples();
    on_worker_stack(|| {
        for wf in &catalog.workflows {
            if wf
                .subjects
                .iter()
                .any(|f| herald::subject::matches(f, &ev.subject))
            {
                render_all(catalog, wf, &payload, &ev.meta(&wf.name));
            }
        }
    });
}
