//! The fuzz targets' entry points, one per target (`fuzz/fuzz_targets/*.rs`
//! call them). They live here, not in the fuzz crate, so that the normal
//! suite replays every saved input through the same code
//! (`tests/it/fuzz.rs`: `fuzz/seeds/` and `fuzz/regressions/`) without
//! cargo-fuzz or a nightly compiler.
//!
//! Each entry point feeds bytes to one input boundary of the library and
//! panics (a finding) when the library panics, or when a property it
//! promises does not hold: validation catches what rendering would fail on
//! without a payload, redaction hides every password, an event decoded from
//! a message survives its dead letter. Stack overflows and hangs are found
//! by libFuzzer itself (the process aborts, or `-timeout` fires).
use std::path::{Component, Path};
use std::sync::OnceLock;

use herald::internals::workflow::{render_digest, render_settings};
use herald::workflow::render::{Meta, Outcome, RenderError};
use herald::workflow::{Catalog, Workflow};
use serde_json::{Value, json};

/// The stack a worker renders on: tokio's worker threads get 2 MiB. A
/// template that validation lets through must render within it.
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Run `f` on a thread with the worker's stack; its panic is re-raised here.
fn on_worker_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, f)
            .expect("spawn a render thread");
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn meta(wf: &Workflow, subject: &str) -> Meta {
    Meta {
        id: "01890000-0000-7000-8000-000000000001".into(),
        subject: subject.into(),
        aggregate: Some("contract/42".into()),
        occurred_at: "2026-03-01T12:30:00Z".into(),
        workflow: wf.name.clone(),
    }
}

/// Render errors that no payload could cause (or cure): validation promises
/// to refuse the template instead (`workflow/templates/`).
fn fails_without_payload(e: &RenderError) -> bool {
    let RenderError::Template { message, .. } = e else {
        return false;
    };
    // Handlebars' own reasons, at the start of the message (a payload's
    // text may say anything further on).
    [
        "Template not found",
        "Partial not found",
        "Partial block cound not be found",
        "Helper not found",
        "Decorator not found",
        "Can not include current template in partial",
        "Invalid logging level",
        "Block content required",
        "Unimplemented",
    ]
    .iter()
    .any(|m| message.starts_with(m))
        // Arity is static; a missing value is not: `{{upper event.x}}`
        // without `x` fails as "param with name s required", not here.
        || (message.starts_with("Helper/Decorator ") && message.contains(" param at index "))
}

/// Everything the worker does with one event for one workflow, short of
/// I/O: the settings, the emails, and each email's RFC 5322 message.
fn render_all(catalog: &Catalog, wf: &Workflow, payload: &Value, meta: &Meta) {
    let check = |r: Result<(), &RenderError>| {
        if let Err(e) = r {
            assert!(
                !fails_without_payload(e),
                "workflow {} passed validation but cannot render for any payload: {e}",
                wf.name
            );
        }
    };
    for s in render_settings(catalog, wf, payload, meta) {
        check(s.as_ref().map(|_| ()));
    }
    let outcome = match payload {
        Value::Array(events) if wf.schedules() => render_digest(catalog, wf, events, meta),
        _ => catalog.render(wf, payload, meta),
    };
    match &outcome {
        Ok(Outcome::Emails(emails)) => {
            for email in emails {
                let _ = email.recipient_key();
                for v in [&email.subject]
                    .into_iter()
                    .chain(email.headers.iter().map(|(_, v)| v))
                {
                    assert!(!v.contains(['\r', '\n']), "CR/LF in a header: {v:?}");
                }
                let _ = herald::smtp::build(email, "<01890000.w.0@herald.test>");
            }
        }
        Ok(Outcome::Skipped { .. }) => {}
        Err(e) => check(Err(e)),
    }
}

/// A directory of files as one input: text before the first marker line is
/// `workflow.yaml`; a line `%%% PATH` starts the file PATH (relative; only
/// `[A-Za-z0-9._-]` in its parts). `payload.json`, if given, is the payload
/// a loaded workflow is rendered with (besides a few fixed ones).
fn files_of(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![("workflow.yaml".into(), Vec::new())];
    for line in data.split_inclusive(|b| *b == b'\n') {
        if let Some(path) = line.strip_prefix(b"%%% ") {
            let path = String::from_utf8_lossy(path).trim().to_string();
            files.push((path, Vec::new()));
        } else if let Some((_, text)) = files.last_mut() {
            text.extend_from_slice(line);
        }
    }
    files.retain(|(path, _)| is_safe_path(path));
    files.truncate(16);
    files
}

fn is_safe_path(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && path.len() <= 120
        && p.components().count() <= 4
        && p.components().all(|c| match c {
            Component::Normal(s) => s.to_str().is_some_and(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            }),
            _ => false,
        })
}

/// Target `workflow_load`: a workflows directory (YAML, templates,
/// partials) through `herald::workflow::load`; what loads is rendered on a
/// worker's stack with a few payloads. Finds: panics, stack overflows and
/// hangs in loading or rendering, and templates that validation passes but
/// that fail to render whatever the payload.
pub fn workflow_load(data: &[u8]) {
    let files = files_of(data);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut payload = None;
    for (path, text) in &files {
        let p = dir.path().join(path);
        if let Some(parent) = p.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            continue;
        }
        // A path that is a directory already (`a` then `a/b`): skip it.
        let _ = std::fs::write(&p, text);
        if path == "payload.json" {
            payload = serde_json::from_slice::<Value>(text).ok();
        }
    }
    let catalog = match herald::workflow::load(dir.path()) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                assert!(p.line >= 1 && p.col >= 1, "problem without a position: {p}");
                assert!(
                    p.file.starts_with(dir.path()),
                    "problem outside the directory: {p}"
                );
            }
            let _ = problems.to_string();
            return;
        }
    };
    let mut payloads = vec![
        json!({}),
        json!({"name": "Ada", "email": "ada@example.com", "at": "2026-03-01T12:30:00Z",
               "items": [{"name": "x", "email": "x@example.com"}], "n": 2, "flag": true}),
    ];
    payloads.extend(payload);
    on_worker_stack(|| {
        for wf in &catalog.workflows {
            let subject = wf
                .subjects
                .first()
                .map(|s| s.replace(['*', '>'], "x"))
                .unwrap_or_default();
            let m = meta(wf, &subject);
            for p in &payloads {
                render_all(&catalog, wf, p, &m);
            }
        }
    });
}

/// The example workflows (`workflows/`), loaded once per process.
fn examples() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        herald::workflow::load(&crate::example_workflows())
            .unwrap_or_else(|e| panic!("the example workflows must load: {e}"))
    })
}

/// Target `render`: an arbitrary payload through one of the example
/// workflows (`workflows/*.yaml`). The first byte picks the workflow; the
/// rest is the payload's JSON (an array is a digest's events). Finds:
/// panics and stack overflows in guards, `for_each`, templates, helpers,
/// address parsing and building the message.
pub fn render(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let catalog = examples();
    let Some(wf) = catalog
        .workflows
        .get(usize::from(pick) % catalog.workflows.len())
    else {
        return;
    };
    let subject = wf.subjects.first().cloned().unwrap_or_default();
    let m = meta(wf, &subject);
    on_worker_stack(|| render_all(catalog, wf, &payload, &m));
}

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
            assert!(!reason.is_empty());
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

/// The texts a URL may be shown as: where a password must never appear.
fn shown(url: &str) -> Vec<String> {
    let mut out = vec![
        herald::secret::redact_url(url),
        herald::db::redact(url),
        herald::secret::SecretUrl::new(url).to_string(),
        format!("{:?}", herald::secret::SecretUrl::new(url)),
    ];
    // Errors: the URL they name (their own words, "(smtp, smtps, file)",
    // may hold a short password by chance).
    match herald::smtp::Transport::from_url(url) {
        Err(e) => {
            let _ = e.to_string();
            out.push(e.url);
        }
        Ok(t) => out.push(t.name().to_string()),
    }
    if let Err(e) = herald::db::backend_of(url) {
        let _ = e.to_string();
        if let herald::db::DbError::InvalidUrl { url, .. } = e {
            out.push(url);
        }
    }
    // What the log writer lets through: the URL with every secret it was
    // told about replaced.
    let mut logged = url.to_string();
    let mut secrets = herald::secret::secrets_in(url);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in &secrets {
        logged = logged.replace(s.as_str(), herald::secret::REDACTED);
    }
    out.push(logged);
    out
}

/// Target `urls`: the SMTP URL parser, the database URL check and URL
/// redaction. Input: a URL; or, with two NUL bytes, `PREFIX\0PASSWORD\0SUFFIX`,
/// a URL whose password is known. Finds: panics in the parsers, and (second
/// form) any text Herald prints or logs of the URL that still holds the
/// password, whatever characters the password has.
pub fn urls(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.splitn(3, '\0').collect();
    let [prefix, password, suffix] = parts[..] else {
        let _ = shown(&text);
        return;
    };
    let url = format!("{prefix}{password}{suffix}");
    let shown = shown(&url);
    // Only a password in the password's place (`scheme://user:` before it,
    // `@host` after it), long enough to be told apart, that the rest of the
    // URL does not contain anyway.
    let in_place = prefix.split_once("://").is_some_and(|(scheme, user)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
            && user.ends_with(':')
            && !user[..user.len() - 1].contains([':', '/', '?', '#', '@', ','])
    }) && suffix
        .strip_prefix('@')
        .and_then(|h| h.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric());
    // A password holding `,scheme://` reads as a list of URLs (`nats://a,
    // nats://b`), and its part before the comma cannot be told from a port:
    // not covered.
    if !in_place
        || password.contains("://")
        || password.chars().count() < 4
        || password.contains(['*', '\t', '\n', '\r'])
        || password.trim() != password
        || format!("{prefix}{suffix}").contains(password)
    {
        return;
    }
    for s in &shown {
        assert!(
            !s.contains(password),
            "password {password:?} of {url:?} shown as {s:?}"
        );
    }
}

/// Target `duration`: human durations (`herald::duration::parse`, used by
/// flags, SMTP URL parameters and workflow settings) and rates (`10/s`).
/// Input: `DURATION`, `DURATION|RATE` or `DURATION|RATE&BURST`. Finds: panics, durations past
/// the limit, and what the worker computes from one (backoff delays) panicking.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (d, rate) = text.split_once('|').unwrap_or((&text, ""));
    // A rate as a workflow gives it, and as the SMTP URL does (`burst=N`).
    let (rate, burst) = rate.split_once('&').unwrap_or((rate, ""));
    if let Ok(mut r) = herald::rate::Rate::parse(rate) {
        assert!(
            r.per_second > 0.0 && r.per_second.is_finite() && r.burst >= 1,
            "{r:?}"
        );
        if let Ok(b) = burst.parse() {
            r = r.with_burst(b);
        }
        let now = chrono::Utc::now().timestamp_micros();
        for factor in [1.0, 0.5, 1.0 / 64.0] {
            let (interval, floor) = herald::internals::rate::window(&r, factor, now);
            assert!(interval > 0 && floor <= now, "{r:?}: {interval} {floor}");
            // The reservation adds the interval to a slot in SQL (BIGINT).
            assert!(
                now.checked_add(interval).is_some(),
                "{r:?}: interval {interval}"
            );
        }
    }
    let Ok(parsed) = herald::duration::parse(d) else {
        return;
    };
    assert!(
        parsed <= herald::duration::MAX,
        "{d:?} parsed as {parsed:?}"
    );
    assert!(!herald::duration::human(parsed).is_empty());
    // As a delay, a deadline and a JetStream setting.
    assert!(chrono::Duration::from_std(parsed).is_ok());
    let _ = chrono::Utc::now() + chrono::Duration::from_std(parsed).unwrap_or_default();
    let _ = std::time::Instant::now() + parsed;
    assert!(
        i64::try_from(parsed.as_nanos()).is_ok(),
        "{parsed:?} in nanoseconds"
    );
    let policy = herald::retry::RetryPolicy {
        max_attempts: 8,
        initial: parsed,
        max: herald::duration::MAX,
        multiplier: 10.0,
    };
    for attempt in [1, 2, 8, 64, u32::MAX] {
        assert!(policy.delay(attempt) <= herald::duration::MAX);
    }
}
