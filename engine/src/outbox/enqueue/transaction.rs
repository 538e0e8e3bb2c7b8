//! `OutboxTransaction`: the sealed transactions `enqueue` writes to (SeaORM,
//! sqlx on PostgreSQL or SQLite), and the one INSERT of the contract's columns.
use std::future::Future;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, RuntimeErr, Statement};

#[cfg(doc)]
use super::enqueue;
use super::{Checked, sqlx};

/// The one INSERT every Rust producer runs: the contract's insertable columns
/// (docs/producers.md); every other column is the database's default.
fn insert_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "INSERT INTO herald_outbox (event_id, subject, aggregate_type, aggregate_id, payload, headers) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        }
        _ => {
            "INSERT INTO herald_outbox (event_id, subject, aggregate_type, aggregate_id, payload, headers) \
             VALUES (?, ?, ?, ?, ?, ?)"
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &sea_orm::DatabaseTransaction {}
    impl Sealed for &mut super::sqlx::Transaction<'_, super::sqlx::Postgres> {}
    impl Sealed for &mut super::sqlx::Transaction<'_, super::sqlx::Sqlite> {}
}

/// An open transaction [`enqueue`] can write to: `&DatabaseTransaction`
/// (SeaORM), `&mut sqlx::Transaction<'_, Postgres>` or
/// `&mut sqlx::Transaction<'_, Sqlite>`. Sealed, and never implemented for a
/// connection or a pool: an event exists only if the caller's change commits.
///
/// ```no_run
/// # async fn example(pool: herald::outbox::sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::outbox::{enqueue, NewEvent};
/// // An application on sqlx passes its own transaction.
/// let mut tx = pool.begin().await?;
/// enqueue(&mut tx, NewEvent::new("events.user.signed_up", serde_json::json!({"user_id": 42}))).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub trait OutboxTransaction: sealed::Sealed + Send {
    #[doc(hidden)]
    fn insert_event(self, row: Checked) -> impl Future<Output = Result<(), DbErr>> + Send;
}

impl OutboxTransaction for &DatabaseTransaction {
    async fn insert_event(self, row: Checked) -> Result<(), DbErr> {
        let backend = self.get_database_backend();
        let values: Vec<sea_orm::Value> = vec![
            row.event_id.as_uuid().into(),
            row.subject.into(),
            row.aggregate_type.into(),
            row.aggregate_id.into(),
            row.payload.into(),
            row.headers.into(),
        ];
        self.execute_raw(Statement::from_sql_and_values(
            backend,
            insert_sql(backend),
            values,
        ))
        .await
        .map(|_| ())
    }
}

/// A sqlx error as SeaORM reports it, so both paths share one error type.
fn from_sqlx(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

impl OutboxTransaction for &mut sqlx::Transaction<'_, sqlx::Postgres> {
    async fn insert_event(self, row: Checked) -> Result<(), DbErr> {
        sqlx::query(insert_sql(DbBackend::Postgres))
            .bind(row.event_id.as_uuid())
            .bind(row.subject)
            .bind(row.aggregate_type)
            .bind(row.aggregate_id)
            .bind(row.payload)
            .bind(row.headers)
            .execute(&mut **self)
            .await
            .map(|_| ())
            .map_err(from_sqlx)
    }
}

impl OutboxTransaction for &mut sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn insert_event(self, row: Checked) -> Result<(), DbErr> {
        sqlx::query(insert_sql(DbBackend::Sqlite))
            .bind(row.event_id.as_uuid())
            .bind(row.subject)
            .bind(row.aggregate_type)
            .bind(row.aggregate_id)
            .bind(row.payload)
            .bind(row.headers)
            .execute(&mut **self)
            .await
            .map(|_| ())
            .map_err(from_sqlx)
    }
}
