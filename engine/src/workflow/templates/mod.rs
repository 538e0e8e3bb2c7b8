//! What a template can be checked for without a payload: every helper it
//! calls exists and gets the right number of arguments, literal arguments
//! parse (date patterns, time zones, currency codes, decimals, locales),
//! every partial it includes exists, the
//! partials include each other without a cycle, and nothing nests deeper
//! than rendering can afford. A template that passes cannot fail at render
//! time for any of these reasons, and no template can exhaust the stack
//! (which would abort the process, not fail one message).
use std::collections::{BTreeMap, BTreeSet};

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

/// What a partial block (`{{> @partial-block}}`) needs, for messages.
pub const PARTIAL_BLOCK_USE: &str = "{{> @partial-block}} renders only inside a partial included as a block \
({{#> name}}…{{/name}}); give it a fallback ({{#> @partial-block}}…{{/@partial-block}}) or include the partial so";

mod graph;
pub mod syntax;
#[cfg(test)]
mod tests;
mod walker;

pub use graph::{GraphReport, PartialGraph, check_partial_graph};
pub use walker::check;
