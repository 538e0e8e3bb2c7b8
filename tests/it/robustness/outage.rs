//! Outages of SMTP (refused, down, hung, TLS, DNS), NATS and the database: nothing
//! counted or dead-lettered, `/readyz` names the part that is down.

use super::{NUMBERED, readyz};
use herald_tests::db::Backend;
use herald_tests::scenario::{Scenario, World};
use herald_tests::smtp::Outage;
use herald_tests::{both_backends, wait};
use std::time::{Duration, Instant};

/// Wait until `/readyz` answers 503 naming the SMTP outage and `detail`.
async fn readyz_names_smtp_outage(addr: &str, detail: &str) {
    wait::until(
        &format!("/readyz names the SMTP outage ({detail})"),
        wait::DEFAULT,
        || async {
            readyz(addr).await.is_some_and(|r| {
                r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing") && r.contains(detail)
            })
        },
    )
    .await
}

/// Let an outage go on for `secs` (the condition is the time itself).
async fn outage_lasts(secs: u64) {
    let since = Instant::now();
    wait::until(
        &format!("the outage has lasted {secs} s"),
        wait::DEFAULT,
        || async { since.elapsed() >= Duration::from_secs(secs) },
    )
    .await
}

/// After an outage: every event emailed exactly once, nothing dead-lettered,
/// no attempt counted for it.
async fn delivered_once_nothing_counted(w: &World, n: usize) {
    w.wait_sent(n as i64).await;
    assert_eq!(w.sink.count(), n, "each email once");
    assert_eq!(w.sink.distinct_recipients().len(), n);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts <> 1")
            .await,
        0,
        "the outage cost no attempt"
    );
}

/// An SMTP server refusing connections for ~3 seconds used to dead-letter
/// every event in flight (each burnt its attempts on "Connection refused").
/// Now the transport is down, deliveries wait, nothing is counted.
async fn smtp_refusing_connections_briefly_dead_letters_nothing(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--http", &addr]);
    w.wait_count("SELECT COUNT(*) FROM herald_outbox", 0).await;
    w.sink.set_outage(Some(Outage::Refuse));
    w.env.enqueue_many("events.test.n", 20, 4).await;
    readyz_names_smtp_outage(&addr, "").await;
    outage_lasts(3).await;
    w.sink.set_outage(None);
    delivered_once_nothing_counted(&w, 20).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// Down for 30 s, in every way a server is down (connections dropped, a 421
/// greeting, connections refused), with `max_attempts: 2`: afterwards every
/// email is delivered once, nothing is dead-lettered, and `/readyz` said 503
/// (naming the SMTP transport) during the outage and says 200 after. The
/// worker logged the outage once per change of state.
async fn smtp_down_for_30s_then_everything_delivered_once(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let worker = w.worker_with(&["--http", &addr]);
    w.sink.set_outage(Some(Outage::Drop));
    w.env.enqueue_many("events.test.n", 60, 6).await;
    let since = Instant::now();
    wait::until("/readyz names the SMTP outage", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing"))
    })
    .await;
    for (until, outage) in [
        (10, Some(Outage::Greet421)),
        (20, Some(Outage::Refuse)),
        (30, None),
    ] {
        wait::until(
            &format!("{until} s of outage, /readyz 503"),
            wait::DEFAULT,
            || async {
                let r = readyz(&addr).await.unwrap_or_default();
                assert!(
                    !r.starts_with("HTTP/1.1 200"),
                    "ready during the outage: {r}"
                );
                since.elapsed() >= Duration::from_secs(until)
            },
        )
        .await;
        w.sink.set_outage(outage);
    }
    delivered_once_nothing_counted(&w, 60).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    let log = worker.log();
    let outages = log.matches("SMTP transport unreachable").count();
    assert!(
        (1..=3).contains(&outages),
        "logged once per change of state, not per message: {outages}\n{log}"
    );
}

/// A server that accepts connections and never greets (blackholed, hung,
/// or a TLS port spoken to in plain text) is an outage like a refused
/// connection: each connect times out (`connect_timeout=1s`), the
/// transport is down, nothing is counted or dead-lettered, and everything
/// goes once the server answers.
async fn smtp_connect_timeouts_are_an_outage(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set(
        "HERALD_SMTP_URL",
        format!("{}?connect_timeout=1s", w.sink.url()),
    );
    let _worker = h.spawn(&["worker", "--http", &addr]);
    w.wait_count("SELECT COUNT(*) FROM herald_outbox", 0).await;
    w.sink.set_outage(Some(Outage::Silent));
    w.env.enqueue_many("events.test.n", 20, 4).await;
    readyz_names_smtp_outage(&addr, "connect timeout").await;
    outage_lasts(4).await;
    w.sink.set_outage(None);
    delivered_once_nothing_counted(&w, 20).await;
}

both_backends!(
    smtp_refusing_connections_briefly_dead_letters_nothing,
    smtp_down_for_30s_then_everything_delivered_once,
    smtp_connect_timeouts_are_an_outage,
);

/// A worker whose SMTP server cannot be reached says so when it starts, in
/// its log and on `/readyz`, before any email waits on it (it used to log
/// nothing and report ready until the first send).
#[tokio::test]
async fn an_unreachable_smtp_server_is_reported_at_start_up() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let closed = herald_tests::free_port();
    let mut h = w.h.clone();
    h.set("HERALD_SMTP_URL", format!("smtp://127.0.0.1:{closed}"));
    let worker = h.spawn(&["worker", "--http", &addr]);
    readyz_names_smtp_outage(&addr, &format!("127.0.0.1:{closed}")).await;
    wait::until(
        "the log says SMTP is unreachable",
        wait::DEFAULT,
        || async { worker.log().contains("SMTP transport unreachable") },
    )
    .await;
}

/// A TLS handshake that never completes (smtps:// to a server that accepts
/// the connection and says nothing) is an outage like any connect timeout:
/// nothing counted or dead-lettered, every email once when it answers.
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_an_outage() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let tls = herald_tests::smtp::SmtpSink::start_with(herald_tests::smtp::Tls::Implicit).await;
    tls.set_outage(Some(Outage::Silent));
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set(
        "HERALD_SMTP_URL",
        format!(
            "smtps://127.0.0.1:{}?tls_insecure=true&connect_timeout=1s",
            tls.port
        ),
    );
    let _worker = h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 5, 0).await;
    readyz_names_smtp_outage(&addr, "connect timeout").await;
    outage_lasts(3).await;
    tls.set_outage(None);
    w.wait_sent(5).await;
    assert_eq!(tls.count(), 5, "each email once");
    assert!(tls.received().iter().all(|m| m.tls));
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts <> 1")
            .await,
        0,
        "the outage cost no attempt"
    );
}

/// A host name that does not resolve is an outage, not a failure of each
/// message: `/readyz` names the lookup failure, no delivery is counted or
/// dead-lettered however long it lasts, and a worker given the right
/// address afterwards sends every email once.
#[tokio::test]
async fn an_smtp_host_that_does_not_resolve_is_an_outage() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set("HERALD_SMTP_URL", "smtp://no-such-host.invalid:2525");
    let mut worker = h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 10, 2).await;
    readyz_names_smtp_outage(&addr, "no-such-host.invalid").await;
    outage_lasts(4).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts > 0")
            .await,
        0,
        "no attempt counted for an unreachable server"
    );
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let _worker = w.worker();
    delivered_once_nothing_counted(&w, 10).await;
}

/// `/readyz` tells the truth about NATS and the database, not only SMTP:
/// 503 naming the part while it is unreachable, 200 again when it is back.
/// The database part runs on PostgreSQL (a SQLite file cannot go away
/// under an open connection): connections to the test's database are
/// refused (ALLOW_CONNECTIONS false) and the worker's are terminated.
async fn readyz_names_nats_and_the_database_when_they_are_down(backend: Backend) {
    let mut w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _worker = w.worker_with(&["--http", &addr]);
    let ready = |part: &'static str| {
        let addr = addr.clone();
        async move {
            wait::until(&format!("/readyz 200 ({part})"), wait::DEFAULT, || async {
                readyz(&addr)
                    .await
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            })
            .await
        }
    };
    let down = |needle: &'static str| {
        let addr = addr.clone();
        async move {
            wait::until(
                &format!("/readyz 503 naming {needle}"),
                wait::DEFAULT,
                || async {
                    readyz(&addr)
                        .await
                        .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains(needle))
                },
            )
            .await
        }
    };
    ready("start").await;
    w.env.nats.kill();
    down("nats: failing").await;
    w.env.nats.restart().await;
    ready("nats back").await;

    if backend == Backend::Postgres {
        let admin = sea_orm::Database::connect(herald_tests::db::pg_admin_url())
            .await
            .unwrap();
        let name = w.env.db.url.rsplit('/').next().unwrap().to_string();
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name LIKE 'herald worker%'"
            ))
            .await
            .unwrap();
        down("database: failing").await;
        admin
            .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await
            .unwrap();
        ready("database back").await;
    }
}

both_backends!(readyz_names_nats_and_the_database_when_they_are_down);
