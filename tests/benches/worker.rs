//! Worker benchmark (BENCHMARKS.md). In one run, against the harness's Rust
//! SMTP sink, on SQLite and PostgreSQL:
//! (a) a raw mail-send loop sending the same rendered messages over one
//!     reused connection (TCP_NODELAY) — the ceiling;
//! (b) the worker end to end from a pre-filled stream;
//! (c) commit → SMTP accepted latency at a steady rate, with relay and worker
//!     as separate processes (needs HERALD_BIN = a release herald).
//! Sizes: HERALD_BENCH_EMAILS (20000), HERALD_BENCH_RATE (500), HERALD_BENCH_STEADY_SECS (5).
//! HERALD_BENCH_ONLY=latency runs (c) alone, =throughput (a), (a16) and (b),
//! =worker (b) alone (for a profiler); HERALD_BENCH_DUMP=PREFIX writes
//! each event's legs of (c) to PREFIX.BACKEND.csv (commit offset, total,
//! relay, pickup, send in ms) and the two processes' debug logs beside it.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::metrics::Metrics;
use herald::outbox::{NewEvent, enqueue};
use herald::smtp::Transport;
use herald::worker::{Worker, WorkerConfig};
use herald::workflow::render::Email;
use herald_tests::bench::{
    BENCH_WORKFLOW, Cpu, bench_payload, percentile_ms, publish_bench_events, rate, size,
};
use herald_tests::db::{Backend, TestDb};
use herald_tests::nats::NatsServer;
use herald_tests::process::HeraldEnv;
use herald_tests::smtp::SmtpSink;
use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::{Address, Message, Parameters};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

fn bench_email() -> Email {
    Email {
        index: 0,
        from: "Bench <bench@herald.example>".parse().unwrap(),
        to: vec!["u0@example.com".parse().unwrap()],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "Hello User 0".into(),
        text: Some("Hi User 0, your code is CODE-0.".into()),
        html: Some("<p>Hi User 0, your code is <b>CODE-0</b>.</p>".into()),
        headers: vec![],
    }
}

/// The raw ceiling over `conns` connections at once: `n` messages shared
/// out among `conns` loops like (a), so (b) is compared at equal connections.
async fn raw_parallel(sink: &SmtpSink, n: usize, conns: usize) -> Duration {
    let start = Instant::now();
    let loops: Vec<_> = (0..conns)
        .map(|c| {
            let port = sink.port;
            let share = n / conns + usize::from(c < n % conns);
            tokio::spawn(async move { raw_on(port, share, c).await })
        })
        .collect();
    for l in loops {
        l.await.unwrap();
    }
    start.elapsed()
}

async fn raw_loop(sink: &SmtpSink, n: usize) -> Duration {
    let start = Instant::now();
    raw_on(sink.port, n, 0).await;
    start.elapsed()
}

/// One connection sending `n` messages, one at a time.
async fn raw_on(port: u16, n: usize, lane: usize) {
    let email = bench_email();
    let mut client = SmtpClientBuilder::new("127.0.0.1", port)
        .unwrap()
        .implicit_tls(false)
        .connect_plain()
        .await
        .unwrap();
    client.stream.set_nodelay(true).unwrap();
    for i in 0..n {
        // Rendering the same message is part of the loop, as it is for the worker.
        let body =
            herald::smtp::build(&email, &format!("{lane}.{i}.bench.0@herald.example")).unwrap();
        let msg = Message {
            mail_from: Address::new("bench@herald.example", Parameters::default()),
            rcpt_to: vec![Address::new("u0@example.com", Parameters::default())],
            body: body.into(),
        };
        client.send(msg).await.unwrap();
    }
}

/// (b): how long, and the CPU per email of this process (worker and
/// sink), PostgreSQL and nats-server (µs).
async fn worker_e2e(backend: Backend, sink: &SmtpSink, n: usize) -> (Duration, (f64, f64, f64)) {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    herald::jetstream::ensure_stream(&js, &Default::default())
        .await
        .unwrap();
    publish_bench_events(&js, n).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bench.yaml"), BENCH_WORKFLOW).unwrap();
    let catalog = herald::workflow::load(dir.path()).unwrap();
    let wf = catalog.workflows[0].clone();
    let tdb = TestDb::new(backend).await;
    let worker = Arc::new(Worker::new(
        // As `herald worker` holds it: opened at start-up.
        herald::db::connect_with(&tdb.url, herald::db::Pool::Warm(16), "herald worker")
            .await
            .unwrap(),
        Arc::new(catalog),
        // Never more SMTP sessions than the raw baseline (a16) opens.
        Transport::from_url(&format!("{}?connections={}", sink.url(), connections())).unwrap(),
        Metrics::new(),
        WorkerConfig::default().concurrency(concurrency()),
    ));
    let before = sink.count();
    let stop = tokio_util::sync::CancellationToken::new();
    let cpu = Cpu::now(nats.pid());
    let start = Instant::now();
    let task = tokio::spawn(worker.clone().run(
        js.clone(),
        vec![wf],
        herald::health::Health::new(),
        stop.clone(),
    ));
    while sink.count() < before + n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let cpu = Cpu::now(nats.pid()).per_item_since(&cpu, n);
    stop.cancel();
    let _ = task.await;
    (took, cpu)
}

/// Wait until the relay made the stream and the worker bound its consumer.
async fn wait_until_bound(js: &async_nats::jetstream::Context) {
    loop {
        if let Ok(s) = js.get_stream("HERALD").await
            && s.get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-bench")
                .await
                .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Enqueue `total` events, `per_sec` a second; when each commit returned.
async fn enqueue_at_rate(
    db: &DatabaseConnection,
    per_sec: usize,
    total: usize,
) -> HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec as f64));
    let mut committed = HashMap::new();
    for i in 0..total {
        tick.tick().await;
        let txn = db.begin().await.unwrap();
        let id = enqueue(&txn, NewEvent::new("events.bench.sent", bench_payload(i)))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        // From the moment the commit returned: "commit → SMTP accepted".
        committed.insert(id.as_uuid(), chrono::Utc::now());
    }
    committed
}

/// Per event: [total, relay (commit → PubAck recorded), pickup (→ ledger
/// claim), send (claim → SMTP accepted), commit offset from the start].
async fn phase_samples(
    db: &DatabaseConnection,
    committed: &HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>,
    t0: chrono::DateTime<chrono::Utc>,
) -> Vec<[f64; 5]> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT d.event_id AS e, o.published_at AS p, d.created_at AS c, d.sent_at AS s \
             FROM herald_deliveries d JOIN herald_outbox o ON o.event_id = d.event_id",
        ))
        .await
        .unwrap();
    let ms = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0
    };
    // Per event: [total, relay (commit → PubAck recorded), pickup (→ ledger
    // claim), send (claim → SMTP accepted), commit offset from the start].
    rows.iter()
        .filter_map(|r| {
            let e: uuid::Uuid = r.try_get("", "e").ok()?;
            let c = *committed.get(&e)?;
            let p: chrono::DateTime<chrono::Utc> = r.try_get("", "p").ok()?;
            let cl: chrono::DateTime<chrono::Utc> = r.try_get("", "c").ok()?;
            let s: chrono::DateTime<chrono::Utc> = r.try_get("", "s").ok()?;
            Some([ms(c, s), ms(c, p), ms(p, cl), ms(cl, s), ms(t0, c)])
        })
        .collect()
}

async fn steady_latency(
    backend: Backend,
    sink: &SmtpSink,
    per_sec: usize,
    secs: u64,
) -> Option<Latency> {
    let bin = std::env::var("HERALD_BIN").ok()?;
    let nats = NatsServer::start().await;
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bench.yaml"), BENCH_WORKFLOW).unwrap();
    let mut env = HeraldEnv::default();
    env.set("HERALD_BIN", bin)
        .set("HERALD_DATABASE_URL", tdb.url.clone())
        .set("HERALD_NATS_URL", nats.url())
        .set("HERALD_SMTP_URL", sink.url())
        .set("HERALD_WORKFLOWS", dir.path().display().to_string());
    let poll = if backend == Backend::Sqlite {
        "25ms"
    } else {
        "200ms"
    };
    if std::env::var("HERALD_BENCH_DUMP").is_ok() {
        // The relay logs each batch's claim/publish/mark times at debug.
        env.set("HERALD_LOG", "herald=debug");
    }
    let mut relay = env.spawn(&["relay", "--relay-poll", poll]);
    let mut worker = env.spawn(&["worker"]);
    // Let both bind (stream, consumer) before the clock starts.
    let js = nats.jetstream().await;
    wait_until_bound(&js).await;
    let before = sink.count();
    let total = per_sec * secs as usize;
    let t0 = chrono::Utc::now();
    let committed = enqueue_at_rate(&db, per_sec, total).await;
    while sink.count() < before + total {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let samples = phase_samples(&db, &committed, t0).await;
    relay.terminate(Duration::from_secs(30)).await;
    worker.terminate(Duration::from_secs(30)).await;
    if let Ok(path) = std::env::var("HERALD_BENCH_DUMP") {
        let csv: String = samples
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1},{:.1},{:.1},{:.1}\n",
                    p[4], p[0], p[1], p[2], p[3]
                )
            })
            .collect();
        std::fs::write(format!("{path}.{backend:?}.csv"), csv).unwrap();
        std::fs::write(format!("{path}.{backend:?}.relay.log"), relay.log()).unwrap();
        std::fs::write(format!("{path}.{backend:?}.worker.log"), worker.log()).unwrap();
    }
    let phase = |i: usize| {
        let mut v: Vec<f64> = samples.iter().map(|x| x[i]).collect();
        [
            percentile_ms(&mut v, 50.0),
            percentile_ms(&mut v, 99.0),
            percentile_ms(&mut v, 100.0),
        ]
    };
    Some(Latency {
        n: samples.len(),
        total: phase(0),
        relay: phase(1),
        pickup: phase(2),
        send: phase(3),
    })
}

/// p50, p99 and max in ms of the whole path and of each leg.
struct Latency {
    n: usize,
    total: [f64; 3],
    relay: [f64; 3],
    pickup: [f64; 3],
    send: [f64; 3],
}

fn print_latency(backend: Backend, per_sec: usize, l: Option<Latency>) {
    let Some(l) = l else {
        println!("| {backend:?} | (c) skipped: set HERALD_BIN to a release herald | | | |");
        return;
    };
    let f = |x: [f64; 3]| format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", x[0], x[1], x[2]);
    println!(
        "| {backend:?} | commit→SMTP accepted at {per_sec}/s, relay + worker processes (c) | {} | {} | |",
        l.n,
        f(l.total)
    );
    for (leg, x) in [
        ("commit→published", l.relay),
        ("published→claimed", l.pickup),
        ("claimed→SMTP accepted", l.send),
    ] {
        println!("| {backend:?} | (c) leg {leg} | | {} | |", f(x));
    }
}

/// Where (b)'s CPU went, per email.
fn print_cpu(backend: Backend, (own, pg, nats): (f64, f64, f64)) {
    println!(
        "| {backend:?} | CPU per email, (b): this process (worker and sink) {own:.0} µs, PostgreSQL {pg:.0} µs, nats-server {nats:.0} µs | | {:.0} µs | |",
        own + pg + nats
    );
}

/// The SMTP connections of the raw baseline (a16) and the most the worker
/// may open (`?connections=`): HERALD_BENCH_CONNECTIONS, 16.
fn connections() -> usize {
    size("HERALD_BENCH_CONNECTIONS", 16)
}

/// The worker's deliveries in flight (HERALD_BENCH_CONCURRENCY, default
/// the connections, as `herald worker` with no `--concurrency`).
fn concurrency() -> usize {
    size("HERALD_BENCH_CONCURRENCY", connections())
}

fn main() {
    let n = size("HERALD_BENCH_EMAILS", 20_000);
    let per_sec = size("HERALD_BENCH_RATE", 500);
    let secs = size("HERALD_BENCH_STEADY_SECS", 5) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | measure | emails | result | ratio |\n|---|---|---|---|---|");
    rt.block_on(async {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let sink = SmtpSink::start().await;
            let only = std::env::var("HERALD_BENCH_ONLY").unwrap_or_default();
            if only == "worker" {
                // (b) alone, e.g. under `perf record`.
                let (ours, cpu) = worker_e2e(backend, &sink, n).await;
                println!("| {backend:?} | worker end to end, {} in flight over {} connections (b) | {n} | {:.0}/s | |", concurrency(), connections(), rate(n, ours));
                print_cpu(backend, cpu);
                continue;
            }
            if only != "latency" {
                let conns = connections();
                let raw = raw_loop(&sink, n).await;
                let cpu = Cpu::now(None);
                let par = raw_parallel(&sink, n, conns).await;
                let (raw_cpu, _, _) = Cpu::now(None).per_item_since(&cpu, n);
                let (ours, cpu) = worker_e2e(backend, &sink, n).await;
                let (r_raw, r_par, r_ours) = (rate(n, raw), rate(n, par), rate(n, ours));
                println!("| {backend:?} | raw mail-send loop, 1 connection (a) | {n} | {r_raw:.0}/s | |");
                println!("| {backend:?} | raw mail-send, {conns} connections at once (a{conns}) | {n} | {r_par:.0}/s | 1.00 |");
                println!("| {backend:?} | worker end to end, {} in flight over {conns} connections (b) | {n} | {r_ours:.0}/s | {:.2} of (a{conns}), {:.2} of (a) |", concurrency(), r_ours / r_par, r_ours / r_raw);
                println!("| {backend:?} | CPU per email, (a{conns}): this process (loops and sink) | | {raw_cpu:.0} µs | |");
                print_cpu(backend, cpu);
            }
            if only != "throughput" {
                print_latency(backend, per_sec, steady_latency(backend, &sink, per_sec, secs).await);
            }
        }
    });
}
