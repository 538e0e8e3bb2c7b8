//! Saying why the Handlebars parser refused a template, in the author's
//! words. The parser reports where it stopped and the grammar rules it
//! expected there (`expected escape, expression, html_expression, ...`);
//! for the two commonest mistakes that place is the end of the template,
//! far from the cause. A lexical scan finds the cause: a `{{` never closed,
//! or a block (`{{#if}}`) never closed or closed by another name. It runs
//! only after the parser failed, so it never refuses a template itself.
use super::TemplateProblem;

/// The cause of a parse failure, at the tag that caused it, when the scan
/// finds one.
pub fn explain(text: &str) -> Option<TemplateProblem> {
    let chars: Vec<char> = text.chars().collect();
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut i = 0;
    while i < chars.len() {
        let at = |message: String| TemplateProblem {
            line: Some(line),
            col: Some(col),
            message,
        };
        let starts = |s: &str| {
            s.chars()
                .enumerate()
                .all(|(k, c)| chars.get(i + k) == Some(&c))
        };
        if starts("\\{{") {
            advance(&chars, &mut i, 3, &mut line, &mut col);
            continue;
        }
        if !starts("{{") {
            advance(&chars, &mut i, 1, &mut line, &mut col);
            continue;
        }
        if starts("{{{{") {
            return None; // raw blocks: left to the parser's message
        }
        let (close, what) = if starts("{{!--") {
            ("--}}", "comment")
        } else if starts("{{{") {
            ("}}}", "tag")
        } else {
            ("}}", "tag")
        };
        let Some(end) = find(&chars, i + 2, close) else {
            let closer = if what == "comment" { "--}}" } else { close };
            return Some(at(format!("this `{{{{` is never closed with `{closer}`")));
        };
        if what == "tag"
            && let Some(next) = find(&chars, i + 2, "{{")
            && next < end
        {
            return Some(at(format!(
                "this `{{{{` is not closed with `{close}` before the next `{{{{`"
            )));
        }
        let tag: String = chars[i + 2..end].iter().collect();
        if let Some(problem) = block_tag(&tag, &mut open, line, col) {
            return Some(at(problem));
        }
        let width = end + close.chars().count() - i;
        advance(&chars, &mut i, width, &mut line, &mut col);
    }
    open.pop().map(|(name, line, col)| TemplateProblem {
        line: Some(line),
        col: Some(col),
        message: format!("`{{{{#{name}}}}}` is never closed (no `{{{{/{name}}}}}` after it)"),
    })
}

/// Track a block's opening and closing tag; a closing tag that does not
/// match is the problem.
fn block_tag(
    tag: &str,
    open: &mut Vec<(String, usize, usize)>,
    line: usize,
    col: usize,
) -> Option<String> {
    let tag = tag.trim_start_matches('~').trim_start();
    if tag.starts_with('!') {
        return None;
    }
    if let Some(rest) = tag.strip_prefix('#').or_else(|| tag.strip_prefix('^')) {
        let rest = rest.trim_start_matches(['>', '*']).trim_start();
        let name = name_of(rest);
        // `{{^}}` is `else`, not a block.
        if !name.is_empty() {
            open.push((name, line, col));
        }
        return None;
    }
    let rest = tag.strip_prefix('/')?;
    let name = name_of(rest.trim_start());
    match open.pop() {
        Some((opened, ..)) if opened == name => None,
        Some((opened, l, c)) => Some(format!(
            "`{{{{/{name}}}}}` closes `{{{{#{opened}}}}}` opened at template line {l}, column {c}: close it with `{{{{/{opened}}}}}` first"
        )),
        None => Some(format!("`{{{{/{name}}}}}` closes no open block")),
    }
}

fn name_of(s: &str) -> String {
    s.chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '}' | '~' | '('))
        .collect()
}

/// The index of the first `pat` at or after `from`.
fn find(chars: &[char], from: usize, pat: &str) -> Option<usize> {
    let pat: Vec<char> = pat.chars().collect();
    (from..chars.len()).find(|&k| chars.get(k..k + pat.len()) == Some(&pat[..]))
}

fn advance(chars: &[char], i: &mut usize, n: usize, line: &mut usize, col: &mut usize) {
    for _ in 0..n {
        match chars.get(*i) {
            Some('\n') => {
                *line += 1;
                *col = 1;
            }
            Some(_) => *col += 1,
            None => return,
        }
        *i += 1;
    }
}

/// The parser's reason without its list of grammar rules, which names no
/// concept an author knows.
pub fn plain_reason(reason: &str) -> String {
    match reason.split_once("expected ") {
        Some((before, rules)) if rules.matches(", ").count() >= 2 || rules.contains('_') => {
            let before = before.trim_end().trim_end_matches(':');
            format!("{before}: the parser stopped here")
        }
        _ => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> (usize, usize, String) {
        let p = explain(text).expect("explained");
        (p.line.unwrap(), p.col.unwrap(), p.message)
    }

    #[test]
    fn an_unclosed_block_is_named_where_it_opens() {
        let (l, c, m) = at("Hello\n  {{#if event.vip}}\nVIP\n");
        assert_eq!((l, c), (2, 3));
        assert_eq!(m, "`{{#if}}` is never closed (no `{{/if}}` after it)");
    }

    #[test]
    fn a_block_closed_by_another_name_names_both() {
        let (l, c, m) = at("{{#each xs}}\n  {{this}}\n{{/if}}");
        assert_eq!((l, c), (3, 1));
        assert!(
            m.contains("`{{/if}}` closes `{{#each}}` opened at template line 1, column 1"),
            "{m}"
        );
    }

    #[test]
    fn an_unclosed_tag_is_named() {
        let (l, c, m) = at("Hi {{event.name}");
        assert_eq!((l, c), (1, 4));
        assert_eq!(m, "this `{{` is never closed with `}}`");
        let (_, c, m) = at("{{a {{b}}");
        assert_eq!(c, 1);
        assert!(m.contains("before the next"), "{m}");
        assert!(at("x {{!-- note").2.contains("`--}}`"));
    }

    #[test]
    fn what_is_well_formed_is_not_explained() {
        for ok in [
            "{{#if a}}x{{else}}y{{/if}}",
            "{{#each xs}}{{^}}none{{/each}}",
            "\\{{literal}} {{!-- a }} b --}} {{{raw}}}",
            "{{#> layout}}body{{/layout}}",
            "{{~#with a~}}{{b}}{{~/with~}}",
        ] {
            assert!(explain(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn the_parsers_rule_names_are_left_out() {
        assert_eq!(
            plain_reason(
                "invalid handlebars syntax: expected escape, expression, html_expression, or hbs_comment"
            ),
            "invalid handlebars syntax: the parser stopped here"
        );
        assert_eq!(
            plain_reason("helper \"each\" was opened, but \"if\" is closing"),
            "helper \"each\" was opened, but \"if\" is closing"
        );
    }
}
