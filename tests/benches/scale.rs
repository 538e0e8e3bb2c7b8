//! Scale-out, memory and outbox-size benchmark (BENCHMARKS.md), with herald
//! as deployed: release processes (HERALD_BIN) on PostgreSQL, a nats-server
//! of their own, the harness's Rust SMTP sink.
//! (s1) 1 and 2 relay processes draining HERALD_BENCH_EVENTS (100,000) rows
//!      committed in one transaction while they wait;
//! (s2) 1, 2 and 4 worker processes (16 connections each, the default)
//!      draining HERALD_BENCH_EMAILS (20,000) messages published while they wait;
//! (m)  the RSS of one relay draining HERALD_BENCH_BACKLOG (1,000,000) rows and
//!      of one worker draining HERALD_BENCH_MEM_EMAILS (200,000) messages,
//!      sampled every second;
//! (o)  the outbox's size while HERALD_BENCH_OUTBOX_RATE (1,000) events/s are
//!      committed for HERALD_BENCH_OUTBOX_SECS (600) with `--outbox-retention 60s`.
//! HERALD_BENCH_ONLY=scale|memory|outbox runs one part.
use std::time::{Duration, Instant};

use herald_tests::bench::{BENCH_WORKFLOW, publish_bench_events, rate, size};
use herald_tests::db::{Backend, TestDb};
use herald_tests::nats::NatsServer;
use herald_tests::process::{Herald, HeraldEnv};
use herald_tests::smtp::SmtpSink;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// One deployment: a database, a NATS server, a sink, the environment the
/// herald processes get.
struct World {
    nats: NatsServer,
    _tdb: TestDb,
    db: DatabaseConnection,
    sink: SmtpSink,
    env: HeraldEnv,
    _workflows: tempfile::TempDir,
}

async fn world() -> World {
    let nats = NatsServer::start().await;
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bench.yaml"), BENCH_WORKFLOW).unwrap();
    let mut env = HeraldEnv::default();
    env.set(
        "HERALD_BIN",
        std::env::var("HERALD_BIN").expect("HERALD_BIN: a release herald"),
    )
    .set("HERALD_DATABASE_URL", tdb.url.clone())
    .set("HERALD_NATS_URL", nats.url())
    .set("HERALD_SMTP_URL", sink.url())
    .set("HERALD_WORKFLOWS", dir.path().display().to_string());
    let w = World {
        nats,
        _tdb: tdb,
        db,
        sink,
        env,
        _workflows: dir,
    };
    herald::db::migrate(&w.db).await.unwrap();
    w
}

/// Commit `n` events in one transaction (the producer contract's plain
/// INSERT), each with an aggregate of its own.
async fn commit_backlog(db: &DatabaseConnection, n: usize, first: usize) {
    db.execute_unprepared(&format!(
        "INSERT INTO herald_outbox (subject, aggregate_type, aggregate_id, payload) \
         SELECT 'events.bench.sent', 'user', i::text, \
           json_build_object('email', 'u' || i || '@example.com', 'name', 'User ' || i, 'code', 'CODE-' || i)::text \
         FROM generate_series({first}, {}) i",
        first + n - 1
    ))
    .await
    .unwrap();
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Whether a row is still unpublished (one probe of the pending index:
/// polled every 20 ms, a count over a million rows would be load of its own).
async fn any_unpublished(db: &DatabaseConnection) -> bool {
    let probe = "SELECT count(*) FROM (SELECT 1 FROM herald_outbox WHERE published_at IS NULL LIMIT 1) AS p";
    count(db, probe).await > 0
}

/// Wait until `done` or `deadline`; samples the processes' RSS (KiB) each second.
async fn drain<F, Fut>(procs: &[&Herald], deadline: Duration, mut done: F) -> (Duration, Vec<u64>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut rss = Vec::new();
    let mut next_sample = start;
    while !done().await {
        assert!(
            start.elapsed() < deadline,
            "not drained within {deadline:?}"
        );
        if Instant::now() >= next_sample {
            rss.push(procs.iter().map(|p| rss_kib(p.pid())).sum());
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (start.elapsed(), rss)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Start `k` processes of `args` and wait until each has started its loop.
async fn spawn_ready(w: &World, k: usize, args: &[&str], ready: &str) -> Vec<Herald> {
    let procs: Vec<Herald> = (0..k).map(|_| w.env.spawn(args)).collect();
    let start = Instant::now();
    while !procs.iter().all(|p| p.log().contains(ready)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not started: {}",
            procs[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    procs
}

async fn stop_all(procs: &mut [Herald]) {
    for p in procs.iter_mut() {
        p.terminate(Duration::from_secs(30)).await;
    }
}

/// (s1): `k` relays, the time from the backlog's commit to its last row published.
async fn relays(k: usize, n: usize) -> f64 {
    let w = world().await;
    let mut procs = spawn_ready(&w, k, &["relay"], "relay started").await;
    // The rows become visible together at the commit: the clock starts there.
    commit_backlog(&w.db, n, 1).await;
    let start = Instant::now();
    let refs: Vec<&Herald> = procs.iter().collect();
    let (_, _) = drain(&refs, Duration::from_secs(600), || async {
        !any_unpublished(&w.db).await
    })
    .await;
    let took = start.elapsed();
    stop_all(&mut procs).await;
    rate(n, took)
}

/// (s2) and (m): `k` workers, the time from the first publish to the last
/// email accepted, and their summed RSS samples.
async fn workers(k: usize, n: usize) -> (f64, Vec<u64>) {
    let w = world().await;
    // The relay creates the stream; the workers bind their consumer to it.
    let mut relay = spawn_ready(&w, 1, &["relay"], "relay started").await;
    let mut procs = spawn_ready(&w, k, &["worker"], "worker started").await;
    let start = Instant::now();
    let js = w.nats.jetstream().await;
    let publishing = publish_bench_events(&js, n);
    let refs: Vec<&Herald> = procs.iter().collect();
    let sink = &w.sink;
    let ((), (_, rss)) = tokio::join!(
        publishing,
        drain(&refs, Duration::from_secs(1800), || async move {
            sink.count() >= n
        })
    );
    let took = start.elapsed();
    stop_all(&mut procs).await;
    stop_all(&mut relay).await;
    (rate(n, took), rss)
}

fn spread(samples: &[u64]) -> String {
    // The first seconds are start-up and pool warm-up: report from the third.
    let steady = if samples.len() > 4 {
        &samples[2..]
    } else {
        samples
    };
    let (lo, hi) = (
        steady.iter().min().copied().unwrap_or(0),
        steady.iter().max().copied().unwrap_or(0),
    );
    format!(
        "{} samples, {:.1}–{:.1} MiB (max/min {:.2})",
        steady.len(),
        lo as f64 / 1024.0,
        hi as f64 / 1024.0,
        hi as f64 / lo.max(1) as f64
    )
}

async fn scale() {
    let n = size("HERALD_BENCH_EVENTS", 100_000);
    let one = relays(1, n).await;
    for k in [1, 2] {
        let r = if k == 1 { one } else { relays(k, n).await };
        println!("| relays | {k} | {n} | {r:.0}/s | {:.2}× |", r / one);
    }
    let m = size("HERALD_BENCH_EMAILS", 20_000);
    let (one, _) = workers(1, m).await;
    for k in [1, 2, 4] {
        let r = if k == 1 { one } else { workers(k, m).await.0 };
        println!("| workers | {k} | {m} | {r:.0}/s | {:.2}× |", r / one);
    }
}

async fn memory() {
    let n = size("HERALD_BENCH_BACKLOG", 1_000_000);
    let w = world().await;
    for chunk in 0..n.div_ceil(100_000) {
        commit_backlog(&w.db, 100_000.min(n - chunk * 100_000), 1 + chunk * 100_000).await;
    }
    let mut relay = spawn_ready(&w, 1, &["relay"], "relay started").await;
    let refs: Vec<&Herald> = relay.iter().collect();
    let (took, rss) = drain(&refs, Duration::from_secs(1800), || async {
        !any_unpublished(&w.db).await
    })
    .await;
    stop_all(&mut relay).await;
    println!(
        "| relay RSS draining a backlog | {n} | {:.0}/s | {} |",
        rate(n, took),
        spread(&rss)
    );
    let m = size("HERALD_BENCH_MEM_EMAILS", 200_000);
    let (r, rss) = workers(1, m).await;
    println!(
        "| worker RSS draining a stream | {m} | {r:.0}/s | {} |",
        spread(&rss)
    );
}

async fn outbox() {
    let per_sec = size("HERALD_BENCH_OUTBOX_RATE", 1000);
    let secs = size("HERALD_BENCH_OUTBOX_SECS", 600);
    let w = world().await;
    let mut relay = spawn_ready(
        &w,
        1,
        &["relay", "--outbox-retention", "60s"],
        "relay started",
    )
    .await;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next = 1;
    let mut last_report = start;
    while start.elapsed() < Duration::from_secs(secs as u64) {
        tick.tick().await;
        commit_backlog(&w.db, per_sec / 10, next).await;
        next += per_sec / 10;
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let rows = count(&w.db, "SELECT count(*) FROM herald_outbox").await;
            let bytes = count(&w.db, "SELECT pg_total_relation_size('herald_outbox')").await;
            println!(
                "| {:>4} s | {} committed | {rows} rows | {:.1} MiB |",
                start.elapsed().as_secs(),
                next - 1,
                bytes as f64 / 1048576.0
            );
        }
    }
    stop_all(&mut relay).await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("HERALD_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "scale" {
            println!("| processes | k | events | rate | vs 1 |\n|---|---|---|---|---|");
            scale().await;
        }
        if only.is_empty() || only == "memory" {
            println!("| measure | events | rate | RSS after start-up |\n|---|---|---|---|");
            memory().await;
        }
        if only.is_empty() || only == "outbox" {
            println!("| time | events | outbox rows | outbox size |\n|---|---|---|---|");
            outbox().await;
        }
    });
}
