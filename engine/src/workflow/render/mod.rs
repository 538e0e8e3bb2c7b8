//! Turning one event into the emails a workflow sends: guards, `for_each`,
//! templates, and the checks that keep a rendered message safe to send.
//!
//! ```no_run
//! # fn example(catalog: herald::workflow::Catalog, meta: herald::workflow::render::Meta) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::workflow::render::Outcome;
//! let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
//! // Preview what an event would send, without sending it.
//! let payload = serde_json::json!({"email": "ada@example.com", "name": "Ada"});
//! match catalog.render(wf, &payload, &meta)? {
//!     Outcome::Emails(emails) => for e in emails { println!("{}", e.subject) },
//!     Outcome::Skipped { guard } => println!("skipped by {guard}"),
//! }
//! # Ok(()) }
//! ```
use serde_json::Value;

use super::address::Mailbox;
use super::{Catalog, Guard, TemplateId, Workflow};

/// What the templates see besides the payload, as `{{meta.…}}`: the
/// event's id, subject and aggregate, when it occurred, and the workflow.
///
/// ```
/// use herald::workflow::render::Meta;
/// let meta = Meta {
///     id: "0192f0c1-7a3e-7000-8000-000000000001".into(),
///     subject: "events.user.joined".into(),
///     aggregate: Some("user:42".into()),
///     occurred_at: "2026-11-24T12:00:00Z".into(),
///     workflow: "welcome".into(),
/// };
/// ```
#[derive(Debug, Clone, serde::Serialize)]
pub struct Meta {
    pub id: String,
    pub subject: String,
    pub aggregate: Option<String>,
    pub occurred_at: String,
    pub workflow: String,
}

/// A workflow's locale tag as rendered, normalised (`de_at` → `de-AT`), and
/// the order in which body templates are tried (`de-AT`, `de`).
fn locale_candidates(rendered: &str) -> (String, Vec<String>) {
    let t = rendered.trim().replace('_', "-");
    let mut parts = t.split('-');
    let lang = parts.next().unwrap_or("").to_ascii_lowercase();
    let rest: Vec<String> = parts
        .map(|p| {
            if p.len() == 2 {
                p.to_ascii_uppercase()
            } else {
                p.to_string()
            }
        })
        .collect();
    let full = std::iter::once(lang.clone())
        .chain(rest)
        .collect::<Vec<_>>()
        .join("-");
    let mut candidates = vec![full.clone()];
    if full != lang && !lang.is_empty() {
        candidates.push(lang);
    }
    (full, candidates)
}

/// One email ready to send (all header values checked for CR/LF).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: 'Welcome, {{event.name}}', text: 'Hi {{event.name}}' }\n")?;
/// # let catalog = herald::workflow::load(dir.path())?;
/// # let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
/// # let meta = herald::workflow::render::Meta { id: "0192f0c1-7a3e-7000-8000-000000000001".into(), subject: "events.user.joined".into(), aggregate: None, occurred_at: "2026-11-24T12:00:00Z".into(), workflow: "welcome".into() };
/// use herald::workflow::render::Outcome;
/// let payload = serde_json::json!({"email": "ada@example.com", "name": "Ada"});
/// if let Outcome::Emails(emails) = catalog.render(wf, &payload, &meta)? {
///     let email = &emails[0];
///     assert_eq!(email.subject, "Welcome, Ada");
///     assert_eq!(email.to[0].address, "ada@example.com");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Position in the event's fan-out; part of the ledger key and Message-ID.
    pub index: usize,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Email {
    /// Ledger recipient key: the sorted, lower-cased `to` addresses.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: 'Welcome, {{event.name}}', text: 'Hi {{event.name}}' }\n")?;
    /// # let catalog = herald::workflow::load(dir.path())?;
    /// # let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
    /// # let meta = herald::workflow::render::Meta { id: "0192f0c1-7a3e-7000-8000-000000000001".into(), subject: "events.user.joined".into(), aggregate: None, occurred_at: "2026-11-24T12:00:00Z".into(), workflow: "welcome".into() };
    /// use herald::workflow::render::Outcome;
    /// let payload = serde_json::json!({"email": "Ada@Example.com", "name": "Ada"});
    /// if let Outcome::Emails(emails) = catalog.render(wf, &payload, &meta)? {
    ///     // One ledger row per recipient, however the address was capitalised.
    ///     assert_eq!(emails[0].recipient_key(), "ada@example.com");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recipient_key(&self) -> String {
        let mut v: Vec<String> = self
            .to
            .iter()
            .map(|m| m.address.to_ascii_lowercase())
            .collect();
        v.sort();
        v.join(",")
    }
}

/// Why an event cannot be rendered: all permanent.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: 'Welcome, {{event.name}}', text: 'Hi {{event.name}}' }\n")?;
/// # let catalog = herald::workflow::load(dir.path())?;
/// # let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
/// # let meta = herald::workflow::render::Meta { id: "0192f0c1-7a3e-7000-8000-000000000001".into(), subject: "events.user.joined".into(), aggregate: None, occurred_at: "2026-11-24T12:00:00Z".into(), workflow: "welcome".into() };
/// use herald::workflow::render::RenderError;
/// // The payload lacks a field the templates use: dead-lettered, never retried.
/// let err = catalog.render(wf, &serde_json::json!({"name": "Ada"}), &meta).unwrap_err();
/// assert!(matches!(err, RenderError::Template { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    /// A formatting helper (`number`, `money`) refused a value: the payload's
    /// (a float where money needs minor units, an unknown currency code).
    #[error("template {template}: {helper}: {message}")]
    Value {
        template: String,
        helper: String,
        message: String,
    },
    #[error("for_each: {0}")]
    ForEach(String),
    #[error("invalid address {address:?} in {field}: {reason}")]
    InvalidAddress {
        field: String,
        address: String,
        reason: String,
    },
    #[error("{field} must be exactly one address, got {count}")]
    NotOneAddress { field: String, count: usize },
    #[error("{field} contains CR or LF after rendering (header injection refused)")]
    HeaderInjection { field: String },
    #[error("no recipient: email.to rendered empty")]
    NoRecipient,
}

/// What a workflow makes of an event.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: 'Welcome, {{event.name}}', text: 'Hi {{event.name}}' }\n")?;
/// # let catalog = herald::workflow::load(dir.path())?;
/// # let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
/// # let meta = herald::workflow::render::Meta { id: "0192f0c1-7a3e-7000-8000-000000000001".into(), subject: "events.user.joined".into(), aggregate: None, occurred_at: "2026-11-24T12:00:00Z".into(), workflow: "welcome".into() };
/// use herald::workflow::render::Outcome;
/// let payload = serde_json::json!({"email": "ada@example.com", "name": "Ada"});
/// match catalog.render(wf, &payload, &meta)? {
///     Outcome::Skipped { guard } => println!("skipped: {guard} did not hold"),
///     Outcome::Emails(emails) => println!("{} emails", emails.len()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A guard did not hold: nothing to send (recorded as skipped).
    Skipped {
        guard: String,
    },
    Emails(Vec<Email>),
}

pub(crate) fn lookup<'a>(ctx: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = ctx;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn guard_holds(g: &Guard, ctx: &Value) -> bool {
    match g {
        Guard::Exists(p, want) => {
            let present = lookup(ctx, p).is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
            present == *want
        }
        Guard::Equals(p, v) => lookup(ctx, p) == Some(v),
        Guard::NotEquals(p, v) => lookup(ctx, p) != Some(v),
        Guard::In(p, vs) => lookup(ctx, p).is_some_and(|x| vs.contains(x)),
    }
}

fn describe(g: &Guard) -> String {
    match g {
        Guard::Exists(p, b) => format!("{} exists: {b}", p.join(".")),
        Guard::Equals(p, v) => format!("{} equals {v}", p.join(".")),
        Guard::NotEquals(p, v) => format!("{} not_equals {v}", p.join(".")),
        Guard::In(p, v) => format!("{} in {}", p.join("."), Value::Array(v.clone())),
    }
}

fn no_crlf(field: &str, v: &str) -> Result<(), RenderError> {
    if v.contains(['\r', '\n']) {
        return Err(RenderError::HeaderInjection {
            field: field.to_string(),
        });
    }
    Ok(())
}

impl Catalog {
    /// Evaluate guards, expand `for_each`, render every email of this event.
    /// A digest workflow renders it as a digest of this one event. Always
    /// with `wf`'s own templates (those of the set it was loaded with).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: 'Welcome, {{event.name}}', text: 'Hi {{event.name}}' }\n")?;
    /// # let catalog = herald::workflow::load(dir.path())?;
    /// # let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
    /// # let meta = herald::workflow::render::Meta { id: "0192f0c1-7a3e-7000-8000-000000000001".into(), subject: "events.user.joined".into(), aggregate: None, occurred_at: "2026-11-24T12:00:00Z".into(), workflow: "welcome".into() };
    /// // Preview what an event would send, without sending it.
    /// let payload = serde_json::json!({"email": "ada@example.com", "name": "Ada"});
    /// let outcome = catalog.render(wf, &payload, &meta)?;
    /// assert!(matches!(outcome, herald::workflow::render::Outcome::Emails(ref e) if e.len() == 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn render(
        &self,
        wf: &Workflow,
        payload: &Value,
        meta: &Meta,
    ) -> Result<Outcome, RenderError> {
        wf.templates.render(wf, payload, meta)
    }

    /// A digest's email: `event` is its last event, `events` all of them in
    /// stream order.
    pub(crate) fn render_digest(
        &self,
        wf: &Workflow,
        events: &[Value],
        meta: &Meta,
    ) -> Result<Outcome, RenderError> {
        wf.templates.render_digest(wf, events, meta)
    }

    /// One of `wf`'s setting templates (digest key, send time, time zone)
    /// for an event, trimmed.
    pub(crate) fn render_setting(
        &self,
        wf: &Workflow,
        id: &TemplateId,
        payload: &Value,
        meta: &Meta,
    ) -> Result<String, RenderError> {
        wf.templates.render_setting(id, payload, meta)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn locale_tags_fall_back_to_their_language() {
        assert_eq!(super::locale_candidates("de_at").1, vec!["de-AT", "de"]);
        assert_eq!(super::locale_candidates("DE").1, vec!["de"]);
        assert_eq!(
            super::locale_candidates("zh-Hant-TW").1,
            vec!["zh-Hant-TW", "zh"]
        );
    }
}

mod emails;
