//! Compiling checked templates into the two Handlebars registries a
//! [`Catalog`](super::Catalog) renders with: HTML bodies (values escaped) and
//! everything else (addresses, subject, text, headers: not escaped). Each
//! template is scanned, parsed and checked ([`super::templates`]) before it
//! is registered, so the registries only ever hold templates that cannot
//! fail for a reason visible without the payload.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use handlebars::{Handlebars, Template};

use super::Problem;
use super::check::TemplateSource;
use super::source::Partial;
use super::template_id::TemplateId;
use super::templates::{self, GraphReport, MAX_TOTAL_NESTING, PartialGraph, TemplateProblem};

/// The registries being filled.
pub struct Registries {
    pub html: Handlebars<'static>,
    pub plain: Handlebars<'static>,
    /// Partial names that passed their checks.
    partials: BTreeSet<String>,
    /// Partials that write a bare `{{> @partial-block}}`: they must be
    /// included as blocks.
    needs_block: BTreeSet<String>,
    graph: GraphReport,
    /// Per template: root paths its `#each`/`#with` blocks need (strict mode
    /// does not check block helpers' arguments; the renderer does).
    pub block_paths: BTreeMap<TemplateId, Vec<Vec<String>>>,
}

/// Parse a template, refusing first what would make the parser recurse too
/// deep, and turning a parser panic (it has `unwrap`s) into a problem.
fn parse(text: &str) -> Result<Template, TemplateProblem> {
    templates::prescan(text).map_err(|message| TemplateProblem {
        line: None,
        col: None,
        message,
    })?;
    match std::panic::catch_unwind(|| Template::compile(text)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(match templates::syntax::explain(text) {
            Some(cause) => TemplateProblem {
                message: format!("invalid template: {}", cause.message),
                ..cause
            },
            None => TemplateProblem {
                line: e.pos().map(|p| p.0),
                col: e.pos().map(|p| p.1),
                message: format!(
                    "invalid template: {}",
                    templates::syntax::plain_reason(&e.reason().to_string())
                ),
            },
        }),
        Err(_) => Err(TemplateProblem {
            line: None,
            col: None,
            message: "invalid template: the template parser failed on it".into(),
        }),
    }
}

/// A problem inside a template: at its line in the template file, or at
/// the YAML field of an inline template (with the template's own position).
fn locate(t: &TemplateSource, p: &TemplateProblem) -> Problem {
    if let Some(file) = &t.template_file {
        return Problem {
            file: file.clone(),
            line: p.line.unwrap_or(1) as u64,
            col: p.col.unwrap_or(1) as u64,
            message: format!("{}: {}", t.what, p.message),
        };
    }
    let in_file = |l: usize, c: usize| super::inline::in_file(&t.yaml, &t.loc, &t.text, l, c);
    if let (Some(l), Some(c)) = (p.line, p.col)
        && let Some((line, col)) = in_file(l, c)
    {
        return Problem {
            file: t.file.clone(),
            line,
            col,
            message: format!("{}: {}", t.what, refer_to_file(&p.message, in_file)),
        };
    }
    let within = match (p.line, p.col) {
        (Some(l), Some(c)) if l > 1 => format!(" (template line {l}, column {c})"),
        (Some(_), Some(c)) if c > 1 => format!(" (template column {c})"),
        _ => String::new(),
    };
    Problem::at(
        &t.file,
        &t.loc,
        format!("{}: {}{within}", t.what, p.message),
    )
}

/// A message's own reference to another place in the template ("template
/// line L, column C"), as a place in the file when it can be traced there.
fn refer_to_file(message: &str, in_file: impl Fn(usize, usize) -> Option<(u64, u64)>) -> String {
    const AT: &str = "template line ";
    let Some(start) = message.find(AT) else {
        return message.to_string();
    };
    let rest = &message[start + AT.len()..];
    let Some((l, rest)) = rest.split_once(", column ") else {
        return message.to_string();
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (c, after) = rest.split_at(digits);
    match (l.parse(), c.parse()) {
        (Ok(l), Ok(c)) => match in_file(l, c) {
            Some((line, col)) => format!("{}line {line}, column {col}{after}", &message[..start]),
            None => message.to_string(),
        },
        _ => message.to_string(),
    }
}

fn in_partial(file: &Path, p: &TemplateProblem) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: p.line.unwrap_or(1) as u64,
        col: p.col.unwrap_or(1) as u64,
        message: p.message.clone(),
    }
}

impl Registries {
    pub fn new() -> Registries {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        super::helpers::register(&mut html);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        super::helpers::register(&mut plain);
        Registries {
            html,
            plain,
            partials: BTreeSet::new(),
            needs_block: BTreeSet::new(),
            graph: GraphReport::default(),
            block_paths: BTreeMap::new(),
        }
    }

    /// Check every partial and their include graph, then register those
    /// that pass in both registries (a partial may serve HTML and text).
    pub fn partials(&mut self, partials: &[Partial], problems: &mut Vec<Problem>) {
        let names: BTreeSet<String> = partials.iter().map(|p| p.name.clone()).collect();
        let mut graph = PartialGraph::new();
        let mut ok = Vec::new();
        for p in partials {
            let t = match parse(&p.text) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(in_partial(&p.file, &e));
                    continue;
                }
            };
            let facts = templates::check(&t, &names);
            if !facts.problems.is_empty() {
                problems.extend(facts.problems.iter().map(|e| in_partial(&p.file, e)));
                continue;
            }
            if facts.bare_partial_block.is_some() {
                self.needs_block.insert(p.name.clone());
            }
            graph.insert(p.name.clone(), (facts.partials, facts.nesting));
            ok.push((p, facts.included_bare));
        }
        self.graph = templates::check_partial_graph(&graph);
        for (p, included_bare) in ok {
            let bare = self.bare_includes(&included_bare);
            if !bare.is_empty() {
                problems.extend(bare.iter().map(|e| in_partial(&p.file, e)));
                continue;
            }
            if let Some(found) = self.graph.problems.get(&p.name) {
                problems.extend(found.iter().map(|m| Problem::in_file(&p.file, m.clone())));
                continue;
            }
            for reg in [&mut self.html, &mut self.plain] {
                if let Err(e) = reg.register_partial(&p.name, &p.text) {
                    problems.push(Problem::in_file(
                        &p.file,
                        format!("invalid partial: {}", e.reason()),
                    ));
                    break;
                }
            }
            self.partials.insert(p.name.clone());
        }
    }

    /// Problems of including without a block (`{{> name}}`) partials that
    /// render `{{> @partial-block}}` bare.
    fn bare_includes(
        &self,
        included: &BTreeMap<String, (Option<usize>, Option<usize>)>,
    ) -> Vec<TemplateProblem> {
        included
            .iter()
            .filter(|(name, _)| self.needs_block.contains(*name))
            .map(|(name, (line, col))| TemplateProblem {
                line: *line,
                col: *col,
                message: format!("{{{{> {name}}}}}: {}", templates::PARTIAL_BLOCK_USE),
            })
            .collect()
    }

    /// Check and register one workflow template.
    pub fn template(&mut self, t: &TemplateSource, problems: &mut Vec<Problem>) {
        let parsed = match parse(&t.text) {
            Ok(p) => p,
            Err(e) => {
                problems.push(locate(t, &e));
                return;
            }
        };
        let mut facts = templates::check(&parsed, &self.partials);
        if let Some((line, col)) = facts.bare_partial_block {
            facts.problems.push(TemplateProblem {
                line,
                col,
                message: templates::PARTIAL_BLOCK_USE.into(),
            });
        }
        facts
            .problems
            .extend(self.bare_includes(&facts.included_bare));
        if !facts.problems.is_empty() {
            problems.extend(facts.problems.iter().map(|e| locate(t, e)));
            return;
        }
        let (_, weight) = self.graph.reach(&facts.partials);
        if facts.nesting + weight > MAX_TOTAL_NESTING {
            problems.push(locate(
                t,
                &TemplateProblem {
                    line: None,
                    col: None,
                    message: format!(
                        "blocks nest {} deep with the partials it includes, over the limit of {MAX_TOTAL_NESTING}",
                        facts.nesting + weight
                    ),
                },
            ));
            return;
        }
        let reg = if t.html {
            &mut self.html
        } else {
            &mut self.plain
        };
        reg.register_template(&t.id.to_string(), parsed);
        if !facts.block_paths.is_empty() {
            self.block_paths.insert(t.id.clone(), facts.block_paths);
        }
    }
}
