//! Operations: status, outbox prune/retry, dead-letter re-drive, database outages.
use std::time::Duration;

use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::wait;
use sea_orm::ConnectionTrait;
use serde_json::json;

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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

async fn with_workflow(backend: Backend, yaml: &str) -> World {
    Scenario::new(backend)
        .workflow("wf.yaml", yaml)
        .start()
        .await
}

async fn numbered(backend: Backend) -> World {
    with_workflow(backend, NUMBERED).await
}

async fn status_shows_parked_rows_and_stream(backend: Backend) {
    let env = TestEnv::start_with(backend, "max_payload: 8192").await;
    env.enqueue_many("events.test.small", 20, 2).await;
    let h = &env.herald;
    ok_stdout(&h.run(&[
        "emit",
        "--subject",
        "events.test.big",
        "--payload",
        &json!({ "blob": "x".repeat(20_000) }).to_string(),
    ]));
    let mut relay = h.spawn(&["relay", "--relay-poll", "50ms", "--relay-max-attempts", "1"]);
    wait::until("the poison row is parked", wait::DEFAULT, || async {
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    env.wait_until_unpublished(1).await;
    let status: serde_json::Value =
        serde_json::from_str(&ok_stdout(&h.run(&["status", "--json"]))).unwrap();
    assert_eq!(status["outbox"]["parked"], 1, "{status}");
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    assert_eq!(status["stream"]["messages"], 20, "{status}");
    assert_eq!(status["deliveries"]["sent"], 0, "{status}");
    assert_eq!(status["dead_letters"], 0, "{status}");
    let text = ok_stdout(&h.run(&["status"]));
    assert!(text.contains("parked 1"), "{text}");
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    assert!(ok_stdout(&h.run(&["outbox", "retry"])).contains("re-queued 1"));
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM herald_outbox WHERE parked_at IS NOT NULL")
            .await,
        0
    );
}

async fn prune_deletes_only_old_published_rows(backend: Backend) {
    let env = TestEnv::start(backend).await;
    env.enqueue_many("events.test.a", 30, 3).await;
    let mut relay = env.herald.spawn(&["relay", "--relay-poll", "50ms"]);
    env.wait_all_published().await;
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    env.enqueue_many("events.test.b", 5, 0).await;
    let out = ok_stdout(&env.herald.run(&["outbox", "prune", "--older-than", "1h"]));
    assert!(out.contains("pruned 0"), "{out}");
    let out = ok_stdout(&env.herald.run(&["outbox", "prune", "--older-than", "0s"]));
    assert!(out.contains("pruned 30"), "{out}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM herald_outbox").await,
        5,
        "unpublished rows stay"
    );
}

/// One email per `{"n": i}` event, to u{n}@example.com, with a retry budget
/// long enough to ride out short outages.
const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
retry:
  max_attempts: 50
  backoff: { initial: 100ms, max: 300ms }
"#;

const BROKEN: &str = r#"
name: greet
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.email}}"
  subject: "{{event.greeting}}"
  text: "Hi {{event.name}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 100ms }
"#;

/// A template bug dead-letters 20 events; after the fix, a re-drive sends 20
/// emails once, and a second re-drive sends nothing.
async fn dlq_redrive_after_template_fix(backend: Backend) {
    let w = with_workflow(backend, BROKEN).await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let _worker = w.h.spawn(&["worker"]);
    w.emit_users("events.test.hello", 20).await;
    wait::until("20 dead letters", wait::DEFAULT, || async {
        w.env
            .scalar("SELECT COUNT(*) FROM herald_dead_letters")
            .await
            == 20
    })
    .await;
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert_eq!(list.len(), 20);
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing variable event.greeting")
    );
    let shown: serde_json::Value = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "show", &list[0]["id"].to_string(), "--json"])
            .await,
    ))
    .unwrap();
    assert_eq!(
        shown["payload"]["email"], list[0]["payload"]["email"],
        "{shown}"
    );
    assert!(
        shown["reason"].as_str().unwrap().contains("event.greeting"),
        "{shown}"
    );
    assert!(
        shown["rendered"]["error"]
            .as_str()
            .unwrap()
            .contains("missing variable event.greeting"),
        "{shown}"
    );
    assert_eq!(w.sink.count(), 0);

    std::fs::write(
        w.workflows_dir().join("wf.yaml"),
        BROKEN.replace("{{event.greeting}}", "Hello {{event.name}}"),
    )
    .unwrap();
    let fixed: serde_json::Value = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "show", &list[0]["id"].to_string(), "--json"])
            .await,
    ))
    .unwrap();
    // Which event got dead letter 1 depends on the worker's concurrency.
    assert_eq!(
        fixed["rendered"][0]["to"][0], fixed["payload"]["email"],
        "after the fix: {fixed}"
    );
    let name = fixed["payload"]["name"].as_str().unwrap();
    assert_eq!(
        fixed["rendered"][0]["subject"],
        format!("Hello {name}"),
        "{fixed}"
    );
    let out = ok_stdout(&w.run(&["dlq", "retry", "--all"]).await);
    assert!(out.contains("20 delivered"), "{out}");
    assert_eq!(w.sink.count(), 20);
    let to = w.sink.distinct_recipients();
    assert_eq!(to.len(), 20, "each recipient once");
    let out = ok_stdout(&w.run(&["dlq", "retry", "--all"]).await);
    assert!(out.contains("re-drove 0"), "{out}");
    assert_eq!(w.sink.count(), 20, "a second re-drive sends nothing");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert!(list.is_empty());
}

both_backends!(
    status_shows_parked_rows_and_stream,
    prune_deletes_only_old_published_rows,
    dlq_redrive_after_template_fix,
);

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

/// `herald trace` follows one event through outbox, publish and delivery.
async fn trace_shows_an_events_life(backend: Backend) {
    let w = with_workflow(
        backend,
        &BROKEN.replace("{{event.greeting}}", "Hello {{event.name}}"),
    )
    .await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let _worker = w.h.spawn(&["worker"]);
    let id = ok_stdout(
        &w.run(&[
            "emit",
            "--subject",
            "events.test.hello",
            "--payload",
            r#"{"email": "t@example.com", "name": "T"}"#,
        ])
        .await,
    )
    .trim()
    .to_string();
    wait::until("the email is sent", wait::DEFAULT, || async {
        w.sink.count() == 1
    })
    .await;
    wait::until("the delivery is recorded", wait::DEFAULT, || async {
        w.env
            .scalar("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
            .await
            == 1
    })
    .await;
    let t: serde_json::Value =
        serde_json::from_str(&ok_stdout(&w.run(&["trace", &id, "--json"]).await)).unwrap();
    assert_eq!(t["outbox"]["subject"], "events.test.hello", "{t}");
    assert!(t["outbox"]["published_at"].is_string(), "{t}");
    assert_eq!(t["deliveries"][0]["workflow"], "greet", "{t}");
    assert_eq!(t["deliveries"][0]["state"], "sent", "{t}");
    assert_eq!(t["deliveries"][0]["recipient"], "t@example.com", "{t}");
    assert!(
        t["deliveries"][0]["smtp_response"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{t}"
    );
    let out = w.run(&["trace", &uuid::Uuid::now_v7().to_string()]).await;
    assert_eq!(out.status.code(), Some(2));
}

/// JetStream lost its messages (store wiped); the outbox still holds the
/// published rows: republish restores the stream and the ledger keeps the
/// worker from emailing anyone twice.
async fn republish_after_stream_loss_sends_nothing_twice(backend: Backend) {
    let w = with_workflow(backend, NUMBERED).await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.env.enqueue_many("events.test.n", 20, 0).await;
    wait::until("20 emails", wait::DEFAULT, || async {
        w.sink.count() == 20
    })
    .await;
    relay.terminate(Duration::from_secs(30)).await;
    worker.terminate(Duration::from_secs(30)).await;
    // The stream loses everything it acknowledged.
    let js = w.env.nats.jetstream().await;
    js.delete_stream("HERALD").await.unwrap();
    // In pages of 7 (7 + 7 + 6): a long range is never held in memory whole.
    let out = ok_stdout(
        &w.run(&["outbox", "republish", "--since", "1h", "--batch", "7"])
            .await,
    );
    assert!(
        out.contains("republished 20 row(s): 20 stored again"),
        "{out}"
    );
    herald_tests::env::assert_once_and_ordered(&w.env.stream_messages().await, 20);
    let _worker = w.h.spawn(&["worker"]);
    wait::until(
        "the new consumer has acked all 20",
        wait::DEFAULT,
        || async {
            let Ok(s) = js.get_stream("HERALD").await else {
                return false;
            };
            let Ok(mut c) = s
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-numbered")
                .await
            else {
                return false;
            };
            c.info()
                .await
                .is_ok_and(|i| i.ack_floor.stream_sequence >= 20)
        },
    )
    .await;
    assert_eq!(w.sink.count(), 20, "duplicates: {}", w.sink.count() - 20);
    let out = ok_stdout(
        &w.run(&[
            "outbox",
            "republish",
            "--since",
            "1h",
            "--subject",
            "events.other.>",
        ])
        .await,
    );
    assert!(out.contains("republished 0 row(s)"), "{out}");
}

/// Regression (found by the soak): the stream is lost with events not yet
/// emailed, later events of the same aggregate are published into the
/// recreated stream, then `outbox republish` puts the earlier ones behind
/// them. The worker used to hold each later event at the head of its lane,
/// waiting for the earlier one queued behind it (and, with lanes or
/// max_ack_pending full, never pulled): nothing was emailed again. Now all
/// are emailed, in the aggregate's order, even with room for only 4 in flight.
async fn republished_events_behind_later_ones_are_emailed_in_order(backend: Backend) {
    let w = with_workflow(
        backend,
        &NUMBERED.replace("u{{event.n}}@example.com", "agg@example.com"),
    )
    .await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let old = herald_tests::env::enqueue_many_on(&w.env.conn, "events.test.n", 10, 1).await;
    w.env.wait_all_published().await;
    let js = w.env.nats.jetstream().await;
    js.delete_stream("HERALD").await.unwrap();
    // n = 10..19 of the same aggregate go into a recreated stream first.
    let txn = sea_orm::TransactionTrait::begin(&w.env.conn).await.unwrap();
    for n in 10..20 {
        herald::outbox::enqueue(
            &txn,
            herald::outbox::NewEvent::new("events.test.n", json!({ "n": n })).aggregate("agg", 0),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    w.env.wait_all_published().await;
    assert_eq!(w.env.stream_len().await, 10);
    let out = ok_stdout(&w.run(&["outbox", "republish", "--since", "1h"]).await);
    assert!(out.contains("10 stored again"), "{out}");
    assert_eq!(old.len(), 10);
    let worker =
        w.h.spawn(&["worker", "--ack-wait", "5s", "--max-ack-pending", "4"]);
    let start = std::time::Instant::now();
    while w.sink.count() < 20 && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.sink.count(), 20, "worker log:\n{}", worker.log());
    let order: Vec<String> = w
        .sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|n| format!("n={n}")).collect();
    assert_eq!(order, expected);
    relay.terminate(Duration::from_secs(30)).await;
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

both_backends!(
    trace_shows_an_events_life,
    republish_after_stream_loss_sends_nothing_twice,
    republished_events_behind_later_ones_are_emailed_in_order,
    nats_restart_mid_flow_relay_and_worker_recover,
);

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

/// The worker's --http: ready once its consumers are bound; counters move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_health_and_metrics() {
    let w = numbered(Backend::Sqlite).await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _worker = w.h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 3, 0).await;
    wait::until("3 emails", wait::DEFAULT, || async { w.sink.count() == 3 }).await;
    let get = |path: &'static str| herald_tests::http_get(addr.clone(), path);
    wait::until("the worker reports 3 sent", wait::DEFAULT, || async {
        get("/metrics").await.is_some_and(|m| {
            m.contains("herald_emails_sent_total{role=\"worker\",workflow=\"numbered\"} 3")
        })
    })
    .await;
    assert!(get("/readyz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get("/healthz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(
        get("/metrics")
            .await
            .unwrap()
            .contains("herald_send_latency_seconds_bucket")
    );
}

/// dlq retry ID re-drives one dead letter; --workflow limits --all.
async fn dlq_retry_one_and_by_workflow(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("a.yaml", BROKEN)
        .workflow("b.yaml", &BROKEN.replace("name: greet", "name: other"))
        .start()
        .await;
    let d = w.workflows_dir();
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.emit_users("events.test.x", 3).await;
    wait::until(
        "6 dead letters (3 events × 2 workflows)",
        wait::DEFAULT,
        || async {
            w.env
                .scalar("SELECT COUNT(*) FROM herald_dead_letters")
                .await
                == 6
        },
    )
    .await;
    worker.terminate(Duration::from_secs(30)).await;
    for f in ["a.yaml", "b.yaml"] {
        let text = std::fs::read_to_string(d.join(f)).unwrap();
        std::fs::write(
            d.join(f),
            text.replace("{{event.greeting}}", "Hello {{event.name}}"),
        )
        .unwrap();
    }
    let greet: Vec<serde_json::Value> = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "list", "--workflow", "greet", "--json"])
            .await,
    ))
    .unwrap();
    assert_eq!(greet.len(), 3);
    let out = ok_stdout(&w.run(&["dlq", "retry", &greet[0]["id"].to_string()]).await);
    assert!(
        out.contains("re-drove 1 dead letter(s): 1 delivered"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 1);
    let out = ok_stdout(
        &w.run(&["dlq", "retry", "--all", "--workflow", "other"])
            .await,
    );
    assert!(
        out.contains("re-drove 3 dead letter(s): 3 delivered"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 4);
    let left: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert_eq!(left.len(), 2, "greet's other two are still dead letters");
}

both_backends!(dlq_retry_one_and_by_workflow);
