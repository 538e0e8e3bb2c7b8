//! A 3-node JetStream cluster: an R3 stream, relay and worker given every
//! node's URL, leader changes that users never see.
use std::time::Duration;

use herald_tests::db::{Backend, TestDb};
use herald_tests::nats::NatsCluster;
use herald_tests::process::HeraldEnv;
use herald_tests::smtp::SmtpSink;
use herald_tests::wait;

const WORKFLOW: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "a{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
"#;

struct ClusterWorld {
    h: HeraldEnv,
    sink: SmtpSink,
    conn: sea_orm::DatabaseConnection,
    _db: TestDb,
    cluster: NatsCluster,
    _dir: tempfile::TempDir,
}

async fn cluster_world() -> ClusterWorld {
    let cluster = NatsCluster::start().await;
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wf.yaml"), WORKFLOW).unwrap();
    let mut h = HeraldEnv::default();
    h.set("HERALD_DATABASE_URL", db.url.clone())
        .set("HERALD_NATS_URL", cluster.urls())
        .set("HERALD_SMTP_URL", sink.url())
        .set("HERALD_WORKFLOWS", dir.path().display().to_string())
        .set("HERALD_LOG", "warn,herald=info");
    ClusterWorld {
        h,
        sink,
        conn,
        _db: db,
        cluster,
        _dir: dir,
    }
}

async fn replicas(c: &NatsCluster) -> usize {
    let js = c.jetstream().await;
    js.get_stream("HERALD")
        .await
        .map(|s| s.cached_info().config.num_replicas)
        .unwrap_or(0)
}

async fn sent(conn: &sea_orm::DatabaseConnection) -> i64 {
    use sea_orm::ConnectionTrait;
    conn.query_one_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'",
    ))
    .await
    .ok()
    .flatten()
    .and_then(|r| r.try_get_by_index::<i64>(0).ok())
    .unwrap_or(0)
}

/// `--stream-replicas 3` on a 3-node cluster, relay and worker given the
/// three URLs comma-separated. The stream's leader steps down, then the
/// new leader is killed -9 and comes back: neither process exits, every
/// event is emailed exactly once, nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_is_invisible_to_users() {
    let w = cluster_world().await;
    let relay_args = ["relay", "--relay-poll", "50ms", "--stream-replicas", "3"];
    let mut relay = w.h.spawn(&relay_args);
    let mut worker = w.h.spawn(&["worker", "--ack-wait", "5s"]);
    wait::until("the relay creates an R3 stream", wait::DEFAULT, || async {
        replicas(&w.cluster).await == 3
    })
    .await;
    herald_tests::env::enqueue_many_on(&w.conn, "events.test.a", 200, 20).await;
    wait::until("some emails", wait::DEFAULT, || async {
        w.sink.count() >= 20
    })
    .await;
    let first = w.cluster.stream_leader("HERALD").await.expect("a leader");
    assert!(w.cluster.step_down("HERALD").await, "step-down request");
    wait::until("another node leads the stream", wait::DEFAULT, || async {
        w.cluster
            .stream_leader("HERALD")
            .await
            .is_some_and(|l| l != first)
    })
    .await;
    herald_tests::env::enqueue_many_on(&w.conn, "events.test.b", 200, 20).await;
    wait::until("the stream is healthy again", wait::DEFAULT, || {
        w.cluster.stream_healthy("HERALD")
    })
    .await;
    let mut cluster = w.cluster;
    let leader = cluster.stream_leader("HERALD").await.expect("a leader");
    cluster.nodes[leader].kill();
    herald_tests::env::enqueue_many_on(&w.conn, "events.test.c", 200, 20).await;
    wait::until(
        "400 of 600 sent with the leader down",
        Duration::from_secs(120),
        || async { sent(&w.conn).await >= 400 },
    )
    .await;
    cluster.nodes[leader].start_again().await;
    wait::until("600 sent", Duration::from_secs(120), || async {
        sent(&w.conn).await == 600
    })
    .await;
    assert_eq!(w.sink.count(), 600, "one email per event");
    let ids: std::collections::HashSet<String> =
        w.sink.received().iter().map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), 600, "each event's email once");
    assert!(
        relay.try_status().is_none() && worker.try_status().is_none(),
        "no process exited:\nrelay: {}\nworker: {}",
        relay.log(),
        worker.log()
    );
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let js = cluster.jetstream().await;
    let info = js.get_stream("HERALD").await.unwrap().cached_info().clone();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 600, "each event stored once");
}

/// Regression (found by the soak): a worker, or `outbox republish`, started
/// against an R3 stream applied the default settings and scaled it down to
/// one replica, so the next node loss made the stream unavailable. Only the
/// relay sets the stream's settings; the others leave an existing stream
/// as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_or_republish_keeps_the_streams_replicas() {
    let w = cluster_world().await;
    let mut relay = w.h.spawn(&[
        "relay",
        "--stream-replicas",
        "3",
        "--duplicate-window",
        "20m",
    ]);
    wait::until("the relay creates an R3 stream", wait::DEFAULT, || async {
        replicas(&w.cluster).await == 3
    })
    .await;
    relay.terminate(Duration::from_secs(30)).await;
    let js = w.cluster.jetstream().await;
    let mut worker = w.h.spawn(&["worker"]);
    wait::until("the worker binds its consumer", wait::DEFAULT, || async {
        let Ok(s) = js.get_stream("HERALD").await else {
            return false;
        };
        s.get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-numbered")
            .await
            .is_ok()
    })
    .await;
    let settings = || async {
        let s = js.get_stream("HERALD").await.unwrap();
        let c = &s.cached_info().config;
        (c.num_replicas, c.duplicate_window)
    };
    assert_eq!(
        settings().await,
        (3, Duration::from_secs(1200)),
        "the worker changed the stream's settings"
    );
    let out = w.h.run(&["outbox", "republish", "--since", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        settings().await,
        (3, Duration::from_secs(1200)),
        "republish changed the stream's settings"
    );
    worker.terminate(Duration::from_secs(30)).await;
}

/// Pipelined publishing of `n` 1 KiB messages (4,000 PubAcks in flight at
/// most, as the relay benchmark's raw publisher): messages a second.
async fn publish_rate(js: &async_nats::jetstream::Context, replicas: usize, n: usize) -> f64 {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "RATE".into(),
        subjects: vec!["rate.>".into()],
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let start = std::time::Instant::now();
    let mut acks = std::collections::VecDeque::new();
    for i in 0..n {
        acks.push_back(
            js.publish(format!("rate.{}", i % 100), payload.clone())
                .await
                .unwrap(),
        );
        if acks.len() >= 4_000 {
            acks.pop_front().unwrap().await.unwrap();
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A measurement for docs/capacity.md, not a check: raw JetStream publish
/// rate on one node (R1) and on the 3-node loopback cluster (R3).
/// `cargo nextest run --run-ignored only -E 'test(publish_rate_r1_against_r3)' --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn publish_rate_r1_against_r3() {
    let n = std::env::var("HERALD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let single = herald_tests::nats::NatsServer::start().await;
    let r1 = publish_rate(&single.jetstream().await, 1, n).await;
    let cluster = NatsCluster::start().await;
    let r3 = publish_rate(&cluster.jetstream().await, 3, n).await;
    eprintln!(
        "publish {n} × 1 KiB: R1 {r1:.0}/s, R3 {r3:.0}/s ({:.2} of R1)",
        r3 / r1
    );
}

/// Regression (found by the cluster test): `--nats-url` with several URLs,
/// comma-separated as documented, made every command fail with "invalid
/// port number" (the list reached async-nats as one string). Here the
/// first URL has no server behind it and the second does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_nats_urls_is_accepted() {
    let nats = herald_tests::nats::NatsServer::start().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut h = HeraldEnv::default();
    let dead = format!("nats://127.0.0.1:{}", herald_tests::free_port());
    h.set("HERALD_DATABASE_URL", db.url.clone())
        .set("HERALD_NATS_URL", format!("{dead}, {}", nats.url()));
    let out = h.run(&["outbox", "republish", "--since", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regression (found by the soak): a worker starting while a relay
/// recreated the lost stream exited with "stream name already in use with
/// a different configuration": between its look (no stream) and its create,
/// the relay's stream appeared with other settings. Now it takes the stream
/// that exists. Here the two race in one process, many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_meanwhile_with_other_settings_is_taken() {
    let nats = herald_tests::nats::NatsServer::start().await;
    let js = nats.jetstream().await;
    let defaults = herald::jetstream::StreamSettings::named("HERALD");
    let relays = herald::jetstream::StreamSettings::named("HERALD")
        .duplicate_window(Duration::from_secs(1200));
    for round in 0..30 {
        let _ = js.delete_stream("HERALD").await;
        let (opened, created) = tokio::join!(
            herald::jetstream::open_stream(&js, &defaults),
            herald::jetstream::ensure_stream(&js, &relays),
        );
        assert!(created.is_ok(), "round {round}: {:?}", created.err());
        assert!(opened.is_ok(), "round {round}: {:?}", opened.err());
    }
}

/// A relay and a worker started while the cluster has no quorum (two of
/// three nodes down) wait for the stream, saying so; SIGTERM then stops
/// them at once with exit 0, as it does once they run, instead of the
/// signal killing them mid-start-up (the soak caught a restarted process
/// dying that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_exits_cleanly() {
    let mut w = cluster_world().await;
    w.cluster.nodes[1].kill();
    w.cluster.nodes[2].kill();
    let mut h = w.h.clone();
    h.set("HERALD_NATS_URL", w.cluster.nodes[0].url());
    let mut relay = h.spawn(&["relay", "--stream-replicas", "3"]);
    let mut worker = h.spawn(&["worker"]);
    for (name, p) in [("relay", &relay), ("worker", &worker)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !p.log().contains("waiting for the events stream") {
            assert!(
                std::time::Instant::now() < deadline,
                "the {name} did not say it waits for the stream within 60 s:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (name, p) in [("relay", &mut relay), ("worker", &mut worker)] {
        let st = p.terminate(Duration::from_secs(10)).await;
        assert_eq!(st.code(), Some(0), "{name}: {st}\n{}", p.log());
        assert!(p.log().contains("stopped during start-up"), "{}", p.log());
    }
}
