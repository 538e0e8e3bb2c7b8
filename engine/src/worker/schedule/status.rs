//! What `herald status` shows of the schedule.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

/// What `herald status` shows of the schedule: what [`scheduled`] returns.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// let s: herald::worker::Scheduled = herald::worker::scheduled(&db).await?;
/// println!("{} delayed, {} digests holding {} events", s.delayed, s.digests, s.digest_events);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Scheduled {
    /// Delayed events (delay, send time, quiet hours) not yet sent.
    pub delayed: i64,
    /// Open or due digests, and the events they hold.
    pub digests: i64,
    pub digest_events: i64,
    /// The earliest due time, RFC 3339.
    pub next_due: Option<String>,
}

/// The schedule's figures: events the worker holds for later (delays, send
/// windows, digests), and when the next one is due.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// let s = herald::worker::scheduled(&db).await?;
/// if let Some(due) = &s.next_due {
///     println!("next scheduled send at {due}");
/// }
/// # Ok(()) }
/// ```
pub async fn scheduled(db: &DatabaseConnection) -> Result<Scheduled, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT \
               COUNT(CASE WHEN kind = 'delay' THEN 1 END) AS delayed, \
               COUNT(CASE WHEN kind = 'digest' THEN 1 END) AS digests, \
               COALESCE(SUM(CASE WHEN kind = 'digest' THEN items END), 0) AS digest_events, \
               MIN(due_at) AS next_due \
             FROM herald_schedule WHERE done_at IS NULL",
        ))
        .await?;
    let Some(r) = row else {
        return Ok(Scheduled::default());
    };
    Ok(Scheduled {
        delayed: r.try_get("", "delayed")?,
        digests: r.try_get("", "digests")?,
        digest_events: r.try_get::<Option<i64>>("", "digest_events")?.unwrap_or(0),
        next_due: r
            .try_get::<Option<DateTime<Utc>>>("", "next_due")?
            .map(|t| t.to_rfc3339()),
    })
}
