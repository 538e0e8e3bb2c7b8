//! Where a character of an inline template is in its YAML file.
//!
//! The Handlebars parser reports a position inside the template's text;
//! the author edits the YAML file. The value is read again from the file
//! in its own style (plain, quoted, literal `|` or folded `>` block), each
//! character with the line and column it came from. Only when that reading
//! gives back exactly the template's text is a position mapped: anything
//! this reading does not follow (tags, anchors, multi-line plain scalars)
//! keeps the template's own position, never a wrong one.
use serde_saphyr::Location;

/// A character of the value and its 1-based (line, column) in the file.
type Traced = Vec<(char, (u64, u64))>;

/// The file position of `(line, col)` (1-based, as the template parser
/// counts, in characters) of the template `text`, the value at `loc` in
/// `yaml`; `None` when the value cannot be traced back.
pub fn in_file(
    yaml: &str,
    loc: &Location,
    text: &str,
    line: usize,
    col: usize,
) -> Option<(u64, u64)> {
    // Lines as YAML counts them: CR LF, a lone CR and LF each end one.
    let normalized = yaml.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let (l, c) = (
        usize::try_from(loc.line()).ok()?,
        usize::try_from(loc.column()).ok()?,
    );
    let at: Vec<char> = lines.get(l.checked_sub(1)?)?.chars().collect();
    let start = c.checked_sub(1)?;
    let traced = match at.get(start) {
        Some('"') => double_quoted(&lines, l, start + 1)?,
        Some('\'') => single_quoted(&lines, l, start + 1)?,
        _ => match block_indicator(&lines, l) {
            Some(folded) => block(&lines, l, start, folded),
            None => plain(&at, l, start),
        },
    };
    let value: String = traced.iter().map(|(ch, _)| ch).collect();
    if value.trim_end_matches('\n') != text.trim_end_matches('\n') {
        return None;
    }
    let index = index_of(text, line, col)?;
    match traced.get(index) {
        Some((_, pos)) => Some(*pos),
        // Just past the end (an unclosed tag): after the last character.
        None => traced.last().map(|(_, (l, c))| (*l, c + 1)),
    }
}

/// The index (in characters) of 1-based `(line, col)` in `text`.
fn index_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let mut l = 1;
    let mut index = 0;
    for ch in text.chars() {
        if l == line {
            break;
        }
        if ch == '\n' {
            l += 1;
        }
        index += 1;
    }
    (l == line).then(|| index + col.saturating_sub(1))
}

/// Whether the value at line `l` is a block scalar's content: the nearest
/// line above that is not blank ends with `|` or `>` (and its indentation
/// and chomping indicators, and a comment). `Some(true)` when folded.
fn block_indicator(lines: &[&str], l: usize) -> Option<bool> {
    let above = lines[..l.checked_sub(1)?]
        .iter()
        .rev()
        .find(|s| !s.trim().is_empty())?;
    let code = match above.find(" #") {
        Some(i) => &above[..i],
        None => above,
    };
    let code = code
        .trim_end()
        .trim_end_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
    let preceded =
        |s: &str| s.ends_with(' ') || s.ends_with(':') || s.ends_with('-') || s.is_empty();
    if let Some(before) = code.strip_suffix('|') {
        return preceded(before).then_some(false);
    }
    if let Some(before) = code.strip_suffix('>') {
        return preceded(before).then_some(true);
    }
    None
}

/// A block scalar whose first non-blank content line is `l` (where the YAML
/// parser locates it), indented by `indent` columns. Blank lines between
/// the indicator and `l` are part of the value (leading newlines), so the
/// reading starts right below the indicator.
fn block(lines: &[&str], l: usize, indent: usize, folded: bool) -> Traced {
    let mut first = l;
    while first > 1
        && lines[first - 2].trim().is_empty()
        && block_indicator(lines, first - 1).is_some()
    {
        first -= 1;
    }
    let mut content: Vec<(usize, Vec<char>)> = Vec::new();
    for (i, raw) in lines.iter().enumerate().skip(first - 1) {
        let chars: Vec<char> = raw.chars().collect();
        let blank = chars.iter().all(|c| *c == ' ');
        let indented = chars.len() >= indent && chars[..indent].iter().all(|c| *c == ' ');
        if !blank && !indented {
            break;
        }
        let body = if blank {
            Vec::new()
        } else {
            chars[indent..].to_vec()
        };
        content.push((i + 1, body));
    }
    let mut out = Traced::new();
    let mut empties = 0usize;
    let mut previous: Option<bool> = None; // Some(more_indented) of the last non-empty line
    for (n, body) in content {
        if body.is_empty() {
            empties += 1;
            continue;
        }
        let more_indented = body.first().is_some_and(|c| *c == ' ' || *c == '\t');
        let line_no = n as u64;
        let breaks = match previous {
            None => empties,
            Some(prev_more) if folded && !prev_more && !more_indented => {
                if empties == 0 {
                    out.push((' ', (line_no, 1)));
                }
                empties
            }
            Some(_) => empties + 1,
        };
        out.extend(std::iter::repeat_n(('\n', (line_no, 1)), breaks));
        for (i, ch) in body.into_iter().enumerate() {
            out.push((ch, (line_no, (indent + i + 1) as u64)));
        }
        empties = 0;
        previous = Some(more_indented);
    }
    out
}

/// A plain scalar on one line: to the end of the line or a comment.
fn plain(at: &[char], l: usize, start: usize) -> Traced {
    let mut out = Traced::new();
    for (i, ch) in at.iter().enumerate().skip(start) {
        if *ch == '#' && i > 0 && at[i - 1] == ' ' {
            break;
        }
        out.push((*ch, (l as u64, (i + 1) as u64)));
    }
    while out.last().is_some_and(|(c, _)| *c == ' ' || *c == '\t') {
        out.pop();
    }
    out
}

/// A single-quoted scalar from column index `start` of line `l`: `''` is a
/// quote; line breaks fold as in every flow scalar.
fn single_quoted(lines: &[&str], l: usize, start: usize) -> Option<Traced> {
    flow(lines, l, start, |chars, i| {
        match (chars.get(i), chars.get(i + 1)) {
            (Some('\''), Some('\'')) => Step::Char('\'', 2),
            (Some('\''), _) => Step::End,
            (Some(c), _) => Step::Char(*c, 1),
            (None, _) => Step::Eol,
        }
    })
}

/// A double-quoted scalar: escapes are one character of the value; an
/// escaped line break joins lines without a space.
fn double_quoted(lines: &[&str], l: usize, start: usize) -> Option<Traced> {
    flow(lines, l, start, |chars, i| match chars.get(i) {
        Some('"') => Step::End,
        Some('\\') => match chars.get(i + 1) {
            None => Step::Join,
            Some(e) => {
                let width = match e {
                    'x' => 4,
                    'u' => 6,
                    'U' => 10,
                    _ => 2,
                };
                Step::Char(unescape(chars, i, *e, width), width)
            }
        },
        Some(c) => Step::Char(*c, 1),
        None => Step::Eol,
    })
}

fn unescape(chars: &[char], i: usize, e: char, width: usize) -> char {
    match e {
        'n' => '\n',
        't' | '\t' => '\t',
        'r' => '\r',
        '0' => '\0',
        '"' | '\\' | '/' | ' ' => e,
        'x' | 'u' | 'U' => {
            let hex: String = chars.iter().skip(i + 2).take(width - 2).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
        }
        _ => '\u{fffd}',
    }
}

enum Step {
    /// A character of the value, taking this many characters of the source.
    Char(char, usize),
    /// The closing quote.
    End,
    /// The end of the source line: the value folds onto the next.
    Eol,
    /// An escaped line break: the next line joins without a space.
    Join,
}

/// A quoted scalar over one or more lines, folded: trailing and leading
/// spaces around a break dropped, one break a space, each empty line a
/// newline.
fn flow(
    lines: &[&str],
    l: usize,
    start: usize,
    step: impl Fn(&[char], usize) -> Step,
) -> Option<Traced> {
    let mut out = Traced::new();
    let mut line = l;
    let mut i = start;
    let mut joined = false;
    loop {
        let chars: Vec<char> = lines.get(line - 1)?.chars().collect();
        if line != l {
            while chars.get(i).is_some_and(|c| *c == ' ' || *c == '\t') {
                i += 1;
            }
            if i >= chars.len() {
                // An empty line inside the value: a newline of its own.
                out.push(('\n', (line as u64, 1)));
                line += 1;
                i = 0;
                continue;
            }
            if !joined && out.last().is_none_or(|(c, _)| *c != '\n') {
                out.push((' ', (line as u64, (i + 1) as u64)));
            }
        }
        loop {
            match step(&chars, i) {
                Step::Char(c, width) => {
                    out.push((c, (line as u64, (i + 1) as u64)));
                    i += width;
                }
                Step::End => return Some(out),
                Step::Eol | Step::Join => {
                    joined = matches!(step(&chars, i), Step::Join);
                    if !joined {
                        while out.last().is_some_and(|(c, _)| *c == ' ' || *c == '\t') {
                            out.pop();
                        }
                    }
                    break;
                }
            }
        }
        line += 1;
        i = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of `(line, col)` of the value of `key` in `yaml`, as
    /// the loader would locate it.
    fn map(yaml: &str, key: &str, line: usize, col: usize) -> Option<(u64, u64)> {
        #[derive(serde::Deserialize)]
        struct Doc {
            v: serde_saphyr::Spanned<String>,
        }
        let doc: Doc = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(key, "v");
        in_file(yaml, &doc.v.referenced, &doc.v.value, line, col)
    }

    #[test]
    fn plain_and_quoted_values_map_columns() {
        assert_eq!(map("v: Hi {{x}}\n", "v", 1, 4), Some((1, 7)));
        assert_eq!(map("v: 'It''s {{x}}'\n", "v", 1, 6), Some((1, 11)));
        assert_eq!(map("v: \"a\\\"b {{x}}\"\n", "v", 1, 5), Some((1, 10)));
        assert_eq!(map("v: \"a\\u00e9 {{x}}\"\n", "v", 1, 4), Some((1, 13)));
    }

    #[test]
    fn literal_blocks_map_lines_and_columns() {
        let yaml = "v: |-\n\n    Hello {{a}},\n      {{b c}}\n";
        assert_eq!(map(yaml, "v", 3, 3), Some((4, 7)));
        assert_eq!(map(yaml, "v", 2, 7), Some((3, 11)));
    }

    #[test]
    fn folded_blocks_map_through_the_folding() {
        let yaml = "v: >\n  <p>folded\n  {{x y}}</p>\n";
        assert_eq!(map(yaml, "v", 1, 11), Some((3, 3)));
    }

    #[test]
    fn multi_line_quoted_values_fold() {
        let yaml = "v: \"one\n  two {{x}}\"\n";
        assert_eq!(map(yaml, "v", 1, 9), Some((2, 7)));
    }

    #[test]
    fn a_position_past_the_end_is_after_the_last_character() {
        assert_eq!(map("v: Hi {{x\n", "v", 1, 7), Some((1, 10)));
    }

    #[test]
    fn what_cannot_be_traced_is_not_mapped() {
        // A multi-line plain scalar: read as one line, it does not match.
        assert_eq!(map("v: one\n  two {{x}}\n", "v", 1, 9), None);
    }
}
