//! Workflows: parse YAML (positions kept) → validate without I/O beyond
//! reading the template files they name → compile templates into a
//! [`Catalog`] ready to render. Every problem is reported as
//! `FILE:LINE:COL: message`, all problems at once.
pub mod helpers;
pub mod render;
pub mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde_saphyr::{Location, Spanned};

use crate::retry::RetryPolicy;
use crate::subject;
use spec::{OneOrMany, RawGuard, RawWorkflow};

/// One validation problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// All problems found in a workflows directory.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in workflows:\n{}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// A guard, checked against the template context.
#[derive(Debug, Clone)]
pub enum Guard {
    Exists(Vec<String>, bool),
    Equals(Vec<String>, serde_json::Value),
    NotEquals(Vec<String>, serde_json::Value),
    In(Vec<String>, Vec<serde_json::Value>),
}

/// A validated workflow; its templates live in the [`Catalog`]'s registries.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub subjects: Vec<String>,
    pub guards: Vec<Guard>,
    pub for_each: Option<Vec<String>>,
    pub counts: RecipientCounts,
    pub header_names: Vec<String>,
    pub has_text: bool,
    pub has_html: bool,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Default)]
pub struct RecipientCounts {
    pub to: usize,
    pub cc: usize,
    pub bcc: usize,
    pub reply_to: usize,
}

/// Every workflow of a directory, compiled.
pub struct Catalog {
    pub dir: PathBuf,
    pub workflows: Vec<Workflow>,
    /// Templates rendered into HTML bodies: values are HTML-escaped.
    pub(crate) html: Handlebars<'static>,
    /// Everything else (addresses, subject, text, headers): not escaped.
    pub(crate) plain: Handlebars<'static>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }
}

fn loc_problem(file: &Path, loc: &Location, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: loc.line().max(1),
        col: loc.column().max(1),
        message: message.into(),
    }
}

fn file_problem(file: &Path, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: 1,
        col: 1,
        message: message.into(),
    }
}

/// serde-saphyr's message without its location prefix and snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest.to_string(),
        _ => first.to_string(),
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Parse one file; YAML and shape errors come back located.
pub fn parse(file: &Path, text: &str) -> Result<RawWorkflow, Problem> {
    serde_saphyr::from_str::<RawWorkflow>(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        Problem {
            file: file.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            message: yaml_message(&e),
        }
    })
}

fn path_segments(p: &str) -> Option<Vec<String>> {
    let segs: Vec<String> = p.split('.').map(str::to_string).collect();
    let ok = segs.iter().all(|s| !s.is_empty())
        && matches!(
            segs.first().map(String::as_str),
            Some("event" | "meta" | "item")
        );
    ok.then_some(segs)
}

struct Builder {
    dir: PathBuf,
    problems: Vec<Problem>,
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
}

impl Builder {
    fn new(dir: &Path) -> Builder {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        helpers::register(&mut html);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut plain);
        Builder {
            dir: dir.to_path_buf(),
            problems: Vec::new(),
            html,
            plain,
        }
    }

    /// Resolve a template file strictly inside the workflows directory.
    fn read_template(&mut self, file: &Path, field: &Spanned<String>) -> Option<String> {
        let rel = Path::new(&field.value);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            self.problems.push(loc_problem(
                file,
                &field.referenced,
                format!(
                    "template path {:?} must be relative and stay inside the workflows directory",
                    field.value
                ),
            ));
            return None;
        }
        let path = self.dir.join(rel);
        let inside = match (path.canonicalize(), self.dir.canonicalize()) {
            (Ok(p), Ok(d)) => p.starts_with(d),
            _ => {
                self.problems.push(loc_problem(
                    file,
                    &field.referenced,
                    format!("template file {:?} not found", field.value),
                ));
                return None;
            }
        };
        if !inside {
            self.problems.push(loc_problem(
                file,
                &field.referenced,
                format!(
                    "template path {:?} resolves outside the workflows directory",
                    field.value
                ),
            ));
            return None;
        }
        match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(loc_problem(
                    file,
                    &field.referenced,
                    format!("cannot read template {:?}: {e}", field.value),
                ));
                None
            }
        }
    }

    fn compile(
        &mut self,
        html: bool,
        name: String,
        text: &str,
        file: &Path,
        loc: &Location,
        what: &str,
    ) {
        let reg = if html {
            &mut self.html
        } else {
            &mut self.plain
        };
        if let Err(e) = reg.register_template_string(&name, text) {
            self.problems.push(loc_problem(
                file,
                loc,
                format!("{what}: invalid template: {}", e.reason()),
            ));
        }
    }

    fn partials(&mut self) {
        let pdir = self.dir.join("templates/partials");
        let Ok(entries) = std::fs::read_dir(&pdir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let Some(fname) = p.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(stem) = fname.strip_suffix(".hbs") else {
                continue;
            };
            let name = stem
                .trim_end_matches(".html")
                .trim_end_matches(".txt")
                .to_string();
            match std::fs::read_to_string(&p) {
                Ok(t) => {
                    for reg in [&mut self.html, &mut self.plain] {
                        if let Err(e) = reg.register_partial(&name, &t) {
                            self.problems
                                .push(file_problem(&p, format!("invalid partial: {}", e.reason())));
                            break;
                        }
                    }
                }
                Err(e) => self
                    .problems
                    .push(file_problem(&p, format!("cannot read partial: {e}"))),
            }
        }
    }

    fn recipients(&mut self, wf: &str, kind: &str, v: &Spanned<OneOrMany>, file: &Path) -> usize {
        let items = v.value.items();
        if kind == "to" && (items.is_empty() || items.iter().all(|s| s.trim().is_empty())) {
            self.problems.push(loc_problem(
                file,
                &v.referenced,
                "email.to must name at least one recipient",
            ));
        }
        for (i, t) in items.iter().enumerate() {
            self.compile(
                false,
                format!("{wf}:{kind}:{i}"),
                t,
                file,
                &v.referenced,
                &format!("email.{kind}"),
            );
        }
        items.len()
    }

    fn guard(&mut self, g: &Spanned<RawGuard>, file: &Path) -> Option<Guard> {
        let raw = &g.value;
        let Some(path) = path_segments(&raw.path) else {
            self.problems.push(loc_problem(
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
            self.problems.push(loc_problem(
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

    fn workflow(
        &mut self,
        file: &Path,
        raw: RawWorkflow,
        names: &mut BTreeMap<String, PathBuf>,
    ) -> Option<Workflow> {
        let before = self.problems.len();
        let name = raw.name.value.clone();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            self.problems.push(loc_problem(
                file,
                &raw.name.referenced,
                format!("name {name:?} must match [a-z0-9-]+"),
            ));
        } else if let Some(other) = names.insert(name.clone(), file.to_path_buf()) {
            self.problems.push(loc_problem(
                file,
                &raw.name.referenced,
                format!(
                    "duplicate workflow name {name:?} (also in {})",
                    other.display()
                ),
            ));
        }
        if raw.on.value.subjects.is_empty() {
            self.problems.push(loc_problem(
                file,
                &raw.on.referenced,
                "on.subjects must list at least one subject filter",
            ));
        }
        let mut subjects = Vec::new();
        for s in &raw.on.value.subjects {
            match subject::validate_filter(&s.value) {
                Ok(()) => subjects.push(s.value.clone()),
                Err(e) => self.problems.push(loc_problem(
                    file,
                    &s.referenced,
                    format!("on.subjects: {:?}: {e}", s.value),
                )),
            }
        }
        let guards: Vec<Guard> = raw
            .when
            .iter()
            .filter_map(|g| self.guard(g, file))
            .collect();
        let for_each = raw.for_each.as_ref().and_then(|f| {
            let segs = path_segments(&f.value);
            if segs.is_none() {
                self.problems.push(loc_problem(
                    file,
                    &f.referenced,
                    format!(
                        "for_each: path {:?} must be dotted and start with event or meta",
                        f.value
                    ),
                ));
            }
            segs
        });
        let email = &raw.email.value;
        let eloc = raw.email.referenced;
        self.compile(
            false,
            format!("{name}:from"),
            &email.from.value,
            file,
            &email.from.referenced,
            "email.from",
        );
        let mut counts = RecipientCounts {
            to: self.recipients(&name, "to", &email.to, file),
            ..Default::default()
        };
        if let Some(v) = &email.cc {
            counts.cc = self.recipients(&name, "cc", v, file);
        }
        if let Some(v) = &email.bcc {
            counts.bcc = self.recipients(&name, "bcc", v, file);
        }
        if let Some(v) = &email.reply_to {
            counts.reply_to = self.recipients(&name, "reply_to", v, file);
        }
        self.compile(
            false,
            format!("{name}:subject"),
            &email.subject.value,
            file,
            &email.subject.referenced,
            "email.subject",
        );
        let body = |b: &mut Builder,
                    inline: &Option<Spanned<String>>,
                    from_file: &Option<Spanned<String>>,
                    html: bool,
                    what: &str|
         -> bool {
            match (inline, from_file) {
                (Some(_), Some(f)) => {
                    b.problems.push(loc_problem(
                        file,
                        &f.referenced,
                        format!("email.{what} and email.{what}_file are exclusive"),
                    ));
                    false
                }
                (Some(t), None) => {
                    b.compile(
                        html,
                        format!("{name}:{what}"),
                        &t.value,
                        file,
                        &t.referenced,
                        &format!("email.{what}"),
                    );
                    true
                }
                (None, Some(f)) => match b.read_template(file, f) {
                    Some(t) => {
                        b.compile(
                            html,
                            format!("{name}:{what}"),
                            &t,
                            file,
                            &f.referenced,
                            &format!("email.{what}_file {:?}", f.value),
                        );
                        true
                    }
                    None => false,
                },
                (None, None) => false,
            }
        };
        let has_text = body(self, &email.text, &email.text_file, false, "text");
        let has_html = body(self, &email.html, &email.html_file, true, "html");
        if email.text.is_none()
            && email.text_file.is_none()
            && email.html.is_none()
            && email.html_file.is_none()
        {
            self.problems.push(loc_problem(
                file,
                &eloc,
                "email needs a body: text, text_file, html or html_file",
            ));
        }
        let mut header_names = Vec::new();
        for (h, v) in &email.headers {
            let bad = h.is_empty()
                || h.chars()
                    .any(|c| c == ':' || c.is_whitespace() || c.is_control());
            let reserved = [
                "from",
                "to",
                "cc",
                "bcc",
                "subject",
                "message-id",
                "date",
                "reply-to",
            ]
            .contains(&h.to_ascii_lowercase().as_str());
            if bad || reserved {
                self.problems.push(loc_problem(
                    file,
                    &eloc,
                    format!("email.headers: {h:?} is not an allowed header name"),
                ));
                continue;
            }
            self.compile(
                false,
                format!("{name}:header:{h}"),
                v,
                file,
                &eloc,
                &format!("email.headers.{h}"),
            );
            header_names.push(h.clone());
        }
        let mut retry = RetryPolicy::default();
        if let Some(r) = &raw.retry {
            if let Some(m) = r.value.max_attempts {
                if m == 0 {
                    self.problems.push(loc_problem(
                        file,
                        &r.referenced,
                        "retry.max_attempts must be at least 1",
                    ));
                }
                retry.max_attempts = m;
            }
            if let Some(b) = &r.value.backoff {
                for (field, val, slot) in [
                    ("initial", &b.initial, &mut retry.initial),
                    ("max", &b.max, &mut retry.max),
                ] {
                    if let Some(v) = val {
                        match crate::duration::parse(v) {
                            Ok(d) => *slot = d,
                            Err(e) => self.problems.push(loc_problem(
                                file,
                                &r.referenced,
                                format!("retry.backoff.{field}: {e}"),
                            )),
                        }
                    }
                }
                if let Some(m) = b.multiplier {
                    if !(1.0..=10.0).contains(&m) {
                        self.problems.push(loc_problem(
                            file,
                            &r.referenced,
                            "retry.backoff.multiplier must be between 1.0 and 10.0",
                        ));
                    }
                    retry.multiplier = m;
                }
            }
        }
        (self.problems.len() == before).then(|| Workflow {
            name,
            description: raw.description,
            file: file.to_path_buf(),
            subjects,
            guards,
            for_each,
            counts,
            header_names,
            has_text,
            has_html,
            retry,
        })
    }
}

/// Load, validate and compile every workflow under `dir`.
pub fn load(dir: &Path) -> Result<Catalog, Problems> {
    let mut files = Vec::new();
    if let Err(e) = yaml_files(dir, &mut files) {
        return Err(Problems(vec![file_problem(
            dir,
            format!("cannot read workflows directory: {e}"),
        )]));
    }
    let mut b = Builder::new(dir);
    b.partials();
    let mut names = BTreeMap::new();
    let mut workflows = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                b.problems
                    .push(file_problem(file, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse(file, &text) {
            Ok(raw) => {
                if let Some(w) = b.workflow(file, raw, &mut names) {
                    workflows.push(w);
                }
            }
            Err(p) => b.problems.push(p),
        }
    }
    if !b.problems.is_empty() {
        return Err(Problems(b.problems));
    }
    Ok(Catalog {
        dir: dir.to_path_buf(),
        workflows,
        html: b.html,
        plain: b.plain,
    })
}
