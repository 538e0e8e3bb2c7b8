//! The checks of one parsed workflow, each a small function that reports
//! every problem it finds (located `FILE:LINE:COL`) and returns what it
//! validated. `compile` runs them all; nothing stops at the first problem.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::address::split_mailbox_template;
use super::source::{Parsed, read_template};
use super::spec::{OneOrMany, RawGuard};
use super::template_id::{Field, Part, RecipientKind, TemplateId};
use super::{AddressTemplate, CompiledEmail, Guard, Problem};
use crate::retry::RetryPolicy;
use crate::subject;

/// A template's text, where it came from, and how it is rendered.
pub struct TemplateSource {
    pub id: TemplateId,
    pub text: String,
    /// Rendered into an HTML body: values are HTML-escaped.
    pub html: bool,
    pub file: PathBuf,
    pub loc: Location,
    /// How the problem names it: `email.subject`, `email.html_file "x.hbs"`.
    pub what: String,
    /// The template file it was read from (`*_file`), for problems located
    /// inside it; None for an inline template.
    pub template_file: Option<PathBuf>,
}

/// `name`: `[a-z0-9-]+`, unique across the directory.
pub fn check_name(
    p: &Parsed,
    seen: &mut BTreeMap<String, PathBuf>,
    problems: &mut Vec<Problem>,
) -> String {
    let name = p.raw.name.value.clone();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        problems.push(Problem::at(
            &p.file,
            &p.raw.name.referenced,
            format!("name {name:?} must match [a-z0-9-]+"),
        ));
    } else if let Some(other) = seen.insert(name.clone(), p.file.clone()) {
        problems.push(Problem::at(
            &p.file,
            &p.raw.name.referenced,
            format!(
                "duplicate workflow name {name:?} (also in {})",
                other.display()
            ),
        ));
    }
    name
}

/// `on.subjects`: at least one, each a filter under `events.`.
pub fn check_subjects(p: &Parsed, problems: &mut Vec<Problem>) -> Vec<String> {
    let on = &p.raw.on;
    if on.value.subjects.is_empty() {
        problems.push(Problem::at(
            &p.file,
            &on.referenced,
            "on.subjects must list at least one subject filter",
        ));
    }
    let mut subjects = Vec::new();
    for s in &on.value.subjects {
        match subject::validate_filter(&s.value) {
            Ok(()) => subjects.push(s.value.clone()),
            Err(e) => problems.push(Problem::at(
                &p.file,
                &s.referenced,
                format!("on.subjects: {:?}: {e}", s.value),
            )),
        }
    }
    subjects
}

/// A dotted path into the template context, rooted at `event`, `meta` or `item`.
pub fn path_segments(p: &str) -> Option<Vec<String>> {
    let segs: Vec<String> = p.split('.').map(str::to_string).collect();
    let ok = segs.iter().all(|s| !s.is_empty())
        && matches!(
            segs.first().map(String::as_str),
            Some("event" | "meta" | "item")
        );
    ok.then_some(segs)
}

fn check_guard(file: &Path, g: &Spanned<RawGuard>, problems: &mut Vec<Problem>) -> Option<Guard> {
    let raw = &g.value;
    let Some(path) = path_segments(&raw.path) else {
        problems.push(Problem::at(
            file,
            &g.referenced,
            format!(
                "when: path {:?} must be dotted and start with event, meta or item",
                raw.path
            ),
        ));
        return None;
    };
    let ops = [
        raw.exists.is_some(),
        raw.equals.is_some(),
        raw.not_equals.is_some(),
        raw.in_.is_some(),
    ];
    if ops.iter().filter(|b| **b).count() != 1 {
        problems.push(Problem::at(
            file,
            &g.referenced,
            "when: each guard needs exactly one of exists, equals, not_equals, in",
        ));
        return None;
    }
    Some(if let Some(b) = raw.exists {
        Guard::Exists(path, b)
    } else if let Some(v) = &raw.equals {
        Guard::Equals(path, v.clone())
    } else if let Some(v) = &raw.not_equals {
        Guard::NotEquals(path, v.clone())
    } else {
        Guard::In(path, raw.in_.clone().unwrap_or_default())
    })
}

/// `when`: each guard a valid path and exactly one operator.
pub fn check_guards(p: &Parsed, problems: &mut Vec<Problem>) -> Vec<Guard> {
    p.raw
        .when
        .iter()
        .filter_map(|g| check_guard(&p.file, g, problems))
        .collect()
}

/// `for_each`: a valid path, if given.
pub fn check_for_each(p: &Parsed, problems: &mut Vec<Problem>) -> Option<Vec<String>> {
    let f = p.raw.for_each.as_ref()?;
    let segs = path_segments(&f.value);
    if segs.is_none() {
        problems.push(Problem::at(
            &p.file,
            &f.referenced,
            format!(
                "for_each: path {:?} must be dotted and start with event or meta",
                f.value
            ),
        ));
    }
    segs
}

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
            Some((_, address)) => {
                (!address.contains("{{")).then(|| super::address::address(address).map(|_| ()))
            }
            None => (!text.contains("{{") && !text.trim().is_empty())
                .then(|| super::address::list(text).map(|_| ())),
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
                for (locale, rel) in super::source::locale_variants(dir, &f.value) {
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
    let mut headers = Vec::new();
    for (h, v) in &email.headers {
        let bad = h.is_empty()
            || h.chars()
                .any(|ch| ch == ':' || ch.is_whitespace() || ch.is_control());
        if bad || RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
            c.problems.push(Problem::at(
                &p.file,
                &eloc,
                format!("email.headers: {h:?} is not an allowed header name"),
            ));
            continue;
        }
        let id = c.template(
            Field::Header(h.clone()),
            v,
            false,
            &eloc,
            format!("email.headers.{h}"),
        );
        headers.push((h.clone(), id));
    }
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

/// `retry`: at least one attempt, valid durations, a sane multiplier.
pub fn check_retry(p: &Parsed, problems: &mut Vec<Problem>) -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    let Some(r) = &p.raw.retry else {
        return retry;
    };
    let at = |m: String| Problem::at(&p.file, &r.referenced, m);
    if let Some(m) = r.value.max_attempts {
        if m == 0 {
            problems.push(at("retry.max_attempts must be at least 1".into()));
        }
        retry.max_attempts = m;
    }
    let Some(b) = &r.value.backoff else {
        return retry;
    };
    for (field, val, slot) in [
        ("initial", &b.initial, &mut retry.initial),
        ("max", &b.max, &mut retry.max),
    ] {
        if let Some(v) = val {
            match crate::duration::parse(v) {
                Ok(d) => *slot = d,
                Err(e) => problems.push(at(format!("retry.backoff.{field}: {e}"))),
            }
        }
    }
    if let Some(m) = b.multiplier {
        if !(1.0..=10.0).contains(&m) {
            problems.push(at(
                "retry.backoff.multiplier must be between 1.0 and 10.0".into()
            ));
        }
        retry.multiplier = m;
    }
    retry
}

/// The workflow's delivery settings, checked: category, suppression,
/// rate, digest, delay, send time, quiet hours, locale.
pub fn check_delivery(
    p: &Parsed,
    name: &str,
    problems: &mut Vec<Problem>,
) -> (super::Delivery, Vec<TemplateSource>) {
    let r = &p.raw;
    let mut sources = Vec::new();
    let mut template = |field: Field, text: &str, loc: &Location, what: &str| {
        let id = TemplateId::new(name, field);
        sources.push(TemplateSource {
            id: id.clone(),
            text: text.to_string(),
            html: false,
            file: p.file.clone(),
            loc: *loc,
            what: what.to_string(),
            template_file: None,
        });
        id
    };
    let at = |loc: &Location, m: String| Problem::at(&p.file, loc, m);
    let mut d = super::Delivery {
        ignore_suppression: r.ignore_suppression.unwrap_or(false),
        ..Default::default()
    };
    if let Some(c) = &r.category {
        let ok = !c.value.is_empty()
            && c.value.len() <= 64
            && c.value
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if ok {
            d.category = Some(c.value.clone());
        } else {
            problems.push(at(
                &c.referenced,
                format!(
                    "category {:?} must match [a-z0-9-]+ (64 characters at most)",
                    c.value
                ),
            ));
        }
    }
    if let Some(rate) = &r.rate {
        match crate::rate::Rate::parse(&rate.value) {
            Ok(x) => d.rate = Some(x),
            Err(e) => problems.push(at(&rate.referenced, format!("rate: {e}"))),
        }
    }
    if let Some(dg) = &r.digest {
        let loc = dg.referenced;
        let window = crate::duration::parse(&dg.value.window)
            .map_err(|e| problems.push(at(&loc, format!("digest.window: {e}"))))
            .ok();
        let max = dg.value.max.unwrap_or(50);
        if max == 0 {
            problems.push(at(&loc, "digest.max must be at least 1".into()));
        }
        if r.for_each.is_some() {
            problems.push(at(
                &loc,
                "digest and for_each cannot be combined: a digest is one email for many events"
                    .into(),
            ));
        }
        if r.delay.is_some() || r.send_at.is_some() {
            problems.push(at(
                &loc,
                "digest sends when its window closes: it cannot also have delay or send_at".into(),
            ));
        }
        let key = template(Field::DigestKey, &dg.value.key, &loc, "digest.key");
        if let Some(window) = window {
            d.digest = Some(super::DigestSpec {
                key,
                window,
                max: max.max(1),
            });
        }
    }
    if let Some(delay) = &r.delay {
        match crate::duration::parse(&delay.value) {
            Ok(x) => d.delay = Some(x),
            Err(e) => problems.push(at(&delay.referenced, format!("delay: {e}"))),
        }
        if r.send_at.is_some() {
            problems.push(at(
                &delay.referenced,
                "delay and send_at are exclusive".into(),
            ));
        }
    }
    if let Some(s) = &r.send_at {
        d.send_at = Some(template(Field::SendAt, &s.value, &s.referenced, "send_at"));
    }
    if let Some(q) = &r.quiet_hours {
        let loc = q.referenced;
        let hm = |what: &str, v: &str, problems: &mut Vec<Problem>| {
            let parsed = chrono::NaiveTime::parse_from_str(v, "%H:%M");
            parsed
                .map_err(|_| {
                    problems.push(at(&loc, format!("quiet_hours.{what}: {v:?} is not HH:MM")))
                })
                .ok()
        };
        let (from, to) = (
            hm("from", &q.value.from, problems),
            hm("to", &q.value.to, problems),
        );
        let tz = match q.value.tz.as_deref() {
            None => super::TimeZone::Fixed(chrono_tz::UTC),
            Some(t) if t.contains("{{") => {
                super::TimeZone::Template(template(Field::QuietHoursTz, t, &loc, "quiet_hours.tz"))
            }
            Some(t) => match super::helpers::check_time_zone(t) {
                Ok(z) => super::TimeZone::Fixed(z),
                Err(e) => {
                    problems.push(at(&loc, format!("quiet_hours.tz: {e}")));
                    super::TimeZone::Fixed(chrono_tz::UTC)
                }
            },
        };
        if let (Some(from), Some(to)) = (from, to) {
            if from == to {
                problems.push(at(
                    &loc,
                    "quiet_hours: from and to are the same time".into(),
                ));
            }
            d.quiet_hours = Some(super::QuietHours { from, to, tz });
        }
    }
    if let Some(l) = &r.locale {
        d.locale = Some(template(Field::Locale, &l.value, &l.referenced, "locale"));
    }
    (d, sources)
}
