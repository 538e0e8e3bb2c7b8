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
mod message;
mod values;
mod workflow;

use herald::internals::workflow::{render_digest, render_settings};
use herald::workflow::render::{Meta, Outcome, RenderError};
use herald::workflow::{Catalog, Workflow};
use serde_json::Value;
use std::sync::OnceLock;

pub use message::stream_message;
pub use values::{duration, urls};
pub use workflow::{render, workflow_load};

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

/// The example workflows (`workflows/`), loaded once per process.
fn examples() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        herald::workflow::load(&crate::example_workflows())
            .unwrap_or_else(|e| panic!("the example workflows must load: {e}"))
    })
}
