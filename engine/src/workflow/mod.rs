//! Workflows: load → check → compile. [`load`] reads a directory (YAML files,
//! template files, partials), runs every named check (module `check`) on each
//! workflow, compiles the templates, and returns a [`Catalog`] ready to
//! render, or every problem found, each as `FILE:LINE:COL: message`.
//!
//! ```no_run
//! match herald::workflow::load("workflows/".as_ref()) {
//!     Ok(catalog) => println!("{} workflows", catalog.workflows.len()),
//!     // Every problem, each as FILE:LINE:COL: message.
//!     Err(problems) => eprintln!("{problems}"),
//! }
//! ```
pub(crate) mod address;
mod check;
mod compile;
mod compiled;
#[cfg(test)]
mod doc_examples;
pub(crate) mod format;
pub(crate) mod helpers;
mod inline;
mod problem;
pub mod render;
pub(crate) mod source;
pub mod spec;
mod template_id;
mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::retry::RetryPolicy;

pub use address::Mailbox;
pub(crate) use compiled::{
    AddressTemplate, CompiledEmail, Delivery, DigestSpec, Guard, QuietHours, Templates, TimeZone,
};
pub use problem::{Problem, Problems};
pub(crate) use template_id::TemplateId;

/// A validated workflow; its templates live in the [`Catalog`]'s registries.
///
/// ```no_run
/// # fn example() -> Result<(), herald::workflow::Problems> {
/// let catalog = herald::workflow::load("workflows".as_ref())?;
/// for wf in &catalog.workflows {
///     println!("{} ({}): {:?}", wf.name, wf.file.display(), wf.subjects);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    /// The YAML file it was loaded from.
    pub file: PathBuf,
    /// The NATS subject filters it consumes.
    pub subjects: Vec<String>,
    pub(crate) guards: Vec<Guard>,
    pub(crate) for_each: Option<Vec<String>>,
    pub(crate) email: CompiledEmail,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_uncertain: spec::OnUncertain,
    pub(crate) delivery: Delivery,
    /// The templates of the set it was loaded with: a workflow always
    /// renders with its own, even after a reload swapped the catalog.
    pub(crate) templates: Arc<Templates>,
}

impl Workflow {
    /// The category of its mail, if it is bulk mail (one-click unsubscribe).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: Welcome, text: 'Hi {{event.name}}' }\n")?;
    /// # std::fs::write(dir.path().join("news.yaml"), "name: news\non: { subjects: [events.news.>] }\ncategory: newsletter\ndelay: 10m\nemail: { from: news@example.org, to: '{{event.email}}', subject: News, text: '{{event.body}}' }\n")?;
    /// let catalog = herald::workflow::load(dir.path())?;
    /// let bulk: Vec<&str> = catalog.workflows.iter().filter_map(|w| w.category()).collect();
    /// assert_eq!(bulk, ["newsletter"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn category(&self) -> Option<&str> {
        self.delivery.category.as_deref()
    }

    /// Does it schedule (delay, send time, quiet hours or digest) rather
    /// than send as each event arrives?
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: Welcome, text: 'Hi {{event.name}}' }\n")?;
    /// # std::fs::write(dir.path().join("news.yaml"), "name: news\non: { subjects: [events.news.>] }\ncategory: newsletter\ndelay: 10m\nemail: { from: news@example.org, to: '{{event.email}}', subject: News, text: '{{event.body}}' }\n")?;
    /// let catalog = herald::workflow::load(dir.path())?;
    /// let immediate: Vec<&str> = catalog.workflows.iter().filter(|w| !w.schedules()).map(|w| w.name.as_str()).collect();
    /// assert_eq!(immediate, ["welcome"]); // news waits 10 minutes
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedules(&self) -> bool {
        let d = &self.delivery;
        d.digest.is_some() || d.delay.is_some() || d.send_at.is_some() || d.quiet_hours.is_some()
    }
}

/// Every workflow of a directory, compiled.
///
/// ```no_run
/// # fn example() -> Result<(), herald::workflow::Problems> {
/// let catalog = herald::workflow::load("workflows".as_ref())?;
/// println!("{} workflows from {}, version {}", catalog.workflows.len(), catalog.dir.display(), catalog.version);
/// # Ok(()) }
/// ```
pub struct Catalog {
    pub dir: PathBuf,
    pub workflows: Vec<Workflow>,
    /// A hash of every file of the directory: which set is loaded.
    pub version: String,
}

impl Catalog {
    /// Find a workflow by its `name:` (what dead letters and the ledger record).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: Welcome, text: 'Hi {{event.name}}' }\n")?;
    /// # std::fs::write(dir.path().join("news.yaml"), "name: news\non: { subjects: [events.news.>] }\ncategory: newsletter\ndelay: 10m\nemail: { from: news@example.org, to: '{{event.email}}', subject: News, text: '{{event.body}}' }\n")?;
    /// let catalog = herald::workflow::load(dir.path())?;
    /// let welcome = catalog.get("welcome").ok_or("no workflow named welcome")?;
    /// assert_eq!(welcome.subjects, ["events.user.joined"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }
}

/// Load, check and compile every workflow under `dir`.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("welcome.yaml"), "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: Welcome, text: 'Hi {{event.name}}' }\n")?;
/// # std::fs::write(dir.path().join("news.yaml"), "name: news\non: { subjects: [events.news.>] }\ncategory: newsletter\ndelay: 10m\nemail: { from: news@example.org, to: '{{event.email}}', subject: News, text: '{{event.body}}' }\n")?;
/// // dir holds welcome.yaml and news.yaml
/// let catalog = herald::workflow::load(dir.path())?;
/// assert_eq!(catalog.workflows.len(), 2);
/// assert!(herald::workflow::load("/no/such/dir".as_ref()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load(dir: &Path) -> Result<Catalog, Problems> {
    let mut problems = Vec::new();
    let files = source::yaml_files(dir, &mut problems).map_err(|p| Problems(vec![p]))?;
    let partials = source::read_partials(dir, &mut problems);
    let parsed = source::read_workflows(&files, &mut problems);
    let mut registries = compile::Registries::new();
    registries.partials(&partials, &mut problems);
    let mut names = BTreeMap::new();
    let mut workflows = Vec::new();
    for p in &parsed {
        let before = problems.len();
        let name = check::check_name(p, &mut names, &mut problems);
        let subjects = check::check_subjects(p, &mut problems);
        let guards = check::check_guards(p, &mut problems);
        let for_each = check::check_for_each(p, &mut problems);
        let (email, sources) = check::check_email(p, &name, dir, &mut problems);
        for t in &sources {
            registries.template(t, &mut problems);
        }
        let retry = check::check_retry(p, &mut problems);
        let (delivery, delivery_sources) = check::check_delivery(p, &name, &mut problems);
        for t in &delivery_sources {
            registries.template(t, &mut problems);
        }
        if problems.len() == before {
            workflows.push(Workflow {
                name,
                description: p.raw.description.clone(),
                file: p.file.clone(),
                subjects,
                guards,
                for_each,
                email,
                retry,
                on_uncertain: p.raw.on_uncertain.unwrap_or_default(),
                delivery,
                templates: Arc::default(),
            });
        }
    }
    if !problems.is_empty() {
        // In reading order: the checks run field by field, not line by line.
        problems.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(Problems(problems));
    }
    let templates = Arc::new(Templates {
        html: registries.html,
        plain: registries.plain,
        block_paths: registries.block_paths,
    });
    for w in &mut workflows {
        w.templates = templates.clone();
    }
    Ok(Catalog {
        dir: dir.to_path_buf(),
        workflows,
        version: source::version(dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    const WF: &str = "name: w\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: s\n  text_file: templates/t.hbs\n";

    /// A `from:` or recipient written without a template tag renders to
    /// itself: if it is not an address, validation says so at its line.
    #[test]
    fn literal_addresses_are_checked_at_validation() {
        let bad = WF
            .replace("from: a@example.com", "from: \"not an address\"")
            .replace("to: b@example.com", "to: \"Ada <nope>\"");
        let d = dir(&[("w.yaml", &bad), ("templates/t.hbs", "hi")]);
        let problems = match load(d.path()) {
            Ok(_) => panic!("accepted"),
            Err(p) => p.to_string(),
        };
        assert!(problems.contains("w.yaml:4:"), "{problems}");
        assert!(problems.contains("email.from"), "{problems}");
        assert!(problems.contains("w.yaml:5:"), "{problems}");
        let good = WF.replace(
            "from: a@example.com",
            "from: \"Herald, Inc. <a@example.com>\"",
        );
        let d = dir(&[("w.yaml", &good), ("templates/t.hbs", "hi")]);
        assert!(load(d.path()).is_ok());
    }

    /// The deepest rendering validation allows: nesting at the limit through
    /// the longest chain of partials. It must render on a 2 MiB stack (a
    /// tokio worker thread's), or the limits are wrong.
    #[test]
    fn the_deepest_allowed_template_renders_on_a_small_stack() {
        let per = templates::MAX_TOTAL_NESTING / templates::MAX_PARTIAL_DEPTH;
        let nest = |inner: &str| {
            format!(
                "{}{inner}{}",
                "{{#if true}}".repeat(per),
                "{{/if}}".repeat(per)
            )
        };
        let mut files: Vec<(String, String)> = (0..templates::MAX_PARTIAL_DEPTH)
            .map(|i| {
                let inner = if i + 1 < templates::MAX_PARTIAL_DEPTH {
                    format!("{{{{> p{}}}}}", i + 1)
                } else {
                    "{{event.x}}".to_string()
                };
                (format!("templates/partials/p{i}.hbs"), nest(&inner))
            })
            .collect();
        files.push(("templates/t.hbs".into(), "{{> p0}}".into()));
        files.push(("w.yaml".into(), WF.into()));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let d = dir(&refs);
        let catalog = load(d.path()).unwrap();
        let out = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let wf = catalog.get("w").unwrap().clone();
                let meta = render::Meta {
                    id: "x".into(),
                    subject: "events.a".into(),
                    aggregate: None,
                    occurred_at: String::new(),
                    workflow: "w".into(),
                };
                match catalog.render(&wf, &json!({"x": "deep"}), &meta).unwrap() {
                    render::Outcome::Emails(e) => e[0].text.clone().unwrap(),
                    render::Outcome::Skipped { .. } => String::new(),
                }
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(out, "deep");
    }

    #[test]
    fn one_level_deeper_is_refused() {
        let per = templates::MAX_TOTAL_NESTING / templates::MAX_PARTIAL_DEPTH + 1;
        let body = format!("{}x{}", "{{#if true}}".repeat(per), "{{/if}}".repeat(per));
        let mut files: Vec<(String, String)> = (0..templates::MAX_PARTIAL_DEPTH)
            .map(|i| {
                let inner = if i + 1 < templates::MAX_PARTIAL_DEPTH {
                    format!("{{{{> p{}}}}}{body}", i + 1)
                } else {
                    body.clone()
                };
                (format!("templates/partials/p{i}.hbs"), inner)
            })
            .collect();
        files.push(("templates/t.hbs".into(), "{{> p0}}".into()));
        files.push(("w.yaml".into(), WF.into()));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let d = dir(&refs);
        let problems = load(d.path()).err().unwrap().0;
        assert!(
            problems.iter().any(|p| p.message.contains("nest")),
            "{problems:?}"
        );
    }
}
