//! The walk over one parsed template: the helper signatures it checks calls
//! against, blocks and their nesting, partials included, root paths.
use std::collections::BTreeSet;

use handlebars::Template;
use handlebars::template::{HelperTemplate, Parameter, TemplateElement, TemplateMapping};

use super::{Facts, MAX_NESTING, MAX_SUBEXPRESSION_DEPTH, PARTIAL_BLOCK_USE, TemplateProblem};

mod arguments;

/// How a helper may be called.
#[derive(Debug, Clone, Copy)]
struct Signature {
    min: usize,
    max: Option<usize>,
    block: BlockUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockUse {
    /// `{{name …}}` or `(name …)` only.
    Inline,
    /// `{{#name …}}…{{/name}}` only.
    Block,
}

const fn sig(min: usize, max: Option<usize>, block: BlockUse) -> Signature {
    Signature { min, max, block }
}

/// Every helper a template may call: Handlebars' built-ins and Herald's own
/// (`helpers.rs`). A name not here is a validation error.
fn signature(name: &str) -> Option<Signature> {
    use BlockUse::*;
    Some(match name {
        "if" | "unless" | "each" | "with" => sig(1, Some(1), Block),
        "raw" => sig(0, Some(0), Block),
        "lookup" => sig(2, Some(2), Inline),
        "log" => sig(0, None, Inline),
        "eq" | "ne" | "gt" | "gte" | "lt" | "lte" => sig(2, Some(2), Inline),
        "and" | "or" => sig(2, None, Inline),
        "not" | "len" => sig(1, Some(1), Inline),
        "upper" | "lower" | "urlencode" | "json" => sig(1, Some(1), Inline),
        "pluralize" => sig(3, Some(3), Inline),
        "default" => sig(2, Some(2), Inline),
        "date" => sig(1, Some(3), Inline),
        "number" => sig(1, Some(2), Inline),
        "money" => sig(2, Some(2), Inline),
        _ => return None,
    })
}

/// Names a template may call, for messages.
const HELPER_NAMES: &str = "if, unless, each, with, lookup, eq, ne, gt, gte, lt, lte, and, or, not, len, \
upper, lower, urlencode, json, pluralize, default, date, number, money";

/// Check one parsed template. `partials` holds the names of the directory's
/// partials (a missing one is a problem here).
pub fn check(t: &Template, partials: &BTreeSet<String>) -> Facts {
    let mut w = Walker {
        partials,
        inline: BTreeSet::new(),
        inline_needs_block: BTreeSet::new(),
        in_inline: None,
        facts: Facts::default(),
    };
    // Inline partials (`{{#*inline "x"}}`) are declared before use; collect
    // them first so that `{{> x}}` resolves to them.
    w.collect_inline(t);
    w.walk(t, 0, true);
    w.facts
}

struct Walker<'a> {
    partials: &'a BTreeSet<String>,
    inline: BTreeSet<String>,
    /// Inline partials that write a bare `{{> @partial-block}}`.
    inline_needs_block: BTreeSet<String>,
    /// The inline partial being defined, while walking its definition.
    in_inline: Option<String>,
    facts: Facts,
}

fn position(mapping: &[TemplateMapping], i: usize) -> (Option<usize>, Option<usize>) {
    mapping
        .get(i)
        .map(|m| (Some(m.0), Some(m.1)))
        .unwrap_or((None, None))
}

/// The name a helper is called by, if it is a plain name (`{{upper x}}`).
fn helper_name(p: &Parameter) -> Option<&str> {
    match p {
        Parameter::Name(n) => Some(n),
        Parameter::Path(handlebars::Path::Relative((segs, raw))) if segs.len() == 1 => Some(raw),
        _ => None,
    }
}

/// A path from the root context, as segments (`event.owners`), if `p` is one.
fn root_path(p: &Parameter) -> Option<Vec<String>> {
    let raw = match p {
        Parameter::Path(handlebars::Path::Relative((_, raw))) => raw.as_str(),
        Parameter::Name(n) => n.as_str(),
        _ => return None,
    };
    let segs: Vec<String> = raw.split('.').map(str::to_string).collect();
    let rooted = matches!(
        segs.first().map(String::as_str),
        Some("event" | "meta" | "item")
    ) && segs
        .iter()
        .all(|s| !s.is_empty() && !s.contains(['/', '[', '@']));
    rooted.then_some(segs)
}

/// `events.length`, `events.count`: a field of the digest's list, which is
/// an array (only indexes such as `events.[0]` exist).
fn field_of_events(p: &Parameter) -> Option<String> {
    let Parameter::Path(handlebars::Path::Relative((_, raw))) = p else {
        return None;
    };
    let mut segs = raw.split('.');
    if segs.next() != Some("events") {
        return None;
    }
    let second = segs.next()?;
    let index = second.trim_start_matches('[').trim_end_matches(']');
    (!index.is_empty() && !index.bytes().all(|b| b.is_ascii_digit())).then(|| raw.clone())
}

impl Walker<'_> {
    fn problem(&mut self, at: (Option<usize>, Option<usize>), message: String) {
        self.facts.problems.push(TemplateProblem {
            line: at.0,
            col: at.1,
            message,
        });
    }

    fn collect_inline(&mut self, t: &Template) {
        for e in &t.elements {
            match e {
                TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                    if let Some(Parameter::Literal(serde_json::Value::String(n))) = d.params.first()
                    {
                        self.inline.insert(n.clone());
                    }
                    if let Some(inner) = &d.template {
                        self.collect_inline(inner);
                    }
                }
                TemplateElement::HelperBlock(h) => {
                    for inner in [&h.template, &h.inverse].into_iter().flatten() {
                        self.collect_inline(inner);
                    }
                }
                TemplateElement::PartialBlock(d) => {
                    if let Some(inner) = &d.template {
                        self.collect_inline(inner);
                    }
                }
                _ => {}
            }
        }
    }

    /// `at_root`: the context is still the root (not inside `#each`/`#with`),
    /// so `event.x` means the payload's `x`.
    fn walk(&mut self, t: &Template, depth: usize, at_root: bool) {
        self.facts.nesting = self.facts.nesting.max(depth);
        if depth > MAX_NESTING {
            self.problem(
                (None, None),
                format!("blocks nest deeper than {MAX_NESTING} levels"),
            );
            return;
        }
        for (i, e) in t.elements.iter().enumerate() {
            let at = position(&t.mapping, i);
            match e {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.call(h, at, false, 0);
                }
                TemplateElement::HelperBlock(h) => {
                    self.call(h, at, true, 0);
                    let name = helper_name(&h.name).unwrap_or("");
                    let enters = matches!(name, "each" | "with");
                    if enters
                        && at_root
                        && let Some(path) = h.params.first().and_then(root_path)
                    {
                        self.facts.block_paths.push(path);
                    }
                    if let Some(inner) = &h.template {
                        self.walk(inner, depth + 1, at_root && !enters);
                    }
                    if let Some(inner) = &h.inverse {
                        self.walk(inner, depth + 1, at_root);
                    }
                }
                TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                    let block = matches!(e, TemplateElement::PartialBlock(_));
                    self.partial(&d.name, at, block, d.template.is_some());
                    for p in d.params.iter().chain(d.hash.values()) {
                        self.param(p, at, 0);
                    }
                    if let Some(inner) = &d.template {
                        self.walk(inner, depth + 1, at_root);
                    }
                }
                TemplateElement::DecoratorExpression(d) | TemplateElement::DecoratorBlock(d) => {
                    let name = helper_name(&d.name).unwrap_or("");
                    if name != "inline" {
                        self.problem(
                            at,
                            format!("unknown decorator {name:?} (only *inline is supported)"),
                        );
                    }
                    if let Some(inner) = &d.template {
                        let defines = match d.params.first() {
                            Some(Parameter::Literal(serde_json::Value::String(n))) => {
                                Some(n.clone())
                            }
                            _ => None,
                        };
                        let outer = std::mem::replace(&mut self.in_inline, defines);
                        self.walk(inner, depth + 1, at_root);
                        self.in_inline = outer;
                    }
                }
                _ => self.problem(at, "unsupported template element".into()),
            }
        }
    }

    fn partial(
        &mut self,
        name: &Parameter,
        at: (Option<usize>, Option<usize>),
        block: bool,
        fallback: bool,
    ) {
        let Some(n) = helper_name(name) else {
            self.problem(
                at,
                "a partial's name must be written out ({{> name}}): a computed partial cannot be checked"
                    .into(),
            );
            return;
        };
        if n == "@partial-block" {
            if !fallback {
                match &self.in_inline {
                    Some(inline) => {
                        self.inline_needs_block.insert(inline.clone());
                    }
                    None => {
                        self.facts.bare_partial_block.get_or_insert(at);
                    }
                }
            }
            return;
        }
        if self.inline.contains(n) {
            if !block && self.inline_needs_block.contains(n) {
                self.problem(at, format!("{n}: {PARTIAL_BLOCK_USE}"));
            }
            return;
        }
        if !block {
            self.facts.included_bare.entry(n.to_string()).or_insert(at);
        }
        if !self.partials.contains(n) {
            let known: Vec<&str> = self.partials.iter().map(String::as_str).collect();
            self.problem(
                at,
                format!(
                    "unknown partial {n:?} (partials: {})",
                    if known.is_empty() {
                        "none in templates/partials/".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            return;
        }
        self.facts.partials.insert(n.to_string());
    }

    /// A mustache `{{name params}}` or block `{{#name params}}`.
    fn call(
        &mut self,
        h: &HelperTemplate,
        at: (Option<usize>, Option<usize>),
        block: bool,
        sub: usize,
    ) {
        for p in h.params.iter().chain(h.hash.values()) {
            self.param(p, at, sub);
        }
        for p in std::iter::once(&h.name)
            .chain(&h.params)
            .chain(h.hash.values())
        {
            if let Some(raw) = field_of_events(p) {
                self.problem(
                    at,
                    format!(
                        "{raw}: `events` is a digest's list of events; it has no fields \
                         (use {{{{len events}}}}, {{{{#each events}}}}…{{{{/each}}}} or events.[0].x)"
                    ),
                );
            }
        }
        let Some(name) = helper_name(&h.name) else {
            if block {
                self.problem(
                    at,
                    "a block must name a helper ({{#each …}}, {{#if …}})".into(),
                );
            }
            return;
        };
        let has_args = !h.params.is_empty() || !h.hash.is_empty();
        if !block && !has_args && signature(name).is_none() {
            // `{{event.name}}`: a variable, checked by strict mode at render time.
            return;
        }
        let Some(s) = signature(name) else {
            self.problem(
                at,
                format!("unknown helper {name:?} (helpers: {HELPER_NAMES})"),
            );
            return;
        };
        match (s.block, block) {
            (BlockUse::Block, false) if has_args || s.min == 0 => self.problem(
                at,
                format!("{name} is a block helper: write {{{{#{name} …}}}}…{{{{/{name}}}}}"),
            ),
            (BlockUse::Block, false) => {
                // `{{each}}` without arguments reads as a variable named
                // `each`; strict mode reports it at render time if missing.
                return;
            }
            (BlockUse::Inline, true) => self.problem(
                at,
                format!("{name} is not a block helper: write {{{{{name} …}}}}"),
            ),
            _ => {}
        }
        let n = h.params.len();
        if n < s.min || s.max.is_some_and(|m| n > m) {
            let want = match s.max {
                Some(m) if m == s.min => format!("{m}"),
                Some(m) => format!("{} to {m}", s.min),
                None => format!("at least {}", s.min),
            };
            self.problem(at, format!("{name} takes {want} argument(s), got {n}"));
            return;
        }
        self.literal_arguments(name, &h.params, at);
        self.formatting_arguments(name, h, at);
    }

    fn param(&mut self, p: &Parameter, at: (Option<usize>, Option<usize>), sub: usize) {
        if let Parameter::Subexpression(s) = p {
            if sub >= MAX_SUBEXPRESSION_DEPTH {
                self.problem(
                    at,
                    format!("subexpressions nest deeper than {MAX_SUBEXPRESSION_DEPTH} levels"),
                );
                return;
            }
            match s.as_element() {
                TemplateElement::Expression(h) => self.call(h, at, false, sub + 1),
                _ => self.problem(at, "unsupported subexpression".into()),
            }
        }
    }
}
