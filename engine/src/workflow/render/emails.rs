//! Rendering with one set's compiled templates: block paths, mailboxes,
//! locale variants, each email, and a context's guards and `for_each`.
use serde_json::{Value, json};

use super::{
    Email, Meta, Outcome, RenderError, describe, guard_holds, locale_candidates, lookup, no_crlf,
};
use crate::workflow::address::{self, Mailbox};
use crate::workflow::{AddressTemplate, TemplateId, Templates, Workflow};

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

    pub(super) fn render(
        &self,
        wf: &Workflow,
        payload: &Value,
        meta: &Meta,
    ) -> Result<Outcome, RenderError> {
        if wf.delivery.digest.is_some() {
            return self.render_digest(wf, std::slice::from_ref(payload), meta);
        }
        self.render_context(wf, json!({ "event": payload, "meta": meta }))
    }

    pub(super) fn render_digest(
        &self,
        wf: &Workflow,
        events: &[Value],
        meta: &Meta,
    ) -> Result<Outcome, RenderError> {
        let last = events.last().cloned().unwrap_or(Value::Null);
        self.render_context(wf, json!({ "event": last, "events": events, "meta": meta }))
    }

    pub(super) fn render_setting(
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
        && let Some(v) = nested.downcast_ref::<crate::workflow::format::ValueError>()
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
