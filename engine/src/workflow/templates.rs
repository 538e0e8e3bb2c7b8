//! What a template can be checked for without a payload: every helper it
//! calls exists and gets the right number of arguments, literal arguments
//! parse (date patterns, time zones, currency codes, decimals, locales),
//! every partial it includes exists, the
//! partials include each other without a cycle, and nothing nests deeper
//! than rendering can afford. A template that passes cannot fail at render
//! time for any of these reasons, and no template can exhaust the stack
//! (which would abort the process, not fail one message).
use std::collections::{BTreeMap, BTreeSet};

use handlebars::Template;
use handlebars::template::{HelperTemplate, Parameter, TemplateElement, TemplateMapping};

/// Blocks (`{{#each}}`, `{{#if}}`, partial blocks) nested in one template.
pub const MAX_NESTING: usize = 24;
/// Partials including partials, from a workflow's template down.
pub const MAX_PARTIAL_DEPTH: usize = 8;
/// Blocks nested across a whole chain of partials: what the renderer's
/// recursion actually costs (measured safe on a 2 MiB thread stack).
pub const MAX_TOTAL_NESTING: usize = 64;
/// `(sub (expressions))` nested inside one tag.
pub const MAX_SUBEXPRESSION_DEPTH: usize = 8;
/// Template source size, bytes (a template is a document, not data).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

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

/// One problem inside a template, at its line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

/// What checking one template found.
#[derive(Debug, Default)]
pub struct Facts {
    /// Partials it includes (`{{> name}}`, `{{#> name}}`), not counting its
    /// own inline partials.
    pub partials: BTreeSet<String>,
    /// Paths from the root context that `#each` and `#with` iterate or enter
    /// (`event.owners`): strict mode does not cover block helpers, so the
    /// renderer checks these exist before rendering.
    pub block_paths: Vec<Vec<String>>,
    /// Deepest block nesting inside this template.
    pub nesting: usize,
    /// Where it writes `{{> @partial-block}}` (no fallback) outside its
    /// inline partials: that fails to render unless this template is a
    /// partial included as a block (`{{#> name}}…{{/name}}`).
    pub bare_partial_block: Option<(Option<usize>, Option<usize>)>,
    /// Partials it includes without a block (`{{> name}}`), each at its
    /// first position: a partial that writes a bare `{{> @partial-block}}`
    /// cannot be included so.
    pub included_bare: BTreeMap<String, (Option<usize>, Option<usize>)>,
    pub problems: Vec<TemplateProblem>,
}

/// Refuse what the Handlebars parser itself must not see: an oversize
/// source, or nesting deep enough to exhaust its recursion. A cheap lexical
/// scan, run before parsing.
pub fn prescan(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "template is {} bytes, over the limit of {MAX_TEMPLATE_BYTES}",
            text.len()
        ));
    }
    let mut blocks: usize = 0;
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let tag_start = &rest[start + 2..];
        let Some(end) = tag_start.find("}}") else {
            break;
        };
        let tag = tag_start[..end].trim_start_matches(['{', '~']).trim_start();
        if tag.starts_with('#') {
            blocks += 1;
            if blocks > MAX_NESTING {
                return Err(format!("blocks nest deeper than {MAX_NESTING} levels"));
            }
        } else if tag.starts_with('/') {
            blocks = blocks.saturating_sub(1);
        }
        let mut parens: usize = 0;
        for c in tag.chars() {
            match c {
                '(' => {
                    parens += 1;
                    if parens > MAX_SUBEXPRESSION_DEPTH {
                        return Err(format!(
                            "subexpressions nest deeper than {MAX_SUBEXPRESSION_DEPTH} levels"
                        ));
                    }
                }
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
        }
        rest = &tag_start[end + 2..];
    }
    Ok(())
}

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

/// What a partial block (`{{> @partial-block}}`) needs, for messages.
pub const PARTIAL_BLOCK_USE: &str = "{{> @partial-block}} renders only inside a partial included as a block \
({{#> name}}…{{/name}}); give it a fallback ({{#> @partial-block}}…{{/@partial-block}}) or include the partial so";

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

    /// `number` and `money`: the only hash argument is `locale=`, and the
    /// arguments written literally (decimals, currency code, locale, even a
    /// literal amount) are formatted now, so what would fail for every
    /// event fails validation instead.
    fn formatting_arguments(
        &mut self,
        name: &str,
        h: &HelperTemplate,
        at: (Option<usize>, Option<usize>),
    ) {
        use super::format;
        if name != "number" && name != "money" {
            return;
        }
        let literal = |p: Option<&Parameter>| match p {
            Some(Parameter::Literal(v)) => Some(v.clone()),
            _ => None,
        };
        let mut locale = None;
        for (key, p) in &h.hash {
            if key != "locale" {
                self.problem(
                    at,
                    format!("{name}: unknown argument {key}= (only locale=\"de-AT\")"),
                );
                continue;
            }
            match literal(Some(p)) {
                Some(serde_json::Value::String(tag)) => match format::check_locale(&tag) {
                    Ok(l) => locale = Some(l),
                    Err(e) => self.problem(at, format!("{name}: {e}")),
                },
                Some(v) => self.problem(at, format!("{name}: locale must be a string, got {v}")),
                None => {}
            }
        }
        let first = literal(h.params.first());
        let second = literal(h.params.get(1));
        let result = if name == "number" {
            let decimals = match &second {
                Some(v) => match format::check_decimals(v) {
                    Ok(d) => Some(d),
                    Err(e) => return self.problem(at, format!("number: {e}")),
                },
                None => None,
            };
            match first {
                Some(v) => format::number(&v, decimals, locale.as_ref()).map(drop),
                None => Ok(()),
            }
        } else {
            let currency = match &second {
                Some(serde_json::Value::String(code)) => match format::check_currency(code) {
                    Ok(_) => code.clone(),
                    Err(e) => return self.problem(at, format!("money: {e}")),
                },
                Some(v) => {
                    return self.problem(
                        at,
                        format!("money: the currency must be a string (an ISO 4217 code), got {v}"),
                    );
                }
                None => return,
            };
            match first {
                Some(v) => format::money(&v, &currency, locale.as_ref()).map(drop),
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            self.problem(at, e.to_string());
        }
    }

    /// Literal arguments a helper would refuse at render time, refused now.
    fn literal_arguments(
        &mut self,
        name: &str,
        params: &[Parameter],
        at: (Option<usize>, Option<usize>),
    ) {
        let literal = |i: usize| match params.get(i) {
            Some(Parameter::Literal(v)) => Some(v),
            _ => None,
        };
        if name != "date" {
            return;
        }
        if let Some(v) = literal(1) {
            match v.as_str() {
                Some(pattern) => {
                    if let Err(e) = super::helpers::check_date_pattern(pattern) {
                        self.problem(at, format!("date: {e}"));
                    }
                }
                None => self.problem(at, format!("date: the pattern must be a string, got {v}")),
            }
        }
        if let Some(v) = literal(2) {
            match v.as_str() {
                Some(tz) => {
                    if let Err(e) = super::helpers::check_time_zone(tz) {
                        self.problem(at, format!("date: {e}"));
                    }
                }
                None => self.problem(at, format!("date: the time zone must be a string, got {v}")),
            }
        }
    }
}

/// A partial as a node of the include graph: the partials it includes and
/// its own deepest nesting.
pub type PartialGraph = BTreeMap<String, (BTreeSet<String>, usize)>;

/// What the include graph allows.
#[derive(Debug, Default)]
pub struct GraphReport {
    /// Per partial, what is wrong there.
    pub problems: BTreeMap<String, Vec<String>>,
    /// Per partial: the longest chain of partials from it (itself included)
    /// and the heaviest nesting along such a chain.
    pub cost: BTreeMap<String, (usize, usize)>,
}

impl GraphReport {
    /// The chain length and nesting a template adds by including `partials`.
    pub fn reach(&self, partials: &BTreeSet<String>) -> (usize, usize) {
        partials
            .iter()
            .filter_map(|p| self.cost.get(p))
            .fold((0, 0), |(c, w), (c2, w2)| (c.max(*c2), w.max(*w2)))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Colour {
    White,
    Grey,
    Black,
}

/// Check the include graph of the partials: a cycle (`a` → `b` → `a`)
/// would recurse until the stack overflows; chains deeper than
/// [`MAX_PARTIAL_DEPTH`] or whose nesting adds up past [`MAX_TOTAL_NESTING`]
/// come close. Each cycle is reported once, at the partial that closes it.
pub fn check_partial_graph(graph: &PartialGraph) -> GraphReport {
    let mut report = GraphReport::default();
    let mut colour: BTreeMap<&str, Colour> =
        graph.keys().map(|k| (k.as_str(), Colour::White)).collect();
    for n in graph.keys() {
        if colour.get(n.as_str()) == Some(&Colour::White) {
            visit(n, graph, &mut colour, &mut Vec::new(), &mut report);
        }
    }
    for (n, (chain, weight)) in &report.cost {
        let msg = if *chain > MAX_PARTIAL_DEPTH {
            format!(
                "partials include each other {chain} deep from here, over the limit of {MAX_PARTIAL_DEPTH}"
            )
        } else if *weight > MAX_TOTAL_NESTING {
            format!(
                "blocks nest {weight} deep across the partials included from here, over the limit of {MAX_TOTAL_NESTING}"
            )
        } else {
            continue;
        };
        report.problems.entry(n.clone()).or_default().push(msg);
    }
    report
}

fn visit<'g>(
    n: &'g str,
    graph: &'g PartialGraph,
    colour: &mut BTreeMap<&'g str, Colour>,
    stack: &mut Vec<&'g str>,
    report: &mut GraphReport,
) {
    colour.insert(n, Colour::Grey);
    stack.push(n);
    let (mut chain, mut weight) = (0, 0);
    let (edges, nesting) = match graph.get(n) {
        Some((e, k)) => (Some(e), *k),
        None => (None, 0),
    };
    for m in edges.into_iter().flatten() {
        let m = m.as_str();
        match colour.get(m).copied().unwrap_or(Colour::Black) {
            Colour::Grey => {
                let from = stack.iter().position(|x| *x == m).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[from..].to_vec();
                cycle.push(m);
                report
                    .problems
                    .entry(n.to_string())
                    .or_default()
                    .push(format!(
                        "partials include each other in a cycle: {}",
                        cycle.join(" -> ")
                    ));
            }
            Colour::White => visit(m, graph, colour, stack, report),
            Colour::Black => {}
        }
        if let Some((c, w)) = report.cost.get(m) {
            chain = chain.max(*c);
            weight = weight.max(*w);
        }
    }
    stack.pop();
    colour.insert(n, Colour::Black);
    report
        .cost
        .insert(n.to_string(), (chain + 1, weight + nesting));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str, partials: &[&str]) -> Vec<String> {
        let t = Template::compile(src).unwrap();
        let p: BTreeSet<String> = partials.iter().map(|s| s.to_string()).collect();
        check(&t, &p)
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn unknown_helpers_and_arity() {
        assert!(
            problems("{{currency price \"EUR\"}}", &[])[0].contains("unknown helper \"currency\"")
        );
        assert!(problems("{{money price}}", &[])[0].contains("money takes 2 argument(s), got 1"));
        // A helper's name alone is a call, not a variable: `{{this.number}}` is the field.
        assert!(problems("{{number}}", &[])[0].contains("number takes 1 to 2 argument(s), got 0"));
        assert!(problems("{{#each event.lines}}{{this.number}}{{/each}}", &[]).is_empty());
        assert!(problems("{{number a 1 2}}", &[])[0].contains("number takes 1 to 2"));
        assert!(problems("{{upper a b}}", &[])[0].contains("upper takes 1 argument(s), got 2"));
        assert!(problems("{{#upper a}}x{{/upper}}", &[])[0].contains("not a block helper"));
        assert!(problems("{{if a}}", &[])[0].contains("block helper"));
        assert!(problems("{{#if (eq a)}}x{{/if}}", &[])[0].contains("eq takes 2"));
        assert!(problems("{{#if (nope a)}}x{{/if}}", &[])[0].contains("unknown helper \"nope\""));
        assert!(problems("{{event.name}} {{upper event.name}}", &[]).is_empty());
    }

    #[test]
    fn the_digest_list_has_no_fields() {
        assert!(
            problems("{{events.length}} updates", &[])[0].contains("`events` is a digest's list")
        );
        assert!(problems("{{#if events.count}}x{{/if}}", &[])[0].contains("no fields"));
        assert!(problems("{{len events}} {{events.[0].n}} {{events.0.n}}", &[]).is_empty());
    }

    #[test]
    fn literal_arguments() {
        assert!(problems("{{date event.at \"%Q\"}}", &[])[0].contains("date:"));
        assert!(
            problems("{{date event.at \"%Y\" \"Mars/Olympus\"}}", &[])[0].contains("time zone")
        );
        assert!(problems("{{date event.at \"%-d %B %Y\" \"Europe/Paris\"}}", &[]).is_empty());
        assert!(problems("{{date event.at event.pattern}}", &[]).is_empty());
    }

    #[test]
    fn formatting_arguments_written_literally_are_checked() {
        let one = |src: &str| problems(src, &[]).join("\n");
        assert!(one("{{money event.total \"EURO\"}}").contains("money: unknown currency \"EURO\""));
        assert!(one("{{money event.total \"XAU\"}}").contains("no minor unit"));
        assert!(one("{{money event.total 978}}").contains("must be a string"));
        assert!(one("{{money 12.5 \"EUR\"}}").contains("floating-point"));
        assert!(one("{{number event.n 99}}").contains("decimals must be an integer from 0 to 20"));
        assert!(one("{{number event.n \"2\"}}").contains("decimals must be"));
        assert!(one("{{number event.n locale=\"no such locale!\"}}").contains("invalid locale"));
        assert!(one("{{number event.n lang=\"de\"}}").contains("unknown argument lang="));
        assert!(one("{{#if (money event.a \"ZZZ\")}}x{{/if}}").contains("unknown currency"));
        for ok in [
            "{{money event.total \"EUR\"}}",
            "{{money event.total \"jpy\" locale=\"ja\"}}",
            "{{money event.total event.currency}}",
            "{{money 1250 \"EUR\"}}",
            "{{number event.n}} {{number event.n 2}} {{number event.n 0 locale=meta.locale}}",
        ] {
            assert_eq!(one(ok), "", "{ok}");
        }
    }

    #[test]
    fn partials_must_exist_and_be_named() {
        assert!(problems("{{> layout}}", &["layout"]).is_empty());
        assert!(problems("{{> nope}}", &["layout"])[0].contains("unknown partial \"nope\""));
        assert!(problems("{{> (lookup a \"b\")}}", &[])[0].contains("written out"));
        assert!(problems("{{#*inline \"x\"}}a{{/inline}}{{> x}}", &[]).is_empty());
    }

    /// `fuzz/regressions/workflow_load/bare-partial-block-*`: these passed
    /// validation and failed every render ("Partial block cound not be found").
    #[test]
    fn a_bare_partial_block_needs_a_block_inclusion() {
        let facts = |src: &str| {
            check(
                &Template::compile(src).unwrap(),
                &BTreeSet::from(["pb".to_string()]),
            )
        };
        assert!(facts("{{> @partial-block}}").bare_partial_block.is_some());
        assert!(
            facts("{{#> @partial-block}}fallback{{/@partial-block}}")
                .bare_partial_block
                .is_none()
        );
        assert!(facts("{{> pb}}").included_bare.contains_key("pb"));
        assert!(!facts("{{#> pb}}x{{/pb}}").included_bare.contains_key("pb"));
        assert!(
            problems(
                "{{#*inline \"x\"}}{{> @partial-block}}{{/inline}}{{> x}}",
                &[]
            )[0]
            .contains("@partial-block")
        );
        assert!(
            problems(
                "{{#*inline \"x\"}}{{> @partial-block}}{{/inline}}{{#> x}}y{{/x}}",
                &[]
            )
            .is_empty()
        );
    }

    #[test]
    fn block_paths_from_the_root_only() {
        let t = Template::compile(
            "{{#each event.owners}}{{#each this.tags}}{{/each}}{{/each}}{{#with meta}}{{/with}}",
        )
        .unwrap();
        let f = check(&t, &BTreeSet::new());
        assert_eq!(
            f.block_paths,
            vec![
                vec!["event".to_string(), "owners".to_string()],
                vec!["meta".to_string()]
            ]
        );
    }

    #[test]
    fn prescan_refuses_deep_nesting_before_parsing() {
        let deep = "{{#if a}}".repeat(MAX_NESTING + 1);
        assert!(prescan(&deep).is_err());
        let parens = format!("{{{{x {}a{}}}}}", "(".repeat(20), ")".repeat(20));
        assert!(prescan(&parens).is_err());
        assert!(prescan("{{#if a}}{{#each b}}x{{/each}}{{/if}}").is_ok());
    }

    #[test]
    fn partial_cycles_are_found() {
        let mut g = BTreeMap::new();
        g.insert("pa".to_string(), (BTreeSet::from(["pb".to_string()]), 0));
        g.insert("pb".to_string(), (BTreeSet::from(["pa".to_string()]), 0));
        let p = check_partial_graph(&g).problems;
        assert!(p.values().flatten().any(|m| m.contains("cycle")), "{p:?}");
        let mut g = BTreeMap::new();
        g.insert(
            "self".to_string(),
            (BTreeSet::from(["self".to_string()]), 0),
        );
        assert!(!check_partial_graph(&g).problems.is_empty());
    }

    #[test]
    fn partial_chains_are_bounded() {
        let mut g = BTreeMap::new();
        for i in 0..=MAX_PARTIAL_DEPTH {
            let next: BTreeSet<String> = if i < MAX_PARTIAL_DEPTH {
                BTreeSet::from([format!("p{}", i + 1)])
            } else {
                BTreeSet::new()
            };
            g.insert(format!("p{i}"), (next, 1));
        }
        let r = check_partial_graph(&g);
        assert!(
            r.problems.values().flatten().any(|m| m.contains("deep")),
            "{:?}",
            r.problems
        );
        assert_eq!(
            r.reach(&BTreeSet::from(["p1".to_string()])).0,
            MAX_PARTIAL_DEPTH
        );
    }
}
