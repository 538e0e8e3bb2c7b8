//! `email`: its fields as templates, recipients, body, allowed headers.
use std::collections::BTreeMap;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use crate::workflow::address::split_mailbox_template;
use crate::workflow::source::{Parsed, read_template};
use crate::workflow::spec::{HeaderName, OneOrMany};
use crate::workflow::template_id::{Field, Part, RecipientKind, TemplateId};
use crate::workflow::{AddressTemplate, CompiledEmail, Problem};

use super::TemplateSource;

/// Headers a workflow may not set itself: Herald writes them.
const RESERVED_HEADERS: [&str; 8] = [
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "date",
    "reply-to",
];

/// Collects the templates of one email as it checks its fields.
struct EmailCheck<'a> {
    p: &'a Parsed,
    name: &'a str,
    problems: &'a mut Vec<Problem>,
    sources: Vec<TemplateSource>,
    /// Locale variants of the body files: (html, locale, template).
    locales: Vec<(bool, String, TemplateId)>,
}

impl EmailCheck<'_> {
    fn template(
        &mut self,
        field: Field,
        text: &str,
        html: bool,
        loc: &Location,
        what: String,
    ) -> TemplateId {
        let id = TemplateId::new(self.name, field);
        self.sources.push(TemplateSource {
            id: id.clone(),
            text: text.to_string(),
            html,
            file: self.p.file.clone(),
            yaml: self.p.yaml.clone(),
            loc: *loc,
            what,
            template_file: None,
        });
        id
    }

    /// An address template: `NAME <ADDRESS>` becomes two templates (the
    /// name renders to whatever text it likes), anything else one, whose
    /// output is parsed as an address list.
    fn address(
        &mut self,
        field: impl Fn(Part) -> Field,
        text: &str,
        loc: &Location,
        what: &str,
    ) -> AddressTemplate {
        // Written without a template tag, it renders to itself: a bad one
        // would fail every render, so it is refused now.
        let split = split_mailbox_template(text);
        let literal = match &split {
            Some((_, address)) => (!address.contains("{{"))
                .then(|| crate::workflow::address::address(address).map(|_| ())),
            None => (!text.contains("{{") && !text.trim().is_empty())
                .then(|| crate::workflow::address::list(text).map(|_| ())),
        };
        if let Some(Err(e)) = literal {
            self.problems.push(Problem::at(
                &self.p.file,
                loc,
                format!("{what}: {text:?} is not an email address: {e}"),
            ));
        }
        match split {
            Some((name, address)) => AddressTemplate::Mailbox {
                name: (!name.trim().is_empty())
                    .then(|| self.template(field(Part::Name), &name, false, loc, what.to_string())),
                address: self.template(
                    field(Part::Address),
                    &address,
                    false,
                    loc,
                    what.to_string(),
                ),
            },
            None => AddressTemplate::List(self.template(
                field(Part::Whole),
                text,
                false,
                loc,
                what.to_string(),
            )),
        }
    }

    fn recipients(&mut self, kind: RecipientKind, v: &Spanned<OneOrMany>) -> Vec<AddressTemplate> {
        let items = v.value.items();
        if kind == RecipientKind::To && items.iter().all(|s| s.trim().is_empty()) {
            self.problems.push(Problem::at(
                &self.p.file,
                &v.referenced,
                "email.to must name at least one recipient",
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.address(
                    |part| Field::Recipients(kind, i, part),
                    t,
                    &v.referenced,
                    &format!("email.{}", kind.key()),
                )
            })
            .collect()
    }

    /// An inline body or a body file (exclusive).
    fn body(
        &mut self,
        dir: &Path,
        inline: &Option<Spanned<String>>,
        from_file: &Option<Spanned<String>>,
        html: bool,
    ) -> Option<TemplateId> {
        let (what, field) = if html {
            ("html", Field::Html)
        } else {
            ("text", Field::Text)
        };
        match (inline, from_file) {
            (Some(_), Some(f)) => {
                self.problems.push(Problem::at(
                    &self.p.file,
                    &f.referenced,
                    format!("email.{what} and email.{what}_file are exclusive"),
                ));
                None
            }
            (Some(t), None) => Some(self.template(
                field,
                &t.value,
                html,
                &t.referenced,
                format!("email.{what}"),
            )),
            (None, Some(f)) => {
                let text = read_template(dir, &self.p.file, f, self.problems)?;
                let id = self.template(
                    field,
                    &text,
                    html,
                    &f.referenced,
                    format!("email.{what}_file {:?}", f.value),
                );
                if let Some(t) = self.sources.last_mut() {
                    t.template_file = Some(dir.join(&f.value));
                }
                for (locale, rel) in crate::workflow::source::locale_variants(dir, &f.value) {
                    let variant = Spanned::new(rel.clone(), f.referenced, f.defined);
                    let Some(text) = read_template(dir, &self.p.file, &variant, self.problems)
                    else {
                        continue;
                    };
                    let field = if html {
                        Field::LocalizedHtml(locale.clone())
                    } else {
                        Field::LocalizedText(locale.clone())
                    };
                    let vid = self.template(
                        field,
                        &text,
                        html,
                        &f.referenced,
                        format!("email.{what}_file {rel:?}"),
                    );
                    if let Some(t) = self.sources.last_mut() {
                        t.template_file = Some(dir.join(&rel));
                    }
                    self.locales.push((html, locale, vid));
                }
                Some(id)
            }
            (None, None) => None,
        }
    }

    /// `email.headers`: allowed names only (none Herald writes itself),
    /// each value a template.
    fn headers(
        &mut self,
        headers: &BTreeMap<HeaderName, Spanned<String>>,
    ) -> Vec<(String, TemplateId)> {
        let mut out = Vec::new();
        for (name, v) in headers {
            let h = &name.0.value;
            let bad = h.is_empty()
                || h.chars()
                    .any(|ch| ch == ':' || ch.is_whitespace() || ch.is_control());
            if bad || RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                self.problems.push(Problem::at(
                    &self.p.file,
                    &name.0.referenced,
                    format!("email.headers: {h:?} is not an allowed header name"),
                ));
                continue;
            }
            let id = self.template(
                Field::Header(h.clone()),
                &v.value,
                false,
                &v.referenced,
                format!("email.headers.{h}"),
            );
            out.push((h.clone(), id));
        }
        out
    }
}

/// `email`: every field a template, recipients present, a body, allowed
/// header names. Returns the email's template ids and their sources.
pub fn check_email(
    p: &Parsed,
    name: &str,
    dir: &Path,
    problems: &mut Vec<Problem>,
) -> (CompiledEmail, Vec<TemplateSource>) {
    let email = &p.raw.email.value;
    let eloc = p.raw.email.referenced;
    let mut c = EmailCheck {
        p,
        name,
        problems,
        sources: Vec::new(),
        locales: Vec::new(),
    };
    let from = c.address(
        Field::From,
        &email.from.value,
        &email.from.referenced,
        "email.from",
    );
    let mut recipients = BTreeMap::new();
    for kind in RecipientKind::ALL {
        let list = match kind {
            RecipientKind::To => Some(&email.to),
            RecipientKind::Cc => email.cc.as_ref(),
            RecipientKind::Bcc => email.bcc.as_ref(),
            RecipientKind::ReplyTo => email.reply_to.as_ref(),
        };
        let ids = list.map(|v| c.recipients(kind, v)).unwrap_or_default();
        recipients.insert(kind.key(), ids);
    }
    let subject = c.template(
        Field::Subject,
        &email.subject.value,
        false,
        &email.subject.referenced,
        "email.subject".into(),
    );
    let text = c.body(dir, &email.text, &email.text_file, false);
    let html = c.body(dir, &email.html, &email.html_file, true);
    if email.text.is_none()
        && email.text_file.is_none()
        && email.html.is_none()
        && email.html_file.is_none()
    {
        c.problems.push(Problem::at(
            &p.file,
            &eloc,
            "email needs a body: text, text_file, html or html_file",
        ));
    }
    let headers = c.headers(&email.headers);
    let mut take = |k: &str| recipients.remove(k).unwrap_or_default();
    let localized = |want_html: bool| {
        c.locales
            .iter()
            .filter(|(html, _, _)| *html == want_html)
            .map(|(_, l, id)| (l.clone(), id.clone()))
            .collect::<BTreeMap<String, TemplateId>>()
    };
    let (text_locales, html_locales) = (localized(false), localized(true));
    let compiled = CompiledEmail {
        from,
        to: take("to"),
        cc: take("cc"),
        bcc: take("bcc"),
        reply_to: take("reply_to"),
        subject,
        text,
        html,
        text_locales,
        html_locales,
        headers,
    };
    (compiled, c.sources)
}
