//! Opening what a command needs: NATS and the events stream, database
//! pools (closed in one place when the command ends).

use anyhow::Result;

use super::Global;

/// Connect to NATS as `name` and make sure the events stream exists: created
/// with default settings when missing, an existing one left as it is (the
/// relay applies its own settings, such as `--stream-replicas`).
pub async fn jetstream_for(g: &Global, name: &str) -> Result<async_nats::jetstream::Context> {
    let client = herald::jetstream::connect(g.nats_url.expose(), name).await?;
    let js = async_nats::jetstream::new(client);
    let settings = herald::jetstream::StreamSettings::named(g.stream.clone());
    herald::jetstream::open_stream(&js, &settings).await?;
    Ok(js)
}

/// Every database pool a command opened, closed in one place when the
/// command ends however it ends: PostgreSQL then sees orderly disconnects
/// instead of logging a reset for each connection (16 per worker restart).
static OPEN_POOLS: std::sync::Mutex<Vec<sea_orm::DatabaseConnection>> =
    std::sync::Mutex::new(Vec::new());

/// Open the database for this command (see [`herald::db::connect_with`]).
pub async fn open_db(
    g: &Global,
    pool: herald::db::Pool,
    role: &str,
) -> Result<sea_orm::DatabaseConnection> {
    let db = herald::db::connect_with(g.database_url.expose(), pool, role).await?;
    if let Ok(mut open) = OPEN_POOLS.lock() {
        open.push(db.clone());
    }
    Ok(db)
}

/// [`open_db`] for a command that only reads: a SQLite file that does not
/// exist is an error, not a new empty database (the default URL creates one,
/// which `up` and the services want; `herald status` run in the wrong
/// directory should say so, not report an empty Herald).
pub async fn open_existing_db(g: &Global, role: &str) -> Result<sea_orm::DatabaseConnection> {
    refuse_missing_sqlite(g)?;
    let db = open_db(g, herald::db::Pool::OnDemand, role).await?;
    refuse_without_herald(&db, g).await?;
    Ok(db)
}

/// The same for a database that exists but holds no Herald tables (an
/// empty file, a new PostgreSQL database, a misspelt name): nothing Herald
/// did is in it, and a replay against it would send everything again.
pub async fn refuse_without_herald(db: &sea_orm::DatabaseConnection, g: &Global) -> Result<()> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let b = db.get_database_backend();
    let sql = match b {
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_tables WHERE tablename = 'herald_outbox' AND schemaname = ANY(current_schemas(false))"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'herald_outbox'"
        }
    };
    let row = db.query_one_raw(Statement::from_string(b, sql)).await?;
    let n: i64 = match row {
        Some(r) => r.try_get("", "n")?,
        None => 0,
    };
    if n == 0 {
        return Err(anyhow::anyhow!(
            "the database at {} has no Herald tables: nothing has run against it yet (`herald up`, `herald migrate` or a relay or worker creates them); check --database-url / HERALD_DATABASE_URL",
            herald::secret::redact_url(g.database_url.expose())
        ));
    }
    Ok(())
}

/// For a command that works on what Herald has already done (replay, dead
/// letters, suppressions, the outbox): a SQLite file that does not exist
/// would be a new, empty database. A replay against one sends every email
/// again, since its ledger has none of them; a suppression added to one
/// protects no one. So it is refused, naming the file.
pub fn refuse_missing_sqlite(g: &Global) -> Result<()> {
    let url = g.database_url.expose();
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
    // In a directory that exists; otherwise connecting fails with its own
    // hint. (Without ?mode=rwc that hint would be to add it: the wrong
    // advice for a command that must find Herald's history.)
    if let Some(p) = path
        && !std::path::Path::new(p).exists()
        && std::path::Path::new(p)
            .parent()
            .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
    {
        return Err(anyhow::anyhow!(
            "no database at {p}: nothing has run here yet (`herald up`, `herald migrate` or a relay or worker creates it); check --database-url / HERALD_DATABASE_URL"
        ));
    }
    Ok(())
}

/// Close what [`open_db`] opened; a pool still in use after 5 s is left to the exit.
pub(super) async fn close_dbs() {
    let open: Vec<_> = OPEN_POOLS
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    for db in open {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), db.close()).await;
    }
}
