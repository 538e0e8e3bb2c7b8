//! The human form of a read command's JSON (`trace`, `dlq show`): one
//! `key: value` per line, nested values indented, empty ones left out.
//! `--json` prints the JSON itself, for scripts. And the lists' tables
//! (`dlq list`, `suppressions list`, ...), their columns as wide as their
//! widest value.
use serde_json::Value;

/// Rows under a header, each column padded to its widest cell (counted in
/// characters); the last column is not padded. A cell's line breaks and
/// tabs become spaces, so one row stays one line.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let clean = |c: &str| c.replace(['\n', '\r', '\t'], " ");
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                out.push_str(c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `value` as indented `key: value` lines.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    block(&mut out, value, 0);
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter().filter(|(_, v)| !is_empty(v)) {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        block(out, v, indent + 1);
                    }
                    // A multi-line string (a reason with detail lines) keeps its lines.
                    Value::String(s) if s.contains('\n') => {
                        out.push_str(&format!("{pad}{k}: |\n"));
                        for line in s.lines() {
                            out.push_str(&format!("{pad}  {line}\n"));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        block(out, item, indent + 1);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            [
                "a-very-long-address@example.com".to_string(),
                "1".into(),
                "550 no\nsuch user".into(),
            ],
            ["b@x".to_string(), "22".into(), "ok".into()],
        ];
        assert_eq!(
            super::table(["address", "n", "reason"], &rows),
            "address                          n   reason\n\
             a-very-long-address@example.com  1   550 no such user\n\
             b@x                              22  ok\n"
        );
    }

    #[test]
    fn nested_values_are_indented_and_empty_ones_left_out() {
        let v = serde_json::json!({
            "id": 3, "reason": "550 no\nsuch user", "retried_at": null,
            "to": ["a@x"], "payload": {"n": 1, "tags": []},
        });
        assert_eq!(
            super::render(&v),
            "id: 3\npayload:\n  n: 1\nreason: |\n  550 no\n  such user\nto:\n  - a@x\n"
        );
    }
}
