//! The worker's check of an email's addresses, grouped: the deliveries in
//! flight ask together, in one statement per kind, through the same
//! gathering task as their ledger writes (`ledger::group`). Each still
//! asks just before it sends, as it did alone; one statement per email was
//! a third of the worker's statements and of PostgreSQL's CPU per email.
use std::collections::{BTreeSet, HashSet};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use super::{Blocked, norm};
use crate::db::ph;
use crate::ledger::group::{Group, chunks};

/// One email's question: which of `addresses` must not be mailed, counting
/// suppressions when `suppressions` and, for bulk mail, the unsubscribes
/// from `category`.
pub(crate) struct Lookup {
    pub addresses: Vec<String>,
    pub category: Option<String>,
    pub suppressions: bool,
}

impl Lookup {
    /// Whether there is anything to ask the database.
    pub fn asks(&self) -> bool {
        !self.addresses.is_empty() && (self.suppressions || self.category.is_some())
    }
}

/// Lookups answered together: (address, why) for each, as `blocked` was.
pub(crate) struct Lookups;

impl Group for Lookups {
    type Item = Lookup;
    type Answer = Vec<(String, Blocked)>;

    async fn write(db: &DatabaseConnection, items: &[Lookup]) -> Result<Vec<Self::Answer>, DbErr> {
        let wanted: BTreeSet<String> = items
            .iter()
            .filter(|l| l.suppressions)
            .flat_map(|l| l.addresses.iter().map(|a| norm(a)))
            .collect();
        let suppressed = suppressed_of(db, &wanted.into_iter().collect::<Vec<_>>()).await?;
        let categories: BTreeSet<&str> =
            items.iter().filter_map(|l| l.category.as_deref()).collect();
        let listed: BTreeSet<String> = items
            .iter()
            .filter(|l| l.category.is_some())
            .flat_map(|l| l.addresses.iter().map(|a| norm(a)))
            .collect();
        let unsubscribed = unsubscribed_of(
            db,
            &listed.into_iter().collect::<Vec<_>>(),
            &categories
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(items
            .iter()
            .map(|l| {
                let mut out = Vec::new();
                for a in l.addresses.iter().map(|a| norm(a)) {
                    if l.suppressions && suppressed.contains(&a) {
                        out.push((a.clone(), Blocked::Suppressed));
                    }
                    if let Some(c) = &l.category
                        && unsubscribed.contains(&(c.clone(), a.clone()))
                    {
                        out.push((a, Blocked::Unsubscribed));
                    }
                }
                out
            })
            .collect())
    }
}

/// Which of `addresses` (normalised) are suppressed.
async fn suppressed_of(
    db: &DatabaseConnection,
    addresses: &[String],
) -> Result<HashSet<String>, DbErr> {
    let mut out = HashSet::new();
    for part in chunks(addresses, |a| a.len() + 8) {
        let (list, mut values) = in_list(db, part, 1);
        let sql = format!("SELECT address FROM herald_suppressions WHERE address {list}");
        for r in query(db, sql, std::mem::take(&mut values)).await? {
            out.insert(r.try_get("", "address")?);
        }
    }
    Ok(out)
}

/// Which (category, address) pairs among `addresses` × `categories` are
/// unsubscribed (a few more pairs than asked for; the caller picks its own).
async fn unsubscribed_of(
    db: &DatabaseConnection,
    addresses: &[String],
    categories: &[String],
) -> Result<HashSet<(String, String)>, DbErr> {
    let mut out = HashSet::new();
    if categories.is_empty() {
        return Ok(out);
    }
    for part in chunks(addresses, |a| a.len() + 8) {
        let (cats, mut values) = in_list(db, categories, 1);
        let (list, more) = in_list(db, part, values.len() + 1);
        values.extend(more);
        let sql = format!(
            "SELECT category, address FROM herald_unsubscribes WHERE category {cats} AND address {list}"
        );
        for r in query(db, sql, values).await? {
            out.insert((r.try_get("", "category")?, r.try_get("", "address")?));
        }
    }
    Ok(out)
}

async fn query(
    db: &DatabaseConnection,
    sql: String,
    values: Vec<Value>,
) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await
}

/// `items` as the right side of a membership test and its values, the
/// first placeholder numbered `first`. PostgreSQL: `= ANY($n::text[])` with
/// one array literal, so the statement's text (and its prepared statement)
/// is the same for any count, and the planner probes the index per value.
/// SQLite: `IN (?, …)`.
fn in_list(db: &DatabaseConnection, items: &[String], first: usize) -> (String, Vec<Value>) {
    let b = db.get_database_backend();
    if b == DbBackend::Postgres {
        return (
            format!("= ANY({}::text[])", ph(b, first)),
            vec![text_array(items).into()],
        );
    }
    let marks: Vec<String> = (0..items.len()).map(|i| ph(b, first + i)).collect();
    (
        format!("IN ({})", marks.join(", ")),
        items.iter().map(|a| Value::from(a.as_str())).collect(),
    )
}

/// A PostgreSQL text array literal: each element double-quoted, with `\`
/// and `"` escaped, so no address can end an element or the array.
fn text_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::text_array;

    #[test]
    fn text_arrays_quote_every_element() {
        assert_eq!(text_array(&[]), "{}");
        assert_eq!(
            text_array(&["a@x".into(), r#""a,b}"@x"#.into(), r"a\b@x".into()]),
            r#"{"a@x","\"a,b}\"@x","a\\b@x"}"#
        );
    }
}
