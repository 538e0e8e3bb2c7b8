//! Database connections: URL checks, pool settings per backend, migrations.
//!
//! ```no_run
//! # async fn example() -> Result<(), herald::db::DbError> {
//! let db = herald::db::connect("postgres://herald@db.internal/herald").await?;
//! herald::db::migrate(&db).await?;
//! # Ok(()) }
//! ```
use std::time::Duration;

use herald_migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};

/// Errors of opening or migrating the database.
///
/// ```no_run
/// # async fn example() {
/// use herald::db::DbError;
/// match herald::db::connect("postgres://herald@db.internal/herald").await {
///     Err(e @ DbError::InvalidUrl { .. }) => { eprintln!("{e}"); std::process::exit(2) }
///     Err(e) => { eprintln!("{e}"); std::process::exit(1) }
///     Ok(_db) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL is not one Herald can use (exit 2: configuration).
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The server could not be reached or refused us (exit 1: runtime).
    /// `reason` is the cause in one line; `hint` the fix, when it is known.
    #[error("cannot connect to database {url}: {reason}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Connect {
        url: String,
        reason: String,
        hint: Option<String>,
    },
    #[error("migration failed: {}", describe(.0))]
    Migrate(DbErr),
}

/// A database error in one line, naming its cause: the innermost error of
/// the chain (sea-orm and sqlx each wrap it and repeat it in their text).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// if let Err(e) = herald::outbox::prune(&db, std::time::Duration::from_secs(86_400)).await {
///     eprintln!("prune failed: {}", herald::db::describe(&e));
/// }
/// # Ok(()) }
/// ```
pub fn describe(e: &DbErr) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.trim().is_empty() {
            msg = text;
        }
        source = s.source();
    }
    msg
}

/// Which backend a URL names, checked before any I/O.
///
/// ```
/// use sea_orm::DbBackend;
/// assert_eq!(herald::db::backend_of("sqlite://herald.db?mode=rwc")?, DbBackend::Sqlite);
/// assert_eq!(herald::db::backend_of("postgresql://herald@db/herald")?, DbBackend::Postgres);
/// assert!(herald::db::backend_of("mysql://db/herald").is_err());
/// # Ok::<(), herald::db::DbError>(())
/// ```
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

/// Numbered placeholders for raw SQL: `$n` on PostgreSQL, `?n` on SQLite
/// (both may repeat a number).
pub(crate) fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// The URL with any password replaced, for messages and logs.
///
/// ```
/// assert_eq!(herald::db::redact("postgres://herald:s3cret@db/herald"), "postgres://herald:***@db/herald");
/// ```
pub fn redact(url: &str) -> String {
    crate::secret::redact_url(url)
}

/// sqlx reports a PostgreSQL server it cannot reach as "pool timed out"
/// once the acquire timeout is spent; the operating system says why (the
/// connection refused, the host unknown). `None` when the port answers or
/// the URL names no TCP host (a Unix socket).
async fn unreachable_because(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    let port = u.port().unwrap_or(5432);
    let dial = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(2), dial).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("{host}:{port}: {e}")),
        Err(_) => Some(format!("{host}:{port}: no answer within 2 s")),
    }
}

/// What to tell an operator whose database did not open, when the fix is
/// known: SQLite's "unable to open database file" says neither which file
/// nor why.
fn connect_hint(url: &str, backend: DbBackend, reason: &str) -> Option<String> {
    if backend != DbBackend::Sqlite || !reason.contains("code: 14") {
        return None;
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    let file = std::path::Path::new(path);
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Some(format!("the directory {} does not exist", dir.display()));
    }
    if !file.exists() && !url.contains("mode=rwc") {
        return Some(format!(
            "{} does not exist; add ?mode=rwc to the URL to create it",
            file.display()
        ));
    }
    // SQLite does not say why; the OS does: open it as SQLite would (read
    // and write, creating it only if the URL asks to) and report that error.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(url.contains("mode=rwc"))
        .truncate(false)
        .open(file);
    Some(match opened {
        Err(e) => format!("{}: {}", file.display(), os_reason(&e)),
        Ok(_) => format!("check that {} is readable and writable", file.display()),
    })
}

/// An I/O error as an operator reads it: "permission denied", "read-only
/// file system", without Rust's "(os error N)".
fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    text.to_lowercase()
}

/// How a process holds its PostgreSQL connections.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::db::{Pool, connect_with};
/// let db = connect_with("postgres://herald@db/herald", Pool::Warm(8), "billing-worker").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// A short command: up to 16 connections, opened when first needed.
    OnDemand,
    /// A long-running relay, worker or `up`: this many connections, all opened
    /// at start-up and kept open. Opening one costs ~90 ms here (sqlx 0.9 does
    /// not set TCP_NODELAY, so the TLS handshake waits twice on delayed ACKs),
    /// and a pool that grows on demand puts that on the path of whichever
    /// event needed the extra connection: it was most of the worker's p99.
    Warm(u32),
}

/// Open a pool for a short command (see [`Pool::OnDemand`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let db = herald::db::connect("sqlite://herald.db?mode=rwc").await?;
/// println!("{} pending", herald::outbox::backlog(&db).await?.pending);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbError> {
    connect_with(url, Pool::OnDemand, "herald").await
}

/// Open a pool. SQLite gets WAL and a busy timeout so that the relay, the
/// worker and the application can share one file from separate processes.
/// On PostgreSQL, `role` is the connections' `application_name` (unless the
/// URL sets one), so that `pg_stat_activity` tells an operator which process
/// holds which.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::db::{Pool, connect_with, migrate};
/// let db = connect_with("postgres://herald@db/herald", Pool::Warm(4), "herald-relay").await?;
/// migrate(&db).await?;
/// # Ok(()) }
/// ```
pub async fn connect_with(
    url: &str,
    pool: Pool,
    role: &str,
) -> Result<DatabaseConnection, DbError> {
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
        // Pinging on every checkout doubles the round trips of each short
        // statement; a connection in steady use does not need it.
        opts.test_before_acquire_if_idle_for(Duration::from_secs(30));
        // An application_name given in the URL wins.
        let role = role.to_string();
        opts.map_sqlx_postgres_opts(move |o| match o.get_application_name() {
            Some(_) => o,
            None => o.application_name(&role),
        });
        match pool {
            Pool::OnDemand => {
                opts.max_connections(16);
            }
            Pool::Warm(n) => {
                // Kept until the server drops them: recycling on a timer would
                // put a new connection's cost back on an event's path.
                opts.max_connections(n.max(1))
                    .min_connections(n.max(1))
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_lazy(true);
            }
        }
    }
    // Several processes opening a new SQLite file at once race to switch it to
    // WAL, and that switch fails with SQLITE_BUSY instead of waiting on the
    // busy timeout: retry the open briefly in that one case.
    let mut tries = 0;
    let db = loop {
        match Database::connect(opts.clone()).await {
            Ok(db) => break db,
            Err(e)
                if backend == DbBackend::Sqlite
                    && tries < 50
                    && e.to_string().contains("(code: 5)") =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(connect_error(url, backend, &e).await),
        }
    };
    // A lazy pool would report an unreachable server only at first use.
    if let Err(e) = db.execute_unprepared("SELECT 1").await {
        return Err(connect_error(url, backend, &e).await);
    }
    if let (DbBackend::Postgres, Pool::Warm(n)) = (backend, pool) {
        // Open them side by side rather than one after another (sqlx's
        // min_connections would), then hand them back to the pool.
        let pg = db.get_postgres_connection_pool();
        let opened = futures::future::join_all((0..n).map(|_| pg.acquire())).await;
        if let Some(Err(e)) = opened.into_iter().find(Result::is_err) {
            tracing::warn!(url = %redact(url), error = %e, "could not open every database connection at start-up");
        }
    }
    Ok(db)
}

async fn connect_error(url: &str, backend: DbBackend, e: &DbErr) -> DbError {
    let mut reason = describe(e);
    if backend == DbBackend::Postgres
        && reason.contains("timed out")
        && let Some(why) = unreachable_because(url).await
    {
        reason = why;
    }
    DbError::Connect {
        url: redact(url),
        hint: connect_hint(url, backend, &reason),
        reason,
    }
}

/// Arbitrary constant: the advisory lock that serialises Herald's migrations.
const MIGRATE_LOCK: i64 = 0x6865_7261_6c64_6d67; // "heraldmg"

/// Create or upgrade Herald's tables; returns how many migrations it applied
/// (0 when the schema was current). Safe to run from several processes at once
/// (relays and workers all migrate at start-up): PostgreSQL serialises them
/// with an advisory lock held by the migration's transaction; on SQLite, where
/// the loser of a race fails on a version row, it retries until nothing is left
/// pending (the migrations are idempotent).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let db = herald::db::connect("sqlite://app.db?mode=rwc").await?;
/// let applied = herald::db::migrate(&db).await?;
/// println!("{applied} migration(s) applied");
/// # Ok(()) }
/// ```
pub async fn migrate(db: &DatabaseConnection) -> Result<usize, DbError> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await.map_err(DbError::Migrate)?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATE_LOCK})"))
            .await
            .map_err(DbError::Migrate)?;
        let pending = Migrator::get_pending_migrations(&txn)
            .await
            .map_err(DbError::Migrate)?
            .len();
        Migrator::up(&txn, None).await.map_err(DbError::Migrate)?;
        txn.commit().await.map_err(DbError::Migrate)?;
        return Ok(pending);
    }
    // SQLite: racing processes collide on the version rows. Herald's
    // migrations are idempotent (IF [NOT] EXISTS), so the loser retries until
    // nothing is pending (the winner may still be applying a later one).
    let pending = pending_migrations(db).await?;
    let mut tries = 0;
    loop {
        match Migrator::up(db, None).await {
            Ok(()) => return Ok(pending),
            Err(e) => {
                if pending_migrations(db).await? == 0 {
                    tracing::debug!(error = %e, "another process applied the migrations first");
                    return Ok(0);
                }
                tries += 1;
                if tries >= 50 {
                    return Err(DbError::Migrate(e));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbError> {
    Ok(Migrator::get_pending_migrations(db)
        .await
        .map_err(DbError::Migrate)?
        .len())
}

/// A transaction that will write: on SQLite it takes the write lock at
/// BEGIN (`BEGIN IMMEDIATE`), waiting its turn under the busy timeout. A
/// deferred transaction that reads first and writes later fails with
/// "database is locked" when another writer committed in between; this one
/// cannot. On PostgreSQL it is an ordinary transaction.
pub(crate) async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
