//! Producers as the relay sees them: sqlx transactions, any PostgreSQL insert
//! waking the relay, legacy rows kept across an upgrade.

use super::{insert, published};
use crate::worker::FAST_RETRY;
use herald::outbox::{EnqueueError, NewEvent, enqueue, sqlx};
use herald_entities::outbox as row;
use herald_migration::{Migrator, MigratorTrait};
use herald_tests::db::{Backend, TestDb};
use herald_tests::scenario::Scenario;
use herald_tests::{both_backends, wait};
use sea_orm::DatabaseConnection;
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, QueryOrder, Statement, TransactionTrait, Value,
};
use serde_json::json;

/// Enqueue through a plain sqlx transaction: commit delivers, rollback leaves
/// nothing (neither the business row), a reused id is a DuplicateEventId.
/// A macro: the same code for `sqlx::PgPool` and `sqlx::SqlitePool`.
macro_rules! through_sqlx {
    ($w:expr, $pool:expr) => {{
        let (w, pool) = ($w, $pool);
        let ev = |who: &str| {
            NewEvent::new(
                "events.test.sqlx",
                json!({"email": format!("{who}@example.com"), "name": who}),
            )
            .aggregate("account", who)
        };
        sqlx::query("CREATE TABLE accounts (name TEXT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO accounts (name) VALUES ('ada')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let id = enqueue(&mut tx, ev("ada")).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO accounts (name) VALUES ('bob')")
            .execute(&mut *tx)
            .await
            .unwrap();
        enqueue(&mut tx, ev("bob")).await.unwrap();
        tx.rollback().await.unwrap();

        let mut tx = pool.begin().await.unwrap();
        let err = enqueue(&mut tx, ev("eve").event_id(id)).await.unwrap_err();
        assert!(
            matches!(err, EnqueueError::DuplicateEventId(d) if d == id),
            "{err}"
        );
        drop(tx);
        pool.close().await;

        w.wait_emails(1).await;
        w.wait_sent(1).await;
        assert_eq!(w.count("SELECT COUNT(*) FROM herald_outbox").await, 1);
        assert_eq!(
            w.count("SELECT COUNT(*) FROM accounts WHERE name = 'bob'")
                .await,
            0
        );
        let m = &w.sink.received()[0];
        assert_eq!(m.rcpt_to, ["ada@example.com"]);
        assert_eq!(m.message_id(), format!("<{id}.notify.0@test.example>"));
    }};
}

async fn sqlx_transaction_enqueue(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let url = w.env.db.url.clone();
    match backend {
        Backend::Postgres => through_sqlx!(&w, sqlx::PgPool::connect(&url).await.unwrap()),
        Backend::Sqlite => through_sqlx!(&w, sqlx::SqlitePool::connect(&url).await.unwrap()),
    }
}

both_backends!(sqlx_transaction_enqueue);

/// PostgreSQL: the relay wakes on the trigger's NOTIFY for every kind of
/// insert (Rust's enqueue no longer notifies by itself). It polls only once an
/// hour here, so a prompt publish is the wake-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_any_insert_wakes_the_relay() {
    let w = Scenario::new(Backend::Postgres).examples().start().await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "1h"]);
    wait::until("the relay LISTENs", wait::DEFAULT, || async {
        w.count(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE application_name = 'herald relay' AND query ILIKE 'LISTEN%' \
             AND datname = current_database()",
        )
        .await
            == 1
    })
    .await;
    let txn = w.env.conn.begin().await.unwrap();
    enqueue(&txn, NewEvent::new("events.wake.rust", json!({})))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    published(&w, 1).await;
    w.env
        .conn
        .execute_unprepared("SELECT herald_enqueue('events.wake.function', '{}')")
        .await
        .unwrap();
    published(&w, 2).await;
    w.env
        .conn
        .execute_unprepared(
            "INSERT INTO herald_outbox (subject, payload) VALUES ('events.wake.insert', '{}')",
        )
        .await
        .unwrap();
    published(&w, 3).await;
}

/// Rows as they were written before the producer contract (migrations 1
/// and 2 only): one with an aggregate, one with headers the new checks
/// refuse, one published, and one pruned by retention (its seq must not be
/// handed out again).
async fn write_legacy_rows(conn: &DatabaseConnection) {
    let legacy = |id: i32, agg: Option<(&str, &str)>, headers: &str| -> Vec<Value> {
        vec![
            uuid::Uuid::now_v7().into(),
            format!("events.legacy.{id}").into(),
            agg.map(|a| a.0.to_string()).into(),
            agg.map(|a| a.1.to_string()).into(),
            agg.map(|a| format!("{}/{}", a.0, a.1)).into(),
            format!(r#"{{"n":{id}}}"#).into(),
            headers.into(),
            chrono::Utc::now().into(),
            0.into(),
        ]
    };
    let cols = [
        "event_id",
        "subject",
        "aggregate_type",
        "aggregate_id",
        "ordering_key",
        "payload",
        "headers",
        "created_at",
        "attempts",
    ];
    insert(conn, &cols, legacy(1, Some(("contract", "1")), "{}"))
        .await
        .unwrap();
    insert(conn, &cols, legacy(2, None, r#"{"bad name":"x"}"#))
        .await
        .unwrap();
    insert(conn, &cols, legacy(3, None, "{}")).await.unwrap();
    insert(conn, &cols, legacy(4, None, "{}")).await.unwrap();
    conn.execute_unprepared(
        "UPDATE herald_outbox SET published_at = created_at, stream_seq = 7 WHERE seq = 3",
    )
    .await
    .unwrap();
    // Pruned by retention: its seq must not be handed out again.
    conn.execute_unprepared("DELETE FROM herald_outbox WHERE seq = 4")
        .await
        .unwrap();
}

/// The relay's claim still works after the upgrade, and a new row's seq
/// comes after the pruned one.
async fn claim_works_and_seq_continues(conn: &DatabaseConnection) {
    // The relay's claim (one UPDATE for the batch) still works: it leases
    // the pending legacy row and is not failed by the one the rules refuse.
    let now = chrono::Utc::now();
    let claimed = herald::internals::outbox::claim(
        conn,
        "test",
        now,
        now + chrono::Duration::seconds(30),
        500,
    )
    .await
    .expect("claim after the upgrade");
    let seqs: Vec<i64> = claimed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1]);
    herald::internals::outbox::release(conn, "test", &seqs)
        .await
        .unwrap();
    insert(
        conn,
        &["subject", "payload"],
        vec!["events.new".into(), "{}".into()],
    )
    .await
    .unwrap();
    let newest = row::Entity::find()
        .order_by_desc(row::Column::Seq)
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.seq, 5, "seq continues after the pruned row");
}

/// The outbox's indexes are as migrations 1 and 2 made them.
async fn indexes_are_as_migrations_made_them(conn: &DatabaseConnection, b: DbBackend) {
    let sql = match b {
        DbBackend::Postgres => {
            "SELECT indexname AS name, indexdef AS def FROM pg_indexes \
             WHERE tablename = 'herald_outbox' AND indexname LIKE 'idx_%' ORDER BY indexname"
        }
        _ => {
            "SELECT name, sql AS def FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'herald_outbox' AND name LIKE 'idx_%' ORDER BY name"
        }
    };
    let indexes: Vec<(String, String)> = conn
        .query_all_raw(Statement::from_string(b, sql.to_string()))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "def").unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = indexes.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "idx_herald_outbox_held",
            "idx_herald_outbox_pending",
            "idx_herald_outbox_published_at"
        ]
    );
    let defs: Vec<String> = indexes
        .iter()
        .map(|i| i.1.replace("public.", "").replace(" USING btree", ""))
        .collect();
    if b == DbBackend::Sqlite {
        assert_eq!(
            defs,
            [
                "CREATE INDEX idx_herald_outbox_held ON herald_outbox (ordering_key) WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL)",
                "CREATE INDEX idx_herald_outbox_pending ON herald_outbox (seq) WHERE published_at IS NULL",
                "CREATE INDEX idx_herald_outbox_published_at ON herald_outbox (published_at) WHERE published_at IS NOT NULL",
            ]
        );
    } else {
        assert!(defs[0].contains("(ordering_key) WHERE ((published_at IS NULL) AND ((lease_until IS NOT NULL) OR (next_attempt_at IS NOT NULL)))"), "{}", defs[0]);
        assert!(
            defs[1].contains("(seq) WHERE (published_at IS NULL)"),
            "{}",
            defs[1]
        );
        assert!(
            defs[2].contains("(published_at) WHERE (published_at IS NOT NULL)"),
            "{}",
            defs[2]
        );
    }
}

/// Upgrading a database that holds rows written before the contract: every
/// row kept as it was (even one the new checks would refuse), ordering_key
/// derived, seq values and the sequence's high-water mark kept, indexes as
/// migrations 1 and 2 made them.
async fn upgrade_keeps_legacy_rows(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let conn = db.connect().await;
    Migrator::up(&conn, Some(2)).await.unwrap();
    let b = conn.get_database_backend();
    write_legacy_rows(&conn).await;
    let before = row::Entity::find()
        .order_by_asc(row::Column::Seq)
        .all(&conn)
        .await
        .unwrap();

    // The producer contract migration, alone: what it does to legacy rows
    // and indexes (later migrations add their own).
    Migrator::up(&conn, Some(1)).await.unwrap();
    let after = row::Entity::find()
        .order_by_asc(row::Column::Seq)
        .all(&conn)
        .await
        .unwrap();
    // The unpublished row the rules refuse is parked, saying why: the relay
    // could not publish it (and on PostgreSQL, which checks even NOT VALID
    // constraints on an UPDATE, it would fail every claim of its batch).
    let mut expected = before.clone();
    let bad = &after[1];
    assert!(bad.parked_at.is_some());
    assert_eq!(
        bad.last_error.as_deref(),
        Some("refused by the producer contract (herald migrate): herald_outbox_headers_valid")
    );
    expected[1].parked_at = bad.parked_at;
    expected[1].last_error = bad.last_error.clone();
    assert_eq!(expected, after, "every legacy row kept as it was");
    assert_eq!(after[0].ordering_key.as_deref(), Some("contract/1"));
    claim_works_and_seq_continues(&conn).await;

    indexes_are_as_migrations_made_them(&conn, b).await;
    // And the checks hold for new rows.
    insert(
        &conn,
        &["subject", "payload"],
        vec!["orders.x".into(), "{}".into()],
    )
    .await
    .unwrap_err();
}

both_backends!(upgrade_keeps_legacy_rows);
