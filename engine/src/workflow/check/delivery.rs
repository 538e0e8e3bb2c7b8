//! The delivery settings: category, suppression, rate, digest, delay,
//! send time, quiet hours, locale.

use serde_saphyr::Location;

use crate::workflow::Problem;
use crate::workflow::source::Parsed;
use crate::workflow::template_id::{Field, TemplateId};

use super::TemplateSource;

/// The workflow's delivery settings, checked: category, suppression,
/// rate, digest, delay, send time, quiet hours, locale.
pub fn check_delivery(
    p: &Parsed,
    name: &str,
    problems: &mut Vec<Problem>,
) -> (crate::workflow::Delivery, Vec<TemplateSource>) {
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
    let mut d = crate::workflow::Delivery {
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
            d.digest = Some(crate::workflow::DigestSpec {
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
            None => crate::workflow::TimeZone::Fixed(chrono_tz::UTC),
            Some(t) if t.contains("{{") => crate::workflow::TimeZone::Template(template(
                Field::QuietHoursTz,
                t,
                &loc,
                "quiet_hours.tz",
            )),
            Some(t) => match crate::workflow::helpers::check_time_zone(t) {
                Ok(z) => crate::workflow::TimeZone::Fixed(z),
                Err(e) => {
                    problems.push(at(&loc, format!("quiet_hours.tz: {e}")));
                    crate::workflow::TimeZone::Fixed(chrono_tz::UTC)
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
            d.quiet_hours = Some(crate::workflow::QuietHours { from, to, tz });
        }
    }
    if let Some(l) = &r.locale {
        d.locale = Some(template(Field::Locale, &l.value, &l.referenced, "locale"));
    }
    (d, sources)
}
