//! Suppressed addresses: an address that bounced for good (a permanent reply
//! to RCPT, 5.1.x: no such user, bad domain) or that an operator added gets
//! no further mail. Later deliveries to it are recorded `suppressed`: not
//! sent, not dead-lettered. A workflow may opt out (`ignore_suppression:
//! true`, for mail the user asked for, such as a password reset).
//!
//! ```no_run
//! # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
//! for s in herald::suppression::list(&db).await? {
//!     println!("{} ({}): {}", s.address, s.source, s.reason);
//! }
//! # Ok(()) }
//! ```
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, Value};

/// One suppressed address.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let bounced: Vec<herald::suppression::Suppression> = herald::suppression::list(&db).await?
///     .into_iter().filter(|s| s.source == "bounce").collect();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    /// The server's reply, when a bounce put it here.
    pub smtp_reply: Option<String>,
    /// `bounce` or `manual`.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

use crate::db::ph;

pub(crate) mod lookup;

/// Addresses are compared lower-cased (as the ledger keys them).
fn norm(a: &str) -> String {
    a.trim().to_ascii_lowercase()
}

/// Check an address an operator typed: the form SMTP would send, or why not.
///
/// ```
/// use herald::suppression::check_address;
/// assert_eq!(check_address(" Ada@Example.COM ")?, "ada@example.com");
/// assert!(check_address("not an address").is_err());
/// # Ok::<(), herald::error::InvalidValue>(())
/// ```
pub fn check_address(raw: &str) -> Result<String, crate::error::InvalidValue> {
    crate::workflow::address::address(raw)
        .map(|a| norm(&a))
        .map_err(crate::error::InvalidValue)
}

/// Is this permanent reply to RCPT a reason to stop mailing the address?
/// The enhanced status 5.1.x says the mailbox or its domain does not exist.
///
/// ```
/// use herald::suppression::is_hard_bounce;
/// assert!(is_hard_bounce(550, "5.1.1 no such user"));
/// assert!(!is_hard_bounce(552, "5.2.2 mailbox full"));
/// assert!(!is_hard_bounce(450, "4.1.1 try later"));
/// ```
pub fn is_hard_bounce(code: u16, message: &str) -> bool {
    (500..600).contains(&code) && message.trim_start().starts_with("5.1.")
}

/// Every suppressed address, oldest first.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// for s in herald::suppression::list(db).await? {
///     println!("{} ({}): {}", s.address, s.source, s.reason);
/// }
/// # Ok(()) }
/// ```
pub async fn list(db: &DatabaseConnection) -> Result<Vec<Suppression>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT address, reason, smtp_reply, source, created_at FROM herald_suppressions ORDER BY created_at, address",
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Suppression {
                address: r.try_get("", "address")?,
                reason: r.try_get("", "reason")?,
                smtp_reply: r.try_get("", "smtp_reply")?,
                source: r.try_get("", "source")?,
                created_at: r.try_get("", "created_at")?,
            })
        })
        .collect()
}

/// Suppress `address` (idempotent: the first reason stays); true when it was new.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let address = herald::suppression::check_address("ada@example.com")?;
/// let new = herald::suppression::add(&db, &address, "asked by phone", None, "manual").await?;
/// # Ok(()) }
/// ```
pub async fn add(
    db: &impl ConnectionTrait,
    address: &str,
    reason: &str,
    smtp_reply: Option<&str>,
    source: &str,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "INSERT INTO herald_suppressions (address, reason, smtp_reply, source, created_at) \
         VALUES ({}, {}, {}, {}, {}) ON CONFLICT (address) DO NOTHING",
        ph(b, 1),
        ph(b, 2),
        ph(b, 3),
        ph(b, 4),
        ph(b, 5)
    );
    let values: Vec<Value> = vec![
        norm(address).into(),
        reason.into(),
        smtp_reply.map(str::to_string).into(),
        source.into(),
        Utc::now().into(),
    ];
    Ok(db
        .execute_raw(Statement::from_sql_and_values(b, sql, values))
        .await?
        .rows_affected()
        > 0)
}

/// Take `address` off the list; true when it was on it.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// if !herald::suppression::remove(&db, "ada@example.com").await? {
///     println!("ada@example.com was not suppressed");
/// }
/// # Ok(()) }
/// ```
pub async fn remove(db: &DatabaseConnection, address: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "DELETE FROM herald_suppressions WHERE address = {}",
        ph(b, 1)
    );
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            b,
            sql,
            [norm(address).into()],
        ))
        .await?
        .rows_affected()
        > 0)
}

/// Why an address is not mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    Suppressed,
    Unsubscribed,
}

#[cfg(test)]
mod tests {
    #[test]
    fn hard_bounces_are_5_1_x() {
        assert!(super::is_hard_bounce(550, "5.1.1 no such user"));
        assert!(super::is_hard_bounce(553, "5.1.3 bad address syntax"));
        assert!(!super::is_hard_bounce(550, "5.7.1 rejected by policy"));
        assert!(!super::is_hard_bounce(450, "4.1.1 try later"));
        assert!(!super::is_hard_bounce(550, "mailbox unavailable"));
    }
}
