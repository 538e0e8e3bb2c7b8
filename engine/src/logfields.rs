//! How a log line carries a list: as JSON array text in a field named in
//! [`LIST_FIELDS`]. `tracing` has no list values; text logs show the array
//! as written (`workflows=["a","b"]`), and the JSON log format turns these
//! fields into real arrays, so a log pipeline reads them without splitting
//! strings.
//!
//! ```no_run
//! let workflows = vec!["welcome".to_string(), "digest".to_string()];
//! tracing::info!(workflows = %herald::logfields::list(&workflows), "worker started");
//! ```

/// The fields whose values are [`list`]s.
///
/// ```
/// assert!(herald::logfields::LIST_FIELDS.contains(&"workflows"));
/// ```
pub const LIST_FIELDS: &[&str] = &["workflows", "subjects", "added", "removed"];

/// A list field's value: the items as a JSON array.
///
/// ```
/// let names = vec!["welcome".to_string(), "archive".to_string()];
/// assert_eq!(herald::logfields::list(&names), r#"["welcome","archive"]"#);
/// tracing::info!(workflows = %herald::logfields::list(&names), "worker started");
/// ```
pub fn list<T: AsRef<str>>(items: &[T]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::Value::from(items).to_string()
}
