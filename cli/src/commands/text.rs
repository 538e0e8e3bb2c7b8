//! The human form of a read command's JSON (`trace`, `dlq show`): one
//! `key: value` per line, nested values indented, empty ones left out.
//! `--json` prints the JSON itself, for scripts.
use serde_json::Value;

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
