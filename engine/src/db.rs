//! Database connections: URL checks, pool settings per backend, migrations.
use std::time::Duration;

use herald_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// Errors of opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not one Herald can use (exit 2: configuration).
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The server could not be reached or refused us (exit 1: runtime).
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("migration failed: {0}")]
    Migrate(#[source] DbErr),
}

/// Which backend a URL names, checked before any I/O.
pub fn backend_of(url: &str) -> Result<DbBackend, DbError> {
    let invalid = |reason: &str| DbError::InvalidUrl {
        url: redact(url),
        reason: reason.into(),
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "sqlite" => Ok(DbBackend::Sqlite),
        "postgres" | "postgresql" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(invalid("PostgreSQL URL has no host"));
            }
            Ok(DbBackend::Postgres)
        }
        other => Err(invalid(&format!(
            "unsupported scheme {other:?} (use sqlite:// or postgres://)"
        ))),
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Open a pool. SQLite gets WAL and a busy timeout so that the relay, the
/// worker and the application can share one file from separate processes.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbError> {
    let backend = backend_of(url)?;
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3));
    if backend == DbBackend::Sqlite {
        opts.max_connections(4).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
        });
    } else {
        opts.max_connections(16);
    }
    let db = Database::connect(opts)
        .await
        .map_err(|source| DbError::Connect {
            url: redact(url),
            source,
        })?;
    // A lazy pool would report an unreachable server only at first use.
    db.execute_unprepared("SELECT 1")
        .await
        .map_err(|source| DbError::Connect {
            url: redact(url),
            source,
        })?;
    Ok(db)
}

/// Create or upgrade Herald's tables; a no-op when they are current.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbError> {
    Migrator::up(db, None).await.map_err(DbError::Migrate)
}

/// Migrations not yet applied (used by start-up checks).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbError> {
    Ok(Migrator::get_pending_migrations(db)
        .await
        .map_err(DbError::Migrate)?
        .len())
}
