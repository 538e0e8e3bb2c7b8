//! NATS restarts and lost PostgreSQL connections mid-flow: relay and worker
//! recover.

use super::numbered;
use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::process::Herald;
use herald_tests::scenario::World;
use herald_tests::{both_backends, wait};
use sea_orm::ConnectionTrait;
use std::time::Duration;

/// An outage scenario mid-flow: `numbered` with relay and worker running,
/// 100 events over 10 aggregates enqueued and at least 20 emailed.
struct MidFlow {
    w: World,
    relay: Herald,
    worker: Herald,
}

impl MidFlow {
    async fn start(backend: Backend) -> MidFlow {
        let w = numbered(backend).await;
        let relay = w.relay();
        let worker = w.h.spawn(&["worker"]);
        w.env.enqueue_many("events.test.n", 100, 10).await;
        w.wait_emails(20).await;
        MidFlow { w, relay, worker }
    }

    /// After the outage and 100 more events: all 200 recorded sent (read
    /// through `conn`), exactly 200 emails, relay and worker rode it out and
    /// still stop cleanly on SIGTERM.
    async fn finish(mut self, conn: &sea_orm::DatabaseConnection) {
        wait::until("200 deliveries sent", Duration::from_secs(120), || async {
            let Ok(Some(r)) = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'",
                ))
                .await
            else {
                return false;
            };
            r.try_get_by_index::<i64>(0).unwrap_or(0) == 200
        })
        .await;
        let sent = self.w.sink.count();
        assert_eq!(sent, 200, "duplicates: {}", sent.saturating_sub(200));
        assert!(
            self.relay.try_status().is_none() && self.worker.try_status().is_none(),
            "neither process exited"
        );
        assert_eq!(
            self.relay.terminate(Duration::from_secs(30)).await.code(),
            Some(0)
        );
        assert_eq!(
            self.worker.terminate(Duration::from_secs(30)).await.code(),
            Some(0)
        );
    }
}

/// Terminate the test database's PostgreSQL connections matching `which`
/// (a condition on pg_stat_activity), as a server restart does.
async fn terminate_backends(env: &TestEnv, which: &str) {
    let admin = sea_orm::Database::connect(herald_tests::db::pg_admin_url())
        .await
        .unwrap();
    let db_name = env.db.url.rsplit('/').next().unwrap().to_string();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}' AND {which}"
        ))
        .await
        .unwrap();
}

/// PostgreSQL drops every connection of the relay mid-run (as a restart
/// does): the relay keeps running, reconnects and publishes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_survives_postgres_connection_loss() {
    let env = TestEnv::start(Backend::Postgres).await;
    env.enqueue_many("events.test.a", 200, 10).await;
    let mut relay = env
        .herald
        .spawn(&["relay", "--relay-poll", "50ms", "--relay-batch", "20"]);
    wait::until("some rows are published", wait::DEFAULT, || async {
        env.stream_len().await > 0
    })
    .await;
    for _ in 0..3 {
        terminate_backends(&env, "application_name = 'herald relay'").await;
        env.enqueue_many("events.test.a", 100, 10).await;
    }
    env.wait_all_published().await;
    let msgs = env.stream_messages().await;
    herald_tests::env::assert_once_and_ordered(&msgs, 500);
    assert!(relay.try_status().is_none(), "the relay did not exit");
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// NATS restarts on the same store mid-flow: relay and worker recover
/// without a restart, every event is delivered once.
async fn nats_restart_mid_flow_relay_and_worker_recover(backend: Backend) {
    let mut m = MidFlow::start(backend).await;
    m.w.env.nats.restart().await;
    m.w.env.enqueue_many("events.test.m", 100, 10).await;
    let conn = m.w.env.conn.clone();
    m.finish(&conn).await;
}

both_backends!(nats_restart_mid_flow_relay_and_worker_recover);

/// PostgreSQL drops every connection of relay and worker mid-flow: both
/// recover without a restart; every event delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_loss_relay_and_worker_recover() {
    let m = MidFlow::start(Backend::Postgres).await;
    // Every connection to the database, the test's own pool's too.
    terminate_backends(&m.w.env, "pid <> pg_backend_pid()").await;
    let conn = m.w.env.db.connect().await;
    herald_tests::env::enqueue_many_on(&conn, "events.test.m", 100, 10).await;
    m.finish(&conn).await;
}

/// SIGTERM while NATS is down stops relay and worker at once: a consumer
/// binding again (a request NATS does not answer) used to hold the worker
/// for the request's 10 s timeout.
#[tokio::test]
async fn sigterm_while_nats_is_down_stops_at_once() {
    let mut m = MidFlow::start(Backend::Sqlite).await;
    // A graceful shutdown: the server tells its clients, so the worker's
    // consumers end at once and start binding again.
    let pid = m.w.env.nats.pid().expect("nats-server runs");
    let stopped = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    wait::until("the worker notices NATS is gone", wait::DEFAULT, || async {
        m.worker
            .log()
            .contains("consumer stopped; starting it again")
    })
    .await;
    // Past the first restart's 500 ms backoff, the consumer is binding
    // again, waiting on a server that is gone (the condition is the time).
    let since = std::time::Instant::now();
    wait::until("the consumer is binding again", wait::DEFAULT, || async {
        since.elapsed() >= Duration::from_millis(1500)
    })
    .await;
    for p in [&mut m.relay, &mut m.worker] {
        let since = std::time::Instant::now();
        assert_eq!(p.terminate(Duration::from_secs(30)).await.code(), Some(0));
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "took {:?} to stop:\n{}",
            since.elapsed(),
            p.log()
        );
    }
}
