//! What the worker checks and opens at start-up: the NATS server's version,
//! named PostgreSQL connections.

use super::notify;
use herald_tests::db::Backend;
use herald_tests::process::HeraldEnv;
use herald_tests::wait;

/// A nats-server older than 2.10 ignores multi-subject consumer filters, so
/// the relay and the worker refuse it at start-up. Uses the Debian 2.9 server
/// when the machine has one (the rust-svc machines do).
#[tokio::test]
async fn old_nats_server_is_refused() {
    let old = std::path::PathBuf::from("/usr/sbin/nats-server");
    let version = std::process::Command::new(&old).arg("--version").output();
    let Ok(version) = version else {
        eprintln!("no /usr/sbin/nats-server here: nothing old to refuse");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    if herald::jetstream::server_supported(version.trim().trim_start_matches("nats-server: ")) {
        eprintln!("/usr/sbin/nats-server is {version}: not old");
        return;
    }
    let nats = herald_tests::nats::NatsServer::start_bin(old, "").await;
    let db = herald_tests::db::TestDb::new(Backend::Sqlite).await;
    let mut env = HeraldEnv::default();
    let mail = tempfile::tempdir().unwrap();
    env.set("HERALD_DATABASE_URL", db.url.clone())
        .set("HERALD_NATS_URL", nats.url())
        .set(
            "HERALD_SMTP_URL",
            format!("file://{}", mail.path().display()),
        )
        .set(
            "HERALD_WORKFLOWS",
            herald_tests::example_workflows().display().to_string(),
        )
        .set("HERALD_PUBLIC_URL", "https://herald.test")
        .set("HERALD_UNSUBSCRIBE_SECRET", "test-unsubscribe-secret-0123");
    for cmd in ["relay", "worker"] {
        let out = env.run(&[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("too old"), "{cmd}: {err}");
    }
    // Refused before creating anything: the old server has no stream.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let streams: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(async_nats::jetstream::new(client).stream_names())
            .await;
    assert!(
        streams.is_empty(),
        "created on a server it refuses: {streams:?}"
    );
}

/// A long-running process opens its PostgreSQL connections at start-up
/// instead of on demand: opening one mid-run put ~90 ms on the path of
/// whichever event needed it (BENCHMARKS.md). Each role names its
/// connections, so `pg_stat_activity` tells an operator who holds what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_are_opened_at_start_and_named() {
    let w = notify(Backend::Postgres).await;
    let held = |role: &'static str| {
        let w = &w;
        async move {
            w.count(&format!(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{role}'"
            ))
            .await
        }
    };
    let _worker =
        w.h.spawn(&["worker", "--ack-wait", "2s", "--db-connections", "5"]);
    let _relay = w.relay();
    // Before any event: the pools are already full.
    wait::until("the worker holds 5 connections", wait::DEFAULT, || async {
        held("herald worker").await == 5
    })
    .await;
    wait::until(
        "the relay holds its 4 connections",
        wait::DEFAULT,
        || async { held("herald relay").await >= 4 },
    )
    .await;
    w.emit_users("events.test.a", 20).await;
    assert_eq!(
        held("herald worker").await,
        5,
        "the pool neither grew nor shrank"
    );
}
