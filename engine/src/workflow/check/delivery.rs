//! The delivery settings: category, suppression, rate, digest, delay,
//! send time, quiet hours, locale.

use serde_saphyr::{Location, Spanned};

use crate::workflow::Problem;
use crate::workflow::source::Parsed;
use crate::workflow::spec::{RawDigest, RawQuietHours};
use crate::workflow::template_id::{Field, TemplateId};
use crate::workflow::{DigestSpec, QuietHours, TimeZone};

use super::TemplateSource;

/// The workflow's delivery settings, checked: category, suppression,
/// rate, digest, delay, send time, quiet hours, locale.
pub fn check_delivery(
    p: &Parsed,
    name: &str,
    problems: &mut Vec<Problem>,
) -> (crate::workflow::Delivery, Vec<TemplateSource>) {
    let r = &p.raw;
    let mut c = DeliveryCheck {
        p,
        name,
        sources: Vec::new(),
        problems,
    };
    let mut d = crate::workflow::Delivery {
        ignore_suppression: r.ignore_suppression.unwrap_or(false),
        ..Default::default()
    };
    if let Some(category) = &r.category {
        d.category = c.category(category);
    }
    if let Some(rate) = &r.rate {
        match crate::rate::Rate::parse(&rate.value) {
            Ok(x) => d.rate = Some(x),
            Err(e) => c.problem(&rate.referenced, format!("rate: {e}")),
        }
    }
    if let Some(dg) = &r.digest {
        d.digest = c.digest(dg);
    }
    if let Some(delay) = &r.delay {
        d.delay = c.delay(delay);
    }
    if let Some(s) = &r.send_at {
        d.send_at = Some(c.template(Field::SendAt, &s.value, &s.referenced, "send_at"));
    }
    if let Some(q) = &r.quiet_hours {
        d.quiet_hours = c.quiet_hours(q);
    }
    if let Some(l) = &r.locale {
        d.locale = Some(c.template(Field::Locale, &l.value, &l.referenced, "locale"));
    }
    (d, c.sources)
}

/// Collects the setting templates of one workflow as it checks them.
struct DeliveryCheck<'a> {
    p: &'a Parsed,
    name: &'a str,
    sources: Vec<TemplateSource>,
    problems: &'a mut Vec<Problem>,
}

impl DeliveryCheck<'_> {
    fn template(&mut self, field: Field, text: &str, loc: &Location, what: &str) -> TemplateId {
        let id = TemplateId::new(self.name, field);
        self.sources.push(TemplateSource {
            id: id.clone(),
            text: text.to_string(),
            html: false,
            file: self.p.file.clone(),
            yaml: self.p.yaml.clone(),
            loc: *loc,
            what: what.to_string(),
            template_file: None,
        });
        id
    }

    fn problem(&mut self, loc: &Location, m: String) {
        self.problems.push(Problem::at(&self.p.file, loc, m));
    }

    fn category(&mut self, c: &Spanned<String>) -> Option<String> {
        let ok = !c.value.is_empty()
            && c.value.len() <= 64
            && c.value
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if ok {
            return Some(c.value.clone());
        }
        self.problem(
            &c.referenced,
            format!(
                "category {:?} must match [a-z0-9-]+ (64 characters at most)",
                c.value
            ),
        );
        None
    }

    fn digest(&mut self, dg: &Spanned<RawDigest>) -> Option<DigestSpec> {
        let r = &self.p.raw;
        let loc = dg.referenced;
        let window = match crate::duration::parse(&dg.value.window) {
            Ok(w) => Some(w),
            Err(e) => {
                self.problem(&loc, format!("digest.window: {e}"));
                None
            }
        };
        let max = dg.value.max.unwrap_or(50);
        if max == 0 {
            self.problem(&loc, "digest.max must be at least 1".into());
        }
        if r.for_each.is_some() {
            self.problem(
                &loc,
                "digest and for_each cannot be combined: a digest is one email for many events"
                    .into(),
            );
        }
        if r.delay.is_some() || r.send_at.is_some() {
            self.problem(
                &loc,
                "digest sends when its window closes: it cannot also have delay or send_at".into(),
            );
        }
        let key = self.template(Field::DigestKey, &dg.value.key, &loc, "digest.key");
        window.map(|window| DigestSpec {
            key,
            window,
            max: max.max(1),
        })
    }

    fn delay(&mut self, delay: &Spanned<String>) -> Option<std::time::Duration> {
        let parsed = match crate::duration::parse(&delay.value) {
            Ok(x) => Some(x),
            Err(e) => {
                self.problem(&delay.referenced, format!("delay: {e}"));
                None
            }
        };
        if self.p.raw.send_at.is_some() {
            self.problem(&delay.referenced, "delay and send_at are exclusive".into());
        }
        parsed
    }

    fn quiet_hours(&mut self, q: &Spanned<RawQuietHours>) -> Option<QuietHours> {
        let loc = q.referenced;
        let from = self.hour_minute(&loc, "from", &q.value.from);
        let to = self.hour_minute(&loc, "to", &q.value.to);
        let tz = match q.value.tz.as_deref() {
            None => TimeZone::Fixed(chrono_tz::UTC),
            Some(t) if t.contains("{{") => {
                TimeZone::Template(self.template(Field::QuietHoursTz, t, &loc, "quiet_hours.tz"))
            }
            Some(t) => match crate::workflow::helpers::check_time_zone(t) {
                Ok(z) => TimeZone::Fixed(z),
                Err(e) => {
                    self.problem(&loc, format!("quiet_hours.tz: {e}"));
                    TimeZone::Fixed(chrono_tz::UTC)
                }
            },
        };
        let (from, to) = (from?, to?);
        if from == to {
            self.problem(&loc, "quiet_hours: from and to are the same time".into());
        }
        Some(QuietHours { from, to, tz })
    }

    fn hour_minute(&mut self, loc: &Location, what: &str, v: &str) -> Option<chrono::NaiveTime> {
        match chrono::NaiveTime::parse_from_str(v, "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                self.problem(loc, format!("quiet_hours.{what}: {v:?} is not HH:MM"));
                None
            }
        }
    }
}
