//! The outbox's SQL for operations: prune, unpark, backlog, published
//! ranges (for republish), parked aggregates.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use serde::Serialize;

use crate::db::ph;

/// Delete up to `batch` published rows older than `cutoff`; returns how many.
pub async fn prune(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "DELETE FROM herald_outbox WHERE seq IN (SELECT seq FROM herald_outbox \
         WHERE published_at IS NOT NULL AND published_at < {} ORDER BY published_at LIMIT {batch})",
        ph(backend, 1)
    );
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [cutoff.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}

/// Un-park rows (all, or one by seq) so the relay tries again.
pub async fn unpark(db: &DatabaseConnection, seq: Option<i64>) -> Result<u64, DbErr> {
    let filter = match seq {
        Some(s) => format!(" AND seq = {s}"),
        None => String::new(),
    };
    let sql = format!(
        "UPDATE herald_outbox SET parked_at = NULL, attempts = 0, next_attempt_at = NULL \
         WHERE parked_at IS NOT NULL AND published_at IS NULL{filter}"
    );
    Ok(db.execute_unprepared(&sql).await?.rows_affected())
}

/// Backlog figures for metrics and `herald status` (see [`backlog`](crate::outbox::backlog)).
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// let b: herald::outbox::Backlog = herald::outbox::backlog(&db).await?;
/// if b.parked > 0 {
///     eprintln!("{} rows parked: publishing gave up on them", b.parked);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Backlog {
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_age_seconds: f64,
}

pub async fn backlog(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Backlog, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT \
               COUNT(CASE WHEN parked_at IS NULL THEN 1 END) AS pending, \
               COUNT(CASE WHEN parked_at IS NOT NULL THEN 1 END) AS parked, \
               MIN(CASE WHEN parked_at IS NULL THEN seq END) AS oldest \
             FROM herald_outbox WHERE published_at IS NULL",
        ))
        .await?;
    let Some(row) = row else {
        return Ok(Backlog::default());
    };
    let pending: i64 = row.try_get("", "pending")?;
    let parked: i64 = row.try_get("", "parked")?;
    let oldest: Option<i64> = row.try_get("", "oldest")?;
    let mut age = 0.0;
    if let Some(seq) = oldest {
        let r = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT created_at FROM herald_outbox WHERE seq = {seq}"),
            ))
            .await?;
        if let Some(r) = r {
            let created: DateTime<Utc> = r.try_get("", "created_at")?;
            age = (now - created).num_milliseconds().max(0) as f64 / 1000.0;
        }
    }
    Ok(Backlog {
        pending,
        parked,
        oldest_pending_age_seconds: age,
    })
}

/// Published rows still in the outbox (retention), for `herald outbox
/// republish`: those published in [since, until), oldest first, one page of
/// at most `limit` after `after_seq` (a day of events need not fit in memory).
pub async fn published_between(
    db: &DatabaseConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<herald_entities::outbox::Model>, DbErr> {
    use herald_entities::outbox;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.gte(since))
        .filter(outbox::Column::PublishedAt.lt(until))
        .filter(outbox::Column::Seq.gt(after_seq))
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// How many rows [`published_between`] would page through.
pub async fn count_published_between(
    db: &DatabaseConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<u64, DbErr> {
    use herald_entities::outbox;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.gte(since))
        .filter(outbox::Column::PublishedAt.lt(until))
        .count(db)
        .await
}

/// An aggregate held back by a parked outbox row (see
/// [`parked_aggregates`](crate::outbox::parked_aggregates)).
///
/// ```no_run
/// # async fn example(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// for p in herald::outbox::parked_aggregates(&db).await? {
///     println!("{}: row {} parked ({}), {} waiting", p.aggregate, p.seq, p.reason, p.waiting);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct ParkedAggregate {
    pub aggregate: String,
    /// The parked row (`herald outbox retry --seq N` re-drives it).
    pub seq: i64,
    pub reason: String,
    /// Unpublished rows of the aggregate behind it.
    pub waiting: i64,
}

/// Every aggregate with a parked row, oldest first.
pub async fn parked_aggregates(db: &DatabaseConnection) -> Result<Vec<ParkedAggregate>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT p.ordering_key AS aggregate, p.seq AS seq, p.last_error AS reason, \
               (SELECT COUNT(*) FROM herald_outbox w WHERE w.ordering_key = p.ordering_key \
                  AND w.published_at IS NULL AND w.seq > p.seq) AS waiting \
             FROM herald_outbox p \
             WHERE p.parked_at IS NOT NULL AND p.published_at IS NULL AND p.ordering_key IS NOT NULL \
             ORDER BY p.seq LIMIT 1000",
        ))
        .await?;
    let mut out: Vec<ParkedAggregate> = Vec::new();
    for r in rows {
        let aggregate: String = r.try_get("", "aggregate")?;
        if out.iter().any(|p| p.aggregate == aggregate) {
            continue;
        }
        out.push(ParkedAggregate {
            aggregate,
            seq: r.try_get("", "seq")?,
            reason: r
                .try_get::<Option<String>>("", "reason")?
                .unwrap_or_default(),
            waiting: r.try_get("", "waiting")?,
        });
    }
    Ok(out)
}
