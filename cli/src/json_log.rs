//! The JSON log format: tracing-subscriber's, with Herald's list fields
//! (`herald::logfields`) as real JSON arrays instead of array text inside a
//! string.
use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event with the stock JSON format, then replaces the string
/// value of each list field with the array it holds.
pub struct ListsAsArrays(Format<Json>);

impl Default for ListsAsArrays {
    fn default() -> Self {
        ListsAsArrays(tracing_subscriber::fmt::format().json())
    }
}

impl<S, N> FormatEvent<S, N> for ListsAsArrays
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        if !event
            .metadata()
            .fields()
            .iter()
            .any(|f| herald::logfields::LIST_FIELDS.contains(&f.name()))
        {
            return writer.write_str(&line);
        }
        match lists_as_arrays(&line) {
            Some(fixed) => writeln!(writer, "{fixed}"),
            None => writer.write_str(&line),
        }
    }
}

/// The line with each list field's array text parsed; `None` when there
/// is nothing to change (or the line is not the JSON expected).
fn lists_as_arrays(line: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get_mut("fields")?.as_object_mut()?;
    let mut changed = false;
    for name in herald::logfields::LIST_FIELDS {
        let Some(value) = fields.get_mut(*name) else {
            continue;
        };
        if let Some(text) = value.as_str()
            && let Ok(array @ serde_json::Value::Array(_)) = serde_json::from_str(text)
        {
            *value = array;
            changed = true;
        }
    }
    changed.then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_fields_become_arrays_and_nothing_else_changes() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"m","workflows":"[\"a\",\"b\"]","n":3}}"#;
        let fixed: serde_json::Value =
            serde_json::from_str(&super::lists_as_arrays(line).unwrap()).unwrap();
        assert_eq!(fixed["fields"]["workflows"], serde_json::json!(["a", "b"]));
        assert_eq!(fixed["fields"]["n"], 3);
        assert_eq!(fixed["fields"]["message"], "m");
        // A list field whose text is not an array stays as it was.
        assert!(super::lists_as_arrays(r#"{"fields":{"workflows":"a,b"}}"#).is_none());
    }
}
