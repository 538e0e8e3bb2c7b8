//! Turning one event into the emails a workflow sends: guards, `for_each`,
//! templates, and the checks that keep a rendered message safe to send.
use serde_json::{Value, json};

use super::address::{self, Mailbox};
use super::{AddressTemplate, Catalog, Guard, TemplateId, Templates, Workflow};

/// What the templates see besides the payload.
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

impl Templates {
    /// Strict mode does not look at block helpers' arguments: a missing
    /// `{{#each event.owners}}` would render as an empty list. Refuse it as
    /// strict mode refuses a missing `{{event.name}}`.
    fn check_block_paths(&self, id: &TemplateId, ctx: &Value) -> Result<(), RenderError> {
        for path in self.block_paths.get(id).into_iter().flatten() {
            if lookup(ctx, path).is_none() {
                return Err(RenderError::Template {
                    template: id.field_name(),
                    message: format!("missing variable {}", path.join(".")),
                });
            }
        }
        Ok(())
    }

    fn render_plain(&self, id: &TemplateId, ctx: &Value) -> Result<String, RenderError> {
        self.check_block_paths(id, ctx)?;
        self.plain
            .render(&id.to_string(), ctx)
            .map_err(|e| template_error(id, &e))
    }

    fn render_html(&self, id: &TemplateId, ctx: &Value) -> Result<String, RenderError> {
        self.check_block_paths(id, ctx)?;
        self.html
            .render(&id.to_string(), ctx)
            .map_err(|e| template_error(id, &e))
    }

    /// Render one address template into its mailboxes.
    fn mailboxes(&self, t: &AddressTemplate, ctx: &Value) -> Result<Vec<Mailbox>, RenderError> {
        match t {
            AddressTemplate::Mailbox { name, address: id } => {
                let field = id.field_name();
                let name = match name {
                    Some(n) => Some(self.render_plain(n, ctx)?),
                    None => None,
                };
                let raw = self.render_plain(id, ctx)?;
                no_crlf(&field, &raw)?;
                if let Some(n) = &name {
                    no_crlf(&field, n)?;
                }
                let address =
                    address::address(&raw).map_err(|reason| RenderError::InvalidAddress {
                        field,
                        address: raw.trim().to_string(),
                        reason,
                    })?;
                Ok(vec![Mailbox {
                    name: name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
                    address,
                }])
            }
            AddressTemplate::List(id) => {
                let field = id.field_name();
                let raw = self.render_plain(id, ctx)?;
                no_crlf(&field, &raw)?;
                address::list(&raw).map_err(|reason| RenderError::InvalidAddress {
                    field,
                    address: raw.trim().to_string(),
                    reason,
                })
            }
        }
    }

    fn addresses(&self, ts: &[AddressTemplate], ctx: &Value) -> Result<Vec<Mailbox>, RenderError> {
        let mut out = Vec::new();
        for t in ts {
            out.extend(self.mailboxes(t, ctx)?);
        }
        Ok(out)
    }

    /// The body template for the context's locale: the most specific
    /// variant that exists, else the default.
    fn localized<'a>(
        default: &'a Option<TemplateId>,
        variants: &'a std::collections::BTreeMap<String, TemplateId>,
        ctx: &Value,
    ) -> Option<&'a TemplateId> {
        let tag = ctx.pointer("/meta/locale").and_then(Value::as_str);
        if let Some(tag) = tag {
            let (_, candidates) = locale_candidates(tag);
            for c in candidates {
                if let Some(id) = variants.get(&c) {
                    return Some(id);
                }
            }
        }
        default.as_ref()
    }

    fn render_one(&self, wf: &Workflow, index: usize, ctx: &Value) -> Result<Email, RenderError> {
        let e = &wf.email;
        let mut from = self.mailboxes(&e.from, ctx)?;
        if from.len() != 1 {
            return Err(RenderError::NotOneAddress {
                field: "email.from".into(),
                count: from.len(),
            });
        }
        let from = from.remove(0);
        let to = self.addresses(&e.to, ctx)?;
        if to.is_empty() {
            return Err(RenderError::NoRecipient);
        }
        let subject = self.render_plain(&e.subject, ctx)?;
        no_crlf("email.subject", &subject)?;
        let mut headers = Vec::new();
        for (h, id) in &e.headers {
            let v = self.render_plain(id, ctx)?;
            no_crlf(&id.field_name(), &v)?;
            headers.push((h.clone(), v));
        }
        Ok(Email {
            index,
            from,
            to,
            cc: self.addresses(&e.cc, ctx)?,
            bcc: self.addresses(&e.bcc, ctx)?,
            reply_to: self.addresses(&e.reply_to, ctx)?,
            subject,
            text: match Self::localized(&e.text, &e.text_locales, ctx) {
                Some(id) => Some(self.render_plain(id, ctx)?),
                None => None,
            },
            html: match Self::localized(&e.html, &e.html_locales, ctx) {
                Some(id) => Some(self.render_html(id, ctx)?),
                None => None,
            },
            headers,
        })
    }

    fn render(&self, wf: &Workflow, payload: &Value, meta: &Meta) -> Result<Outcome, RenderError> {
        if wf.delivery.digest.is_some() {
            return self.render_digest(wf, std::slice::from_ref(payload), meta);
        }
        self.render_context(wf, json!({ "event": payload, "meta": meta }))
    }

    fn render_digest(
        &self,
        wf: &Workflow,
        events: &[Value],
        meta: &Meta,
    ) -> Result<Outcome, RenderError> {
        let last = events.last().cloned().unwrap_or(Value::Null);
        self.render_context(wf, json!({ "event": last, "events": events, "meta": meta }))
    }

    fn render_setting(
        &self,
        id: &TemplateId,
        payload: &Value,
        meta: &Meta,
    ) -> Result<String, RenderError> {
        let ctx = json!({ "event": payload, "meta": meta });
        let v = self.render_plain(id, &ctx)?;
        no_crlf(&id.field_name(), &v)?;
        Ok(v.trim().to_string())
    }

    fn render_context(&self, wf: &Workflow, mut ctx: Value) -> Result<Outcome, RenderError> {
        if let Some(id) = &wf.delivery.locale {
            let tag = self.render_plain(id, &ctx)?;
            let (tag, _) = locale_candidates(&tag);
            if let Some(m) = ctx.get_mut("meta").and_then(Value::as_object_mut) {
                m.insert("locale".into(), Value::String(tag));
            }
        }
        for g in &wf.guards {
            if !guard_holds(g, &ctx) {
                return Ok(Outcome::Skipped { guard: describe(g) });
            }
        }
        let Some(path) = &wf.for_each else {
            return Ok(Outcome::Emails(vec![self.render_one(wf, 0, &ctx)?]));
        };
        let items = match lookup(&ctx, path) {
            Some(Value::Array(a)) => a.clone(),
            Some(other) => {
                return Err(RenderError::ForEach(format!(
                    "{} is not an array (got {other})",
                    path.join(".")
                )));
            }
            None => {
                return Err(RenderError::ForEach(format!(
                    "{} is missing",
                    path.join(".")
                )));
            }
        };
        let mut emails = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut ctx = ctx.clone();
            if let Some(m) = ctx.as_object_mut() {
                m.insert("item".into(), item);
            }
            emails.push(self.render_one(wf, i, &ctx)?);
        }
        Ok(Outcome::Emails(emails))
    }
}

fn template_error(id: &TemplateId, e: &handlebars::RenderError) -> RenderError {
    if let handlebars::RenderErrorReason::NestedError(nested) = e.reason()
        && let Some(v) = nested.downcast_ref::<super::format::ValueError>()
    {
        return RenderError::Value {
            template: id.field_name(),
            helper: v.helper.to_string(),
            message: v.message.clone(),
        };
    }
    let message = match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(v)) => format!("missing variable {v}"),
        other => other.to_string(),
    };
    RenderError::Template {
        template: id.field_name(),
        message,
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
