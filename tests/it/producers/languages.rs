//! The Python and TypeScript producer examples run as they are, against both
//! databases, through relay and worker to the SMTP sink.

use crate::worker::FAST_RETRY;
use herald_tests::db::{Backend, TestDb};
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::{both_backends, wait};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

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
