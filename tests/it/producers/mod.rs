//! Producers in any language (docs/producers.md): the outbox's SQL contract
//! used from Python, TypeScript, plain SQL and Rust's sqlx, against real
//! PostgreSQL/SQLite, a real nats-server, relay and worker processes and the
//! SMTP sink. The Python and TypeScript examples under `examples/` run as they
//! are (their pinned dependencies are installed by scripts/setup.sh).

mod contract;
mod languages;
mod plain_sql;
mod relay_side;

use herald_tests::scenario::World;
use herald_tests::wait;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use std::time::Duration;

/// Numbered placeholders for raw statements.
fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".into(),
    }
}

/// `INSERT INTO herald_outbox (cols) VALUES (values)`, bound.
async fn insert(
    conn: &impl ConnectionTrait,
    cols: &[&str],
    values: Vec<Value>,
) -> Result<(), DbErr> {
    let b = conn.get_database_backend();
    let phs: Vec<String> = (1..=cols.len()).map(|n| ph(b, n)).collect();
    let sql = format!(
        "INSERT INTO herald_outbox ({}) VALUES ({})",
        cols.join(", "),
        phs.join(", ")
    );
    conn.execute_raw(Statement::from_sql_and_values(b, sql, values))
        .await
        .map(|_| ())
}

/// One case of the agreement test: an event in parts.
struct Case {
    subject: &'static str,
    payload: serde_json::Value,
    aggregate: Option<(&'static str, &'static str)>,
    headers: &'static [(&'static str, &'static str)],
}

async fn published(w: &World, n: i64) {
    wait::until(
        &format!("{n} row(s) published without a poll"),
        Duration::from_secs(20),
        || async {
            w.count("SELECT COUNT(*) FROM herald_outbox WHERE published_at IS NOT NULL")
                .await
                == n
        },
    )
    .await;
}
