//! Producers in any language (docs/producers.md): the outbox's SQL contract
//! used from Python, TypeScript, plain SQL and Rust's sqlx, against real
//! PostgreSQL/SQLite, a real nats-server, relay and worker processes and the
//! SMTP sink. The Python and TypeScript examples under `examples/` run as they
//! are (their pinned dependencies are installed by scripts/setup.sh).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use herald::outbox::{self, EnqueueError, NewEvent, enqueue, sqlx};
use herald_entities::outbox as row;
use herald_migration::{Migrator, MigratorTrait};
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use herald_tests::process::Herald;
use herald_tests::wait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryOrder, RuntimeErr,
    Statement, TransactionTrait, Value,
};
use serde_json::json;

use crate::worker::FAST_RETRY;
use herald_tests::scenario::{Scenario, World};

fn root() -> PathBuf {
    herald_tests::workspace_root()
}

/// `python3 SCRIPT` with the examples' pinned packages (`.tools/py`).
fn python(script: &str) -> tokio::process::Command {
    let site = root().join(".tools/py");
    assert!(
        site.join("psycopg").is_dir() && site.join("sqlalchemy").is_dir(),
        "{} lacks the examples' Python packages: run scripts/setup.sh",
        site.display()
    );
    let mut c = tokio::process::Command::new("python3");
    c.arg(root().join(script)).env("PYTHONPATH", site);
    c
}

/// `tsx SCRIPT` from `examples/ts` (its pinned node_modules).
fn tsx(script: &str) -> tokio::process::Command {
    let dir = root().join("examples/ts");
    let bin = dir.join("node_modules/.bin/tsx");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh",
        bin.display()
    );
    let mut c = tokio::process::Command::new(bin);
    c.arg(dir.join(script)).current_dir(dir);
    c
}

async fn run(mut c: tokio::process::Command, args: &[&str]) -> Output {
    c.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TRACEPARENT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("example finished within 120 s")
        .expect("example started")
}

/// The example succeeded; its stdout's lines (event ids).
fn ok_lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "example failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The example rolled back on purpose (`--fail`): exit 1, says so.
fn rolled_back(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
}

fn sqlite_path(db: &TestDb) -> String {
    let rest = db.url.trim_start_matches("sqlite://");
    rest.split('?').next().unwrap_or(rest).to_string()
}

/// The test database as a SQLAlchemy URL.
fn sqlalchemy_url(db: &TestDb) -> String {
    match db.backend {
        Backend::Postgres => db.url.replacen("postgres://", "postgresql+psycopg://", 1),
        Backend::Sqlite => format!("sqlite:///{}", sqlite_path(db)),
    }
}

/// A worker at its default concurrency: it keeps each aggregate's order
/// itself (lanes), so the sink sees every aggregate's emails in order.
fn in_order_worker(w: &World) -> Herald {
    w.h.spawn(&["worker", "--ack-wait", "60s"])
}

/// After one committed and one rolled-back signature: exactly one welcome
/// email, for the committed event; no trace of the other.
async fn one_welcome_email(w: &World, event_id: &str, signed: i64, rolled_back: i64) {
    w.wait_emails(1).await;
    w.wait_sent(1).await;
    assert_eq!(w.env.unpublished().await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_outbox").await,
        1,
        "the rolled-back event left no outbox row"
    );
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM contracts WHERE id = {rolled_back}"
        ))
        .await,
        0,
        "the rolled-back contract change is gone too"
    );
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM contracts WHERE id = {signed} AND status = 'signed'"
        ))
        .await,
        1
    );
    let got = w.sink.received();
    assert_eq!(got.len(), 1, "exactly one email");
    assert_eq!(got[0].rcpt_to, vec!["alex@example.com".to_string()]);
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("Welcome to U12 Tigers, Sam Lee")
    );
    assert_eq!(
        got[0].message_id(),
        format!("<{event_id}.contract-signed-welcome.0@club.example>")
    );
}

/// Case 1 from a SQLAlchemy service: herald_enqueue on PostgreSQL, the plain
/// INSERT (event id as 16 bytes) on SQLite.
async fn python_sqlalchemy_contract_signed(backend: Backend) {
    let w = Scenario::new(backend).examples().start().await;
    let _relay = w.relay();
    let _worker = w.worker();
    let url = sqlalchemy_url(&w.env.db);
    let script = "examples/python/contract_signed_sqlalchemy.py";
    rolled_back(&run(python(script), &[&url, "--contract-id", "43", "--fail"]).await);
    let ids = ok_lines(&run(python(script), &[&url, "--contract-id", "42"]).await);
    one_welcome_email(&w, &ids[0], 42, 43).await;
}

both_backends!(python_sqlalchemy_contract_signed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_psycopg_contract_signed() {
    let w = Scenario::new(Backend::Postgres).examples().start().await;
    let _relay = w.relay();
    let _worker = w.worker();
    let script = "examples/python/contract_signed_psycopg.py";
    let url = w.env.db.url.clone();
    rolled_back(&run(python(script), &[&url, "--contract-id", "43", "--fail"]).await);
    let ids = ok_lines(&run(python(script), &[&url, "--contract-id", "42"]).await);
    one_welcome_email(&w, &ids[0], 42, 43).await;
}

/// The SvelteKit route with raw `pg`: BEGIN, contract, herald_enqueue, COMMIT
/// (ROLLBACK on error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_pg_contract_signed() {
    let w = Scenario::new(Backend::Postgres).examples().start().await;
    let _relay = w.relay();
    let _worker = w.worker();
    let script = "sveltekit-contract-signed.ts";
    let url = w.env.db.url.clone();
    rolled_back(&run(tsx(script), &[&url, "--contract-id", "43", "--fail"]).await);
    let ids = ok_lines(&run(tsx(script), &[&url, "--contract-id", "42"]).await);
    one_welcome_email(&w, &ids[0], 42, 43).await;
}

/// Case 2 from Knex: four changes of one vault, each with its event through a
/// plain INSERT in the change's transaction; the owners get four emails in
/// order. A failed change leaves neither vault nor event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_knex_vault_lifecycle() {
    let w = Scenario::new(Backend::Postgres).examples().start().await;
    let _relay = w.relay();
    let _worker = in_order_worker(&w);
    let script = "knex-vault-lifecycle.ts";
    let url = w.env.db.url.clone();
    rolled_back(&run(tsx(script), &[&url, "create", "v-9", "--fail"]).await);
    let ids = ok_lines(&run(tsx(script), &[&url, "lifecycle", "v-1"]).await);
    assert_eq!(ids.len(), 4);
    // created, archived and deleted go at once; the update waits in its
    // vault's digest (vault-updates: 10 minutes from the first update).
    w.wait_emails(3).await;
    w.wait_sent(3).await;
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 1)
        .await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_outbox").await, 4);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM vaults WHERE id = 'v-9'")
            .await,
        0
    );
    let got = w.sink.received();
    let subjects: Vec<String> = got
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        ["created", "archived", "deleted"].map(|c| format!("Vault Vault v-1 {c}"))
    );
    for (m, id) in got.iter().zip([&ids[0], &ids[2], &ids[3]]) {
        assert_eq!(m.rcpt_to, ["kim@example.com", "lee@example.com"]);
        assert_eq!(
            m.message_id(),
            format!("<{id}.vault-lifecycle.0@storage.example>")
        );
    }
}

/// The TypeScript examples compile under `tsc --strict`.
#[tokio::test]
async fn typescript_examples_typecheck() {
    let dir = root().join("examples/ts");
    let out = run(
        {
            let mut c = tokio::process::Command::new(dir.join("node_modules/.bin/tsc"));
            c.current_dir(&dir);
            c
        },
        &["--noEmit", "-p", "."],
    )
    .await;
    ok_lines(&out);
}

/// The minimal contract: `INSERT INTO herald_outbox (subject, payload)`, every
/// other column the database's, is published and delivered.
async fn plain_insert_of_subject_and_payload_delivers(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    w.env
        .conn
        .execute_unprepared(
            r#"INSERT INTO herald_outbox (subject, payload) VALUES ('events.test.plain', '{"email": "plain@example.com", "name": "Plain"}')"#,
        )
        .await
        .unwrap();
    w.wait_emails(1).await;
    w.wait_sent(1).await;
    let r = row::Entity::find().one(&w.env.conn).await.unwrap().unwrap();
    assert!(r.published_at.is_some());
    assert_eq!(r.headers, "{}");
    assert_eq!(r.ordering_key, None);
    let m = &w.sink.received()[0];
    assert_eq!(m.rcpt_to, ["plain@example.com"]);
    assert_eq!(
        m.message_id(),
        format!("<{}.notify.0@test.example>", r.event_id)
    );
}

both_backends!(plain_insert_of_subject_and_payload_delivers);

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

fn sqlstate(e: &DbErr) -> Option<String> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}

/// What the relay could not publish, the database refuses, and its error
/// names the field (the constraint, or the trigger's message).
async fn database_refuses_rows_the_relay_cannot_publish(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let at_limit = format!(
        r#"{{"k":"{}"}}"#,
        "x".repeat(outbox::DEFAULT_MAX_PAYLOAD - 8)
    );
    assert_eq!(at_limit.len(), outbox::DEFAULT_MAX_PAYLOAD);
    let over_limit = format!(
        r#"{{"k":"{}"}}"#,
        "x".repeat(outbox::DEFAULT_MAX_PAYLOAD - 7)
    );
    let sp = |subject: &str, payload: &str| -> (Vec<&'static str>, Vec<Value>) {
        (
            vec!["subject", "payload"],
            vec![subject.into(), payload.into()],
        )
    };
    let with = |col: &'static str, v: Value| -> (Vec<&'static str>, Vec<Value>) {
        (
            vec!["subject", "payload", col],
            vec!["events.a".into(), "{}".into(), v],
        )
    };
    let agg = |t: &str, i: Option<&str>| -> (Vec<&'static str>, Vec<Value>) {
        (
            vec!["subject", "payload", "aggregate_type", "aggregate_id"],
            vec![
                "events.a".into(),
                "{}".into(),
                t.into(),
                i.map(str::to_string).into(),
            ],
        )
    };
    let mut cases = vec![
        (
            sp("orders.created", "{}"),
            "herald_outbox_subject_under_events",
        ),
        (sp("events..created", "{}"), "herald_outbox_subject_valid"),
        (sp("events.a b", "{}"), "herald_outbox_subject_valid"),
        (sp("events.>", "{}"), "herald_outbox_subject_valid"),
        (sp("events.a", "[1, 2]"), "herald_outbox_payload_object"),
        (sp("events.a", r#""text""#), "herald_outbox_payload_object"),
        (sp("events.a", "{not json"), "herald_outbox_payload_object"),
        (sp("events.a", &over_limit), "herald_outbox_payload_size"),
        (
            with("headers", r#"{"Herald-X": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            with("headers", r#"{"Nats-Msg-Id": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            with("headers", r#"{"a b": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            with("headers", r#"{"n": 1}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            with("headers", r#"{"x": "a\r\nb"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (with("headers", "[]".into()), "herald_outbox_headers_valid"),
        (agg("a/b", Some("1")), "herald_outbox_aggregate_type_valid"),
        (agg("contract", None), "herald_outbox_aggregate_pair"),
        (
            agg("contract", Some("1\n2")),
            "herald_outbox_aggregate_id_valid",
        ),
    ];
    if backend == Backend::Sqlite {
        // The text of a UUID where SQLite needs its 16 bytes.
        cases.push((
            with("event_id", "0190b6c3-1b2a-7c3d-8e4f-0123456789ab".into()),
            "herald_outbox_event_id_bytes",
        ));
    }
    for ((cols, values), constraint) in cases {
        let what = format!(
            "{cols:?} = {:?}",
            values
                .iter()
                .map(|v| v.to_string().chars().take(60).collect::<String>())
                .collect::<Vec<_>>()
        );
        let err = insert(&conn, &cols, values)
            .await
            .expect_err(&format!("refused: {what}"));
        assert!(
            err.to_string().contains(constraint),
            "{what}: expected {constraint} in: {err}"
        );
    }
    let (cols, values) = sp("events.a", &at_limit);
    insert(&conn, &cols, values)
        .await
        .expect("1 MiB exactly is accepted");
    assert_eq!(
        row::Entity::find().all(&conn).await.unwrap().len(),
        1,
        "nothing but the row at the limit"
    );
    if backend == Backend::Postgres {
        herald_enqueue_errors_name_the_field(&conn).await;
    }
}

both_backends!(database_refuses_rows_the_relay_cannot_publish);

/// herald_enqueue's errors: SQLSTATE 22023 (23505 for a duplicate id), text
/// naming the field.
async fn herald_enqueue_errors_name_the_field(conn: &DatabaseConnection) {
    let cases = [
        (
            "SELECT herald_enqueue('orders.x', '{}')",
            r#"herald_enqueue: subject "orders.x" must start with "events.""#,
        ),
        (
            "SELECT herald_enqueue('events.a..b', '{}')",
            r#"herald_enqueue: subject "events.a..b" is not a valid NATS subject"#,
        ),
        (
            "SELECT herald_enqueue('events.a', '[1]')",
            "herald_enqueue: payload must be a JSON object, got array",
        ),
        (
            &format!(
                "SELECT herald_enqueue('events.a', jsonb_build_object('k', repeat('x', {})))",
                outbox::DEFAULT_MAX_PAYLOAD
            ),
            "herald_enqueue: payload is 1048585 bytes, over the limit of 1048576 bytes",
        ),
        (
            "SELECT herald_enqueue('events.a', '{}', 'contract')",
            "herald_enqueue: aggregate_type and aggregate_id go together",
        ),
        (
            "SELECT herald_enqueue('events.a', '{}', 'a b', '1')",
            r#"herald_enqueue: aggregate_type "a b" must be letters"#,
        ),
        (
            r#"SELECT herald_enqueue('events.a', '{}', headers => '{"Herald-Seq": "1"}')"#,
            r#"herald_enqueue: header "Herald-Seq" is reserved for Herald"#,
        ),
        (
            r#"SELECT herald_enqueue('events.a', '{}', headers => '{"n": 1}')"#,
            r#"herald_enqueue: header "n" must be a string, got number"#,
        ),
    ];
    for (sql, message) in cases {
        let err = conn.execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains(message), "{sql}: {err}");
        assert_eq!(sqlstate(&err).as_deref(), Some("22023"), "{sql}: {err}");
    }
    let id = uuid::Uuid::now_v7();
    let sql = format!("SELECT herald_enqueue('events.a', '{{}}', event_id => '{id}')");
    conn.execute_unprepared(&sql).await.unwrap();
    let err = conn.execute_unprepared(&sql).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "herald_enqueue: event_id {id} is already in the outbox"
        )),
        "{err}"
    );
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
}

/// One case of the agreement test: an event in parts.
struct Case {
    subject: &'static str,
    payload: serde_json::Value,
    aggregate: Option<(&'static str, &'static str)>,
    headers: &'static [(&'static str, &'static str)],
}

const OK: Case = Case {
    subject: "events.contract.signed",
    payload: serde_json::Value::Null,
    aggregate: None,
    headers: &[],
};

/// Rust's `validate` and the database's checks accept and refuse the same
/// events: a row one accepts, the other does too.
async fn enqueue_and_the_database_agree(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let max = outbox::DEFAULT_MAX_PAYLOAD;
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
    let opts = outbox::EnqueueOptions::default();
    let mut disagreements = vec![];
    for case in cases {
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
        let rust = outbox::validate(&ev, &opts);
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
            disagreements.push(format!(
                "subject {:?}, payload {} bytes, aggregate {:?}, headers {:?}: enqueue {:?}, database {:?}",
                case.subject,
                payload.to_string().len(),
                case.aggregate,
                headers,
                rust.err().map(|e| e.to_string()),
                database.err().map(|e| e.to_string()),
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

both_backends!(enqueue_and_the_database_agree);

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
    let b = conn.get_database_backend();
    let q = |sql: &str| Statement::from_string(b, sql.to_string());
    // (name, insertable, required)
    let mut columns: Vec<(String, bool, bool)> = vec![];
    match backend {
        Backend::Postgres => {
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
        }
        Backend::Sqlite => {
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
                let required =
                    insertable && i("nn") == 1 && i("has_default") == 0 && i("pk") == 0;
                columns.push((r.try_get("", "name").unwrap(), insertable, required));
            }
        }
    }
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

/// 1,000 events from Python through herald_enqueue, in 10 concurrent
/// transactions: each delivered exactly once, each aggregate's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_thousand_events_in_ten_concurrent_transactions() {
    const EVENTS: usize = 1000;
    let w = Scenario::new(Backend::Postgres)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = in_order_worker(&w);
    let out = run(
        python("tests/producers/enqueue_many.py"),
        &[&w.env.db.url, "10", "5", &EVENTS.to_string()],
    )
    .await;
    assert_eq!(ok_lines(&out), [EVENTS.to_string()]);
    wait::until(
        "1,000 emails reach the sink",
        Duration::from_secs(300),
        || async { w.sink.count() >= EVENTS },
    )
    .await;
    w.wait_sent(EVENTS as i64).await;
    let got = w.sink.received();
    assert_eq!(got.len(), EVENTS, "no email twice");
    let ids: BTreeSet<String> = got.iter().map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), EVENTS, "one Message-ID per event");
    // Subject "Hello agg-T-A N": N counts up per aggregate.
    let mut next: HashMap<String, u64> = HashMap::new();
    for m in &got {
        let subject = m.header("Subject").unwrap_or_default();
        let (agg, n) = subject
            .trim_start_matches("Hello ")
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("unexpected subject {subject:?}"));
        let expected = next.entry(agg.to_string()).or_insert(0);
        assert_eq!(n.parse::<u64>().unwrap(), *expected, "{agg}: out of order");
        *expected += 1;
    }
    assert_eq!(next.len(), 50, "10 transactions x 5 aggregates");
    assert!(next.values().all(|&n| n == 20));
}

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
             WHERE application_name = 'herald relay' AND query ILIKE 'LISTEN%'",
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

/// Upgrading a database that holds rows written before the contract: every
/// row kept as it was (even one the new checks would refuse), ordering_key
/// derived, seq values and the sequence's high-water mark kept, indexes as
/// migrations 1 and 2 made them.
async fn upgrade_keeps_legacy_rows(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let conn = db.connect().await;
    Migrator::up(&conn, Some(2)).await.unwrap();
    let b = conn.get_database_backend();
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
    insert(&conn, &cols, legacy(1, Some(("contract", "1")), "{}"))
        .await
        .unwrap();
    insert(&conn, &cols, legacy(2, None, r#"{"bad name":"x"}"#))
        .await
        .unwrap();
    insert(&conn, &cols, legacy(3, None, "{}")).await.unwrap();
    insert(&conn, &cols, legacy(4, None, "{}")).await.unwrap();
    conn.execute_unprepared(
        "UPDATE herald_outbox SET published_at = created_at, stream_seq = 7 WHERE seq = 3",
    )
    .await
    .unwrap();
    // Pruned by retention: its seq must not be handed out again.
    conn.execute_unprepared("DELETE FROM herald_outbox WHERE seq = 4")
        .await
        .unwrap();
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
    // The relay's claim (one UPDATE for the batch) still works: it leases
    // the pending legacy row and is not failed by the one the rules refuse.
    let now = chrono::Utc::now();
    let claimed = herald::internals::outbox::claim(
        &conn,
        "test",
        now,
        now + chrono::Duration::seconds(30),
        500,
    )
    .await
    .expect("claim after the upgrade");
    let seqs: Vec<i64> = claimed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1]);
    herald::internals::outbox::release(&conn, "test", &seqs)
        .await
        .unwrap();
    insert(
        &conn,
        &["subject", "payload"],
        vec!["events.new".into(), "{}".into()],
    )
    .await
    .unwrap();
    let newest = row::Entity::find()
        .order_by_desc(row::Column::Seq)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.seq, 5, "seq continues after the pruned row");

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
