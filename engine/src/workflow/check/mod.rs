//! The checks of one parsed workflow, each a small function that reports
//! every problem it finds (located `FILE:LINE:COL`) and returns what it
//! validated. `compile` runs them all; nothing stops at the first problem.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::source::Parsed;
use super::spec::RawGuard;
use super::template_id::TemplateId;
use super::{Guard, Problem};
use crate::retry::RetryPolicy;
use crate::subject;

/// A template's text, where it came from, and how it is rendered.
pub struct TemplateSource {
    pub id: TemplateId,
    pub text: String,
    /// Rendered into an HTML body: values are HTML-escaped.
    pub html: bool,
    pub file: PathBuf,
    /// The workflow file's text, to trace a problem inside an inline
    /// template to its line and column there.
    pub yaml: std::sync::Arc<str>,
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
    if retry.initial > retry.max {
        let default = |given: &Option<String>| {
            if given.is_none() {
                " (the default)"
            } else {
                ""
            }
        };
        problems.push(at(format!(
            "retry.backoff.initial {}{} is longer than retry.backoff.max {}{}: every wait would be cut to max",
            crate::duration::human(retry.initial),
            default(&b.initial),
            crate::duration::human(retry.max),
            default(&b.max),
        )));
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

mod delivery;
mod email;

pub use delivery::check_delivery;
pub use email::check_email;
