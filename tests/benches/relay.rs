//! Relay benchmark (BENCHMARKS.md). In one run, per backend:
//! (a) raw pipelined JetStream publishing of the same messages (the ceiling),
//! (b) Herald's relay draining a pre-filled backlog,
//! (c) a naive relay (select one, publish, await, update one),
//! (d) commit → PubAck latency at a steady 1,000 events/s.
//! Sizes: HERALD_BENCH_EVENTS (100000), HERALD_BENCH_NAIVE (2000), HERALD_BENCH_STEADY_SECS (5).
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use herald::metrics::Metrics;
use herald::outbox::{NewEvent, enqueue};
use herald::relay::{Relay, RelayConfig};
use herald_tests::bench::{percentile_ms, rate, size};
use herald_tests::db::{Backend, TestDb};
use herald_tests::nats::NatsServer;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement, TransactionTrait};
use serde_json::json;

#[path = "relay/throughput.rs"]
mod throughput;
use throughput::{herald_relay, throughput_pairs};

fn payload(i: usize) -> serde_json::Value {
    json!({"contract_id": i, "status": "signed", "player": {"name": "Sam Lee"},
           "parent": {"name": "Alex Lee", "email": "alex@example.com"},
           "team": {"name": "U12 Tigers", "groupme_share_url": "https://groupme.com/join_group/123/abc"}})
}

/// Aggregates the events are spread over (HERALD_BENCH_AGGREGATES): 100
/// by default, so a batch of 500 holds five rows of each (published in five
/// rounds); `0` gives every event an aggregate of its own.
fn aggregates() -> usize {
    size("HERALD_BENCH_AGGREGATES", 100)
}

/// The aggregate id of the `i`-th event.
fn aggregate_of(i: usize) -> usize {
    match aggregates() {
        0 => i,
        a => i % a,
    }
}

async fn fill(db: &DatabaseConnection, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let txn = db.begin().await.unwrap();
        for &i in chunk {
            enqueue(
                &txn,
                NewEvent::new("events.contract.signed", payload(i))
                    .aggregate("contract", aggregate_of(i)),
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }
}

async fn purge(js: &async_nats::jetstream::Context) {
    js.get_stream("HERALD")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
}

async fn raw_publish(js: &async_nats::jetstream::Context, n: usize) -> Duration {
    // Fully pipelined, in windows of 4,000 (under async-nats' default cap of
    // 5,000 acks in flight): the fastest this client publishes.
    raw_publish_at(js, n, 4000, 1).await
}

/// `n` publishes by `lanes` publishers at once, each publishing a `window`
/// and awaiting its acks before the next: at `window` = the relay's batch
/// size and `lanes` = its batches in flight, the same pipeline depth as
/// the relay's.
async fn raw_publish_at(
    js: &async_nats::jetstream::Context,
    n: usize,
    window: usize,
    lanes: usize,
) -> Duration {
    let body = bytes::Bytes::from(payload(0).to_string());
    let start = Instant::now();
    let tasks: Vec<_> = (0..lanes)
        .map(|lane| {
            let (js, body) = (js.clone(), body.clone());
            let mine: Vec<usize> = (lane..n).step_by(lanes).collect();
            tokio::spawn(async move {
                for w in mine.chunks(window) {
                    let mut acks = Vec::with_capacity(w.len());
                    for &i in w {
                        let mut h = HeaderMap::new();
                        h.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                        h.insert(
                            "Herald-Aggregate",
                            format!("contract/{}", aggregate_of(i)).as_str(),
                        );
                        acks.push(
                            js.publish_with_headers("events.contract.signed", h, body.clone())
                                .await
                                .unwrap(),
                        );
                    }
                    for a in acks {
                        a.await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// What the hand-written relays of the use cases do: one row at a time.
async fn naive_relay(
    db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
) -> (usize, Duration) {
    let backend = db.get_database_backend();
    let (p1, p2) = if backend == sea_orm::DbBackend::Postgres {
        ("$1", "$2")
    } else {
        ("?1", "?2")
    };
    let start = Instant::now();
    let mut n = 0;
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT seq, event_id, subject, payload FROM herald_outbox WHERE published_at IS NULL ORDER BY seq LIMIT 1",
            ))
            .await
            .unwrap();
        let Some(row) = row else {
            return (n, start.elapsed());
        };
        let seq: i64 = row.try_get("", "seq").unwrap();
        let id: uuid::Uuid = row.try_get("", "event_id").unwrap();
        let subject: String = row.try_get("", "subject").unwrap();
        let body: String = row.try_get("", "payload").unwrap();
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", id.to_string().as_str());
        js.publish_with_headers(subject, h, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("UPDATE herald_outbox SET published_at = {p1} WHERE seq = {p2}"),
            [chrono::Utc::now().into(), seq.into()],
        ))
        .await
        .unwrap();
        n += 1;
    }
}

/// Commit one event per millisecond for `secs` with the relay running; the
/// latency of each row is published_at - created_at, read back from the table.
async fn steady_latency(
    db: &DatabaseConnection,
    relay_db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
    poll: Duration,
    secs: u64,
) -> (usize, f64, f64) {
    db.execute_unprepared("DELETE FROM herald_outbox")
        .await
        .unwrap();
    let relay = Relay::new(
        relay_db.clone(),
        js.clone(),
        RelayConfig::default().poll_interval(poll),
        Metrics::new(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(herald::health::Health::new(), stop).await }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0;
    // Latency is measured from the moment the commit returned (the issue's
    // "commit → PubAck"); created_at is taken before the insert and would add
    // the enqueuing transaction's own commit time.
    let mut committed = std::collections::HashMap::new();
    while Instant::now() < end {
        tick.tick().await;
        let txn = db.begin().await.unwrap();
        let id = enqueue(
            &txn,
            NewEvent::new("events.contract.signed", payload(i))
                .aggregate("contract", aggregate_of(i)),
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        committed.insert(id.as_uuid(), chrono::Utc::now());
        i += 1;
    }
    loop {
        let left = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM herald_outbox WHERE published_at IS NULL",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let rows = herald_entities::outbox::Entity::find()
        .all(db)
        .await
        .unwrap();
    let mut lat: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let c = committed.get(&r.event_id)?;
            r.published_at
                .map(|p| (p - *c).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0)
        })
        .collect();
    let n = lat.len();
    (
        n,
        percentile_ms(&mut lat, 50.0),
        percentile_ms(&mut lat, 99.0),
    )
}

/// The durability setting: the same raw publishing against a server that
/// fsyncs every write (`sync_interval: always`).
async fn raw_publish_synced(n: usize) -> Duration {
    let synced = NatsServer::start_with_jetstream("sync_interval: always").await;
    let sjs = synced.jetstream().await;
    herald::jetstream::ensure_stream(&sjs, &Default::default())
        .await
        .unwrap();
    let raw_synced = raw_publish(&sjs, n).await;
    drop(synced);
    raw_synced
}

/// Herald's relay over an outbox of `n` rows: how long it took; the stream
/// holds them all.
async fn herald_relay_over_a_full_outbox(
    db: &DatabaseConnection,
    relay_db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
    n: usize,
) -> Duration {
    fill(db, n).await;
    let ours = herald_relay(relay_db, js, n, RelayConfig::default().in_flight).await;
    assert_eq!(
        js.get_stream("HERALD")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages as usize,
        n
    );
    purge(js).await;
    ours
}

async fn bench(backend: Backend) {
    let n = size("HERALD_BENCH_EVENTS", 100_000);
    let naive_n = size("HERALD_BENCH_NAIVE", 2_000);
    let secs = size("HERALD_BENCH_STEADY_SECS", 5) as u64;
    let nats = NatsServer::start().await;
    let tdb = TestDb::new(backend).await;
    // The application's pool (filling the outbox) and the relay's own, as
    // `herald relay` holds it: opened at start-up.
    let db = tdb.connect().await;
    let relay_db = herald::db::connect_with(&tdb.url, herald::db::Pool::Warm(4), "herald relay")
        .await
        .unwrap();
    let js = nats.jetstream().await;
    herald::jetstream::ensure_stream(&js, &Default::default())
        .await
        .unwrap();

    if std::env::var("HERALD_BENCH_ONLY").as_deref() == Ok("throughput") {
        return throughput_pairs(backend, n, &db, &relay_db, &js).await;
    }
    let raw = raw_publish(&js, n).await;
    purge(&js).await;

    let ours = herald_relay_over_a_full_outbox(&db, &relay_db, &js, n).await;
    db.execute_unprepared("DELETE FROM herald_outbox")
        .await
        .unwrap();

    fill(&db, naive_n).await;
    let (nn, naive) = naive_relay(&db, &js).await;
    purge(&js).await;

    let poll = if backend == Backend::Sqlite {
        Duration::from_millis(25)
    } else {
        RelayConfig::default().poll_interval
    };
    let (ln, p50, p99) = steady_latency(&db, &relay_db, &js, poll, secs).await;

    let raw_synced = raw_publish_synced(n).await;

    let (r_raw, r_ours, r_naive) = (rate(n, raw), rate(n, ours), rate(nn, naive));
    let r_synced = rate(n, raw_synced);
    println!("| {backend:?} | raw publish (a) | {n} | {r_raw:.0}/s | 1.00 |");
    println!(
        "| {backend:?} | herald relay (b) | {n} | {r_ours:.0}/s | {:.2} of (a) |",
        r_ours / r_raw
    );
    println!(
        "| {backend:?} | naive relay (c) | {nn} | {r_naive:.0}/s | (b) is {:.1}x (c) |",
        r_ours / r_naive
    );
    println!(
        "| {backend:?} | raw publish, sync_interval: always (e) | {n} | {r_synced:.0}/s | {:.2} of (a) |",
        r_synced / r_raw
    );
    println!(
        "| {backend:?} | commit→PubAck at 1,000/s (d) | {ln} | p50 {p50:.1} ms, p99 {p99:.1} ms (poll {poll:?}) | |"
    );
}

/// HERALD_BENCH_BACKEND: `postgres`, `sqlite`, or both (unset).
fn wanted(b: Backend) -> bool {
    match std::env::var("HERALD_BENCH_BACKEND").as_deref() {
        Ok("postgres") => b == Backend::Postgres,
        Ok("sqlite") => b == Backend::Sqlite,
        _ => true,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | measure | events | result | ratio |\n|---|---|---|---|---|");
    rt.block_on(async {
        for b in [Backend::Postgres, Backend::Sqlite] {
            if wanted(b) {
                bench(b).await;
            }
        }
    });
}
