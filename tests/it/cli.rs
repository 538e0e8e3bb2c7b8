//! The CLI contract: exit codes, one-line errors, idempotent migrate.
use herald_entities::outbox as row;
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use herald_tests::process::HeraldEnv;
use sea_orm::{EntityTrait, PaginatorTrait};

fn env_for(db: &TestDb) -> HeraldEnv {
    let mut env = HeraldEnv::default();
    env.set("HERALD_DATABASE_URL", db.url.clone());
    env
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn migrate_twice_is_a_noop(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let env = env_for(&db);
    let first = env.run(&["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied"));
    let second = env.run(&["migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "schema is up to date"
    );
}

async fn emit_writes_one_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env = env_for(&db);
    let out = env.run(&[
        "emit",
        "--subject",
        "events.contract.signed",
        "--payload",
        r#"{"contract_id": 7}"#,
        "--aggregate",
        "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id: uuid::Uuid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let conn = db.connect().await;
    let r = row::Entity::find().one(&conn).await.unwrap().unwrap();
    assert_eq!(r.event_id, id);
    assert_eq!(r.aggregate_type.as_deref(), Some("contract"));
    assert_eq!(r.aggregate_id.as_deref(), Some("7"));
}

async fn emit_bad_input_exits_2_and_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env = env_for(&db);
    let cases: [(&[&str], &str); 4] = [
        (
            &["emit", "--subject", "events.a", "--payload", "{not json"],
            "invalid JSON",
        ),
        (
            &["emit", "--subject", "orders.created", "--payload", "{}"],
            "invalid subject",
        ),
        (
            &["emit", "--subject", "events.a b", "--payload", "{}"],
            "invalid subject",
        ),
        (
            &["emit", "--subject", "events.a", "--payload", "[1,2]"],
            "JSON object",
        ),
    ];
    for (args, needle) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("herald: "), "one clear line: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let conn = db.connect().await;
    assert_eq!(row::Entity::find().count(&conn).await.unwrap(), 0);
}

/// `emit --jsonl`: 2,500 events over three transactions, ids printed in
/// input order, columns as given; a file with bad lines names each line and
/// inserts nothing.
async fn emit_jsonl_inserts_in_batches_or_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env = env_for(&db);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("events.jsonl");
    let fixed = "0195d3c2-0000-7000-8000-000000000001";
    let mut text = String::new();
    for i in 0..2500 {
        let line = match i {
            0 => serde_json::json!({"subject": "events.contract.signed", "payload": {"n": i},
                "aggregate_type": "contract", "aggregate_id": "7", "event_id": fixed,
                "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}),
            _ => serde_json::json!({"subject": "events.contract.signed", "payload": {"n": i},
                "aggregate_id": (i % 10).to_string()}),
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&good, text).unwrap();
    let out = env.run(&["emit", "--jsonl", good.to_str().unwrap(), "--batch", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<uuid::Uuid> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2500);
    assert_eq!(ids[0].to_string(), fixed);
    let conn = db.connect().await;
    let rows = row::Entity::find().all(&conn).await.unwrap();
    assert_eq!(rows.len(), 2500);
    let first = rows.iter().find(|r| r.event_id == ids[0]).unwrap();
    assert_eq!(first.ordering_key.as_deref(), Some("contract/7"));
    assert!(first.headers.contains("traceparent"), "{}", first.headers);
    // Input order is seq order: the relay publishes each aggregate in it.
    let mut by_seq = rows.clone();
    by_seq.sort_by_key(|r| r.seq);
    assert_eq!(by_seq.iter().map(|r| r.event_id).collect::<Vec<_>>(), ids);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"subject\":\"events.a\",\"payload\":{}}\n{\"subject\":\"orders.a\",\"payload\":{}}\nnot json\n",
    )
    .unwrap();
    let out = env.run(&["emit", "--jsonl", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("bad.jsonl:2: subject"), "{err}");
    assert!(err.contains("bad.jsonl:3: invalid JSON"), "{err}");
    assert_eq!(row::Entity::find().count(&conn).await.unwrap(), 2500);
}

both_backends!(
    migrate_twice_is_a_noop,
    emit_writes_one_row,
    emit_bad_input_exits_2_and_writes_nothing,
    emit_jsonl_inserts_in_batches_or_nothing
);

#[test]
fn unreachable_database_exits_1() {
    let port = herald_tests::free_port();
    let mut env = HeraldEnv::default();
    env.set(
        "HERALD_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{port}/nothing"),
    );
    let out = env.run(&["emit", "--subject", "events.a", "--payload", "{}"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to database"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["migrate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn bad_database_url_exits_2() {
    let mut env = HeraldEnv::default();
    env.set("HERALD_DATABASE_URL", "mysql://localhost/x");
    let out = env.run(&["migrate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid database URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_explains_commands() {
    let out = HeraldEnv::default().run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["migrate", "emit", "HERALD_DATABASE_URL", "Exit codes"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
}

/// Relays and workers started together on a new database each migrate it:
/// concurrent migrations must all succeed.
async fn concurrent_migrations_all_succeed(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let env = env_for(&db);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || env.run(&["migrate"]))
        })
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

both_backends!(concurrent_migrations_all_succeed);

/// A command about what Herald has done, pointed at a SQLite file that does
/// not exist, says so and creates nothing: the default URL would create an
/// empty Herald, where `herald dlq list` in the wrong directory reports no
/// dead letters, and a replay sends every email again (its empty ledger
/// has none of them sent), suppressed addresses included. A database that
/// exists but has no Herald tables (an empty file) is refused alike, and
/// none of them creates the tables.
#[test]
fn read_commands_do_not_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.db");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let mut env = HeraldEnv::default();
    env.set(
        "HERALD_WORKFLOWS",
        herald_tests::example_workflows().display().to_string(),
    );
    let welcome = "contract-signed-welcome";
    for (url, says) in [
        (
            format!("sqlite://{}?mode=rwc", file.display()),
            "no database at",
        ),
        (format!("sqlite://{}", file.display()), "no database at"),
        (
            format!("sqlite://{}?mode=rwc", empty.display()),
            "has no Herald tables",
        ),
    ] {
        env.set("HERALD_DATABASE_URL", url);
        refused_everywhere(&env, welcome, says);
        assert!(!file.exists(), "created {}", file.display());
    }
    // Opening the empty file wrote SQLite's header, but no command gave it
    // Herald's tables: the first is refused as before.
    refused_everywhere(&env, welcome, "has no Herald tables");
}

/// A PostgreSQL database without Herald's tables (a new one, a misspelt
/// name) is refused alike, and none of the commands gives it the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_refuse_a_postgres_database_without_herald() {
    let db = TestDb::empty(Backend::Postgres).await;
    let mut env = HeraldEnv::default();
    env.set(
        "HERALD_WORKFLOWS",
        herald_tests::example_workflows().display().to_string(),
    )
    .set("HERALD_DATABASE_URL", db.url.clone());
    tokio::task::spawn_blocking(move || {
        refused_everywhere(&env, "contract-signed-welcome", "has no Herald tables");
        refused_everywhere(&env, "contract-signed-welcome", "has no Herald tables");
    })
    .await
    .unwrap();
}

fn refused_everywhere(env: &HeraldEnv, welcome: &str, says: &str) {
    for args in [
        &["status"][..],
        &["dlq", "list"],
        &["trace", "0195d3c2-0000-7000-8000-000000000001"],
        &[
            "replay",
            "--workflow",
            welcome,
            "--since",
            "1h",
            "--smtp-url",
            "file:///dev/null",
        ],
        &[
            "replay",
            "--workflow",
            welcome,
            "--since",
            "1h",
            "--dry-run",
        ],
        &["dlq", "retry", "--all", "--smtp-url", "file:///dev/null"],
        &["suppressions", "list"],
        &["suppressions", "add", "a@example.com"],
        &["unsubscribes", "list"],
        &["outbox", "prune", "--older-than", "1d"],
        &["outbox", "retry"],
    ] {
        let out = env.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
