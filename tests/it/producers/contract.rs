//! The producer contract: `enqueue` and the database agree on every case, and
//! the SQL contract is pinned.

use super::{Case, insert};
use herald::outbox;
use herald::outbox::NewEvent;
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use sea_orm::DatabaseConnection;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const OK: Case = Case {
    subject: "events.contract.signed",
    payload: serde_json::Value::Null,
    aggregate: None,
    headers: &[],
};

/// Every case compared: subjects, payloads, aggregates and headers, each
/// varied from `OK` (payload sizes around `max`).
fn contract_cases(max: usize) -> Vec<Case> {
    let mut cases = vec![];
    for subject in [
        "events.a",
        "events.a.b-c_d",
        "events.é",
        "events",
        "events.",
        "orders.a",
        "events..a",
        "events.a.",
        ".events.a",
        "events.a b",
        "events.a\tb",
        "events.a\u{a0}",
        "events.a\u{3000}",
        "events.*",
        "events.a.>",
        "events.a*",
        "",
        "Events.a",
    ] {
        cases.push(Case { subject, ..OK });
    }
    for payload in [
        json!([1]),
        json!("s"),
        json!(1),
        json!(true),
        json!({"k": "x".repeat(max - 8)}),
        json!({"k": "x".repeat(max - 7)}),
        json!({"nested": {"a": [1, null]}}),
    ] {
        cases.push(Case { payload, ..OK });
    }
    for aggregate in [
        ("contract", "42"),
        ("a.b-c_D9", "id with spaces/and slashes"),
        ("a/b", "1"),
        ("", "1"),
        ("a b", "1"),
        ("vault", ""),
        ("vault", "7\n8"),
        ("vault", "7\r8"),
    ] {
        cases.push(Case {
            aggregate: Some(aggregate),
            ..OK
        });
    }
    let header_cases: [&[(&str, &str)]; 14] = [
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
        &[("X-Tab", "a\tb")],
        &[("Nats-Msg-Id", "x")],
        &[("nats-msg-id", "x")],
        &[("Herald-Aggregate", "x")],
        &[("herald-x", "x")],
        &[("Heralds", "x")],
        &[("a b", "x")],
        &[("a:b", "x")],
        &[("café", "x")],
        &[("", "x")],
        &[("x", "a\r\nb")],
        &[("x", "a\nb")],
        &[("ok", "1"), ("Herald-X", "2")],
    ];
    for headers in header_cases {
        cases.push(Case { headers, ..OK });
    }
    cases
}

/// Where `validate` and the database disagree on one case, what each said.
async fn disagreement(
    conn: &DatabaseConnection,
    opts: &outbox::EnqueueOptions,
    case: Case,
) -> Option<String> {
    let payload = if case.payload.is_null() {
        json!({"contract_id": 1})
    } else {
        case.payload.clone()
    };
    let mut ev = NewEvent::new(case.subject, payload.clone());
    if let Some((t, i)) = case.aggregate {
        ev = ev.aggregate(t, i);
    }
    let headers: BTreeMap<&str, &str> = case.headers.iter().copied().collect();
    for (k, v) in &headers {
        ev = ev.header(*k, *v);
    }
    let rust = outbox::validate(&ev, opts);
    let txn = conn.begin().await.unwrap();
    let database = insert(
        &txn,
        &[
            "subject",
            "payload",
            "aggregate_type",
            "aggregate_id",
            "headers",
        ],
        vec![
            case.subject.into(),
            payload.to_string().into(),
            case.aggregate.map(|a| a.0.to_string()).into(),
            case.aggregate.map(|a| a.1.to_string()).into(),
            serde_json::to_string(&headers).unwrap().into(),
        ],
    )
    .await;
    txn.rollback().await.unwrap();
    if rust.is_ok() != database.is_ok() {
        return Some(format!(
            "subject {:?}, payload {} bytes, aggregate {:?}, headers {:?}: enqueue {:?}, database {:?}",
            case.subject,
            payload.to_string().len(),
            case.aggregate,
            headers,
            rust.err().map(|e| e.to_string()),
            database.err().map(|e| e.to_string()),
        ));
    }
    None
}

/// Rust's `validate` and the database's checks accept and refuse the same
/// events: a row one accepts, the other does too.
async fn enqueue_and_the_database_agree(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let max = outbox::DEFAULT_MAX_PAYLOAD;
    let cases = contract_cases(max);
    let opts = outbox::EnqueueOptions::default();
    let mut disagreements = vec![];
    for case in cases {
        if let Some(d) = disagreement(&conn, &opts, case).await {
            disagreements.push(d);
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

both_backends!(enqueue_and_the_database_agree);

/// PostgreSQL's outbox columns as (name, insertable, required), after
/// checking `herald_enqueue`'s signature and the NOTIFY trigger.
async fn postgres_columns(conn: &DatabaseConnection) -> Vec<(String, bool, bool)> {
    let b = conn.get_database_backend();
    let q = |sql: &str| Statement::from_string(b, sql.to_string());
    let mut columns = vec![];
    let rows = conn
        .query_all_raw(q(
            "SELECT p.oid::regprocedure::text AS ident, pg_get_function_arguments(p.oid) AS args, \
             pg_get_function_result(p.oid) AS result FROM pg_proc p WHERE p.proname = 'herald_enqueue'",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one herald_enqueue, no overloads");
    let get = |k: &str| rows[0].try_get::<String>("", k).unwrap();
    assert_eq!(
        get("args"),
        "subject text, payload jsonb, aggregate_type text DEFAULT NULL::text, \
         aggregate_id text DEFAULT NULL::text, headers jsonb DEFAULT '{}'::jsonb, \
         event_id uuid DEFAULT NULL::uuid"
    );
    assert_eq!(get("result"), "uuid");
    for r in conn
        .query_all_raw(q(
            "SELECT column_name::text AS name, is_nullable::text AS nullable, \
             column_default IS NOT NULL AS has_default, is_generated::text AS generated, \
             is_identity::text AS identity \
             FROM information_schema.columns WHERE table_name = 'herald_outbox'",
        ))
        .await
        .unwrap()
    {
        let s = |k: &str| r.try_get::<String>("", k).unwrap();
        let insertable = s("generated") == "NEVER";
        let required = insertable
            && s("nullable") == "NO"
            && !r.try_get::<bool>("", "has_default").unwrap()
            && s("identity") == "NO";
        columns.push((s("name"), insertable, required));
    }
    // The relay wakes on any insert: the trigger on the documented channel.
    let n = conn
        .query_one_raw(q(&format!(
            "SELECT COUNT(*) AS n FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
             WHERE t.tgrelid = 'herald_outbox'::regclass AND t.tgname = 'herald_outbox_notify' \
             AND p.prosrc LIKE '%pg_notify(''{}''%'",
            outbox::NOTIFY_CHANNEL
        )))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(
        n,
        1,
        "the NOTIFY trigger on channel {}",
        outbox::NOTIFY_CHANNEL
    );
    columns
}

/// SQLite's outbox columns as (name, insertable, required).
async fn sqlite_columns(conn: &DatabaseConnection) -> Vec<(String, bool, bool)> {
    let b = conn.get_database_backend();
    let q = |sql: &str| Statement::from_string(b, sql.to_string());
    let mut columns = vec![];
    for r in conn
        .query_all_raw(q(
            "SELECT name, \"notnull\" AS nn, dflt_value IS NOT NULL AS has_default, pk, hidden \
             FROM pragma_table_xinfo('herald_outbox')",
        ))
        .await
        .unwrap()
    {
        let i = |k: &str| r.try_get::<i64>("", k).unwrap();
        let insertable = i("hidden") == 0;
        let required = insertable && i("nn") == 1 && i("has_default") == 0 && i("pk") == 0;
        columns.push((r.try_get("", "name").unwrap(), insertable, required));
    }
    columns
}

/// The contract cannot change by accident: herald_enqueue's signature, the
/// columns a producer may insert, and that only subject and payload are
/// required. A migration that breaks docs/producers.md fails here.
async fn producer_contract_is_pinned(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let contract: BTreeSet<&str> = [
        "subject",
        "payload",
        "aggregate_type",
        "aggregate_id",
        "headers",
        "event_id",
    ]
    .into();
    // (name, insertable, required)
    let columns = match backend {
        Backend::Postgres => postgres_columns(&conn).await,
        Backend::Sqlite => sqlite_columns(&conn).await,
    };
    let insertable: BTreeSet<&str> = columns
        .iter()
        .filter(|c| c.1)
        .map(|c| c.0.as_str())
        .collect();
    let required: BTreeSet<&str> = columns
        .iter()
        .filter(|c| c.2)
        .map(|c| c.0.as_str())
        .collect();
    assert!(
        contract.is_subset(&insertable),
        "insertable columns {insertable:?} lack some of {contract:?}"
    );
    assert_eq!(required, ["payload", "subject"].into());
    assert!(
        columns.iter().any(|c| c.0 == "ordering_key" && !c.1),
        "ordering_key is derived by the database"
    );
}

both_backends!(producer_contract_is_pinned);
