//! Publishing again what the stream lost: rows already published that the
//! outbox still holds (retention), in seq order, a page at a time, with the
//! same headers and `Nats-Msg-Id` as the first time. JetStream drops what it
//! still holds within its duplicate window, and the ledger keeps the worker
//! from emailing anyone twice, so running it again is always safe.
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use super::store::{self, Claimed};
use crate::relay::publish;

/// What to publish again.
///
/// ```
/// let since = chrono::Utc::now() - chrono::Duration::hours(2);
/// let range = herald::outbox::Republish::since(since).subject("events.billing.>").batch(1000);
/// assert_eq!(range.subject.as_deref(), Some("events.billing.>"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Republish {
    /// Rows published in [`since`, `until`).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Only subjects matching this NATS filter (`events.vault.>`).
    pub subject: Option<String>,
    /// Rows read and published per page: memory stays bounded.
    pub batch: u64,
}

impl Republish {
    /// Rows published since `since`, up to now, 5,000 at a time.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// let range = herald::outbox::Republish::since(Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap());
    /// assert_eq!(range.batch, 5000);
    /// ```
    pub fn since(since: DateTime<Utc>) -> Republish {
        Republish {
            since,
            until: Utc::now(),
            subject: None,
            batch: 5000,
        }
    }

    /// End the range before now (exclusive), to republish only the window the
    /// stream lost.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// let lost = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    /// let range = herald::outbox::Republish::since(lost).until(lost + chrono::Duration::hours(1));
    /// ```
    pub fn until(mut self, until: DateTime<Utc>) -> Republish {
        self.until = until;
        self
    }

    /// Only the rows whose subject matches this NATS filter, when only some
    /// workflows lost events.
    ///
    /// ```
    /// let since = chrono::Utc::now() - chrono::Duration::hours(2);
    /// let range = herald::outbox::Republish::since(since).subject("events.vault.>");
    /// ```
    pub fn subject(mut self, filter: impl Into<String>) -> Republish {
        self.subject = Some(filter.into());
        self
    }

    /// Rows read and published per page (at least 1), so that memory stays
    /// bounded however long the range.
    ///
    /// ```
    /// let since = chrono::Utc::now() - chrono::Duration::hours(2);
    /// let range = herald::outbox::Republish::since(since).batch(500);
    /// ```
    pub fn batch(mut self, rows: u64) -> Republish {
        self.batch = rows.max(1);
        self
    }
}

/// Where a republish stands, after each page.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{Republish, RepublishProgress, republish};
/// let range = Republish::since(chrono::Utc::now() - chrono::Duration::hours(2));
/// republish(&db, &js, &range, |p: RepublishProgress| {
///     eprintln!("{}/{} (seq {})", p.read, p.total, p.seq)
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RepublishProgress {
    pub read: u64,
    pub total: u64,
    /// The last seq read.
    pub seq: i64,
}

/// What a republish did.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{Republish, republish};
/// let range = Republish::since(chrono::Utc::now() - chrono::Duration::hours(2));
/// let s = republish(&db, &js, &range, |_| {}).await?;
/// println!("{} rows: {} stored again, {} still in the stream", s.rows, s.published, s.duplicates);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepublishSummary {
    /// Rows of the range (matching the subject filter).
    pub rows: u64,
    /// Stored again by the stream.
    pub published: u64,
    /// Still held by the stream (dropped as duplicates).
    pub duplicates: u64,
}

/// Why a republish stopped; [`RepublishError::Nats`] says how far it got, and
/// running it again is always safe.
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection, js: async_nats::jetstream::Context) {
/// use herald::outbox::{Republish, RepublishError, republish};
/// let range = Republish::since(chrono::Utc::now() - chrono::Duration::hours(2));
/// match republish(&db, &js, &range, |_| {}).await {
///     Err(RepublishError::Nats { done_through, .. }) => eprintln!("rows up to seq {done_through} done"),
///     Err(e) => eprintln!("{e}"),
///     Ok(s) => println!("{} of {} stored again", s.published, s.rows),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepublishError {
    #[error("database: {}", crate::db::describe(.0))]
    Database(#[from] DbErr),
    /// NATS failed midway: rows up to `done_through` are republished.
    #[error(
        "{reason} (rows up to seq {done_through} are republished; running it again is safe: the stream drops what it holds, the ledger what was sent)"
    )]
    Nats { reason: String, done_through: i64 },
}

/// Publish again the rows of `range`; `on_progress` after every page.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, js: &async_nats::jetstream::Context) -> Result<(), herald::outbox::RepublishError> {
/// use herald::outbox::{Republish, republish};
/// let since = chrono::Utc::now() - chrono::Duration::hours(2);
/// let done = republish(db, js, &Republish::since(since), |_| {}).await?;
/// println!("{} stored again", done.published);
/// # Ok(()) }
/// ```
pub async fn republish(
    db: &DatabaseConnection,
    js: &jetstream::Context,
    range: &Republish,
    mut on_progress: impl FnMut(RepublishProgress),
) -> Result<RepublishSummary, RepublishError> {
    let total = store::count_published_between(db, range.since, range.until).await?;
    let mut summary = RepublishSummary::default();
    let (mut read, mut after) = (0u64, 0i64);
    loop {
        let page =
            store::published_between(db, range.since, range.until, after, range.batch).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        read += page.len() as u64;
        let done_through = after;
        after = last;
        let rows: Vec<Claimed> = page
            .iter()
            .filter(|r| {
                range
                    .subject
                    .as_deref()
                    .is_none_or(|f| crate::subject::matches(f, &r.subject))
            })
            .map(Claimed::from)
            .collect();
        let fail = |reason: String| RepublishError::Nats {
            reason,
            done_through,
        };
        let mut ready = Vec::with_capacity(rows.len());
        for row in &rows {
            let h =
                publish::build_headers(row).map_err(|e| fail(format!("seq {}: {e}", row.seq)))?;
            ready.push((row, h));
        }
        for (row, r) in publish::publish_all(js, ready, || false).await {
            match r {
                Ok(ack) if ack.duplicate => summary.duplicates += 1,
                Ok(_) => summary.published += 1,
                Err(f) => return Err(fail(format!("seq {}: {}", row.seq, f.message()))),
            }
        }
        summary.rows += rows.len() as u64;
        on_progress(RepublishProgress {
            read,
            total: total.max(read),
            seq: last,
        });
    }
    Ok(summary)
}
