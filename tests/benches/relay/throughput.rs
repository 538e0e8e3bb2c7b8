//! The relay's throughput runs: `Relay::run` draining a backlog, timed to
//! the last publish; the repeated raw/relay pairs; the per-phase profile.
use std::time::{Duration, Instant};

use herald::metrics::Metrics;
use herald::relay::{Relay, RelayConfig};
use herald_tests::bench::{rate, size};
use herald_tests::db::Backend;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::{aggregates, fill, purge, raw_publish, raw_publish_at};

/// HERALD_BENCH_PHASES: one batch at a time (`run_once`), printing where
/// a batch's time goes: the profile BENCHMARKS.md reports.
async fn phases(relay_db: &DatabaseConnection, js: &async_nats::jetstream::Context) -> Duration {
    let relay = Relay::new(
        relay_db.clone(),
        js.clone(),
        RelayConfig::default(),
        Metrics::new(),
    );
    let start = Instant::now();
    let (mut batches, mut claim, mut publish, mut mark) = (0u64, 0, 0, 0);
    loop {
        let o = relay.run_once().await.unwrap();
        if o.claimed == 0 {
            let per = |ms: u64| ms as f64 / batches.max(1) as f64;
            eprintln!(
                "relay phases: {batches} batches, mean claim {:.1} ms, publish {:.1} ms, mark {:.1} ms",
                per(claim),
                per(publish),
                per(mark)
            );
            return start.elapsed();
        }
        batches += 1;
        claim += o.claim_ms;
        publish += o.publish_ms;
        mark += o.mark_ms;
    }
}

/// Herald's relay draining the backlog of `n` rows as `herald relay` runs
/// it (`Relay::run`, `in_flight` batches at once), timed until the last
/// row is published.
pub(super) async fn herald_relay(
    relay_db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
    n: usize,
    in_flight: usize,
) -> Duration {
    if std::env::var("HERALD_BENCH_PHASES").is_ok() {
        return phases(relay_db, js).await;
    }
    let metrics = Metrics::new();
    let relay = std::sync::Arc::new(Relay::new(
        relay_db.clone(),
        js.clone(),
        RelayConfig::default().in_flight(in_flight),
        metrics.clone(),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn({
        let (relay, stop) = (relay.clone(), stop.clone());
        async move { relay.run(herald::health::Health::new(), stop).await }
    });
    while (metrics.outbox_published.get() as usize) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    task.await.unwrap();
    took
}

/// (a) and (b) only, alternated HERALD_BENCH_REPEAT times (3): each pair's
/// ratio and their spread.
pub(super) async fn throughput_pairs(
    backend: Backend,
    n: usize,
    db: &DatabaseConnection,
    relay_db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
) {
    let (mut ratios, mut equal_ratios) = (Vec::new(), Vec::new());
    for run in 1..=size("HERALD_BENCH_REPEAT", 3) {
        let raw = rate(n, raw_publish(js, n).await);
        purge(js).await;
        // At the relay's depth: its batch size, 2 batches in flight.
        let batch = RelayConfig::default().batch_size as usize;
        let equal = rate(n, raw_publish_at(js, n, batch, 2).await);
        purge(js).await;
        let mut ours = [0.0; 2];
        for (k, in_flight) in [1, 2].into_iter().enumerate() {
            fill(db, n).await;
            ours[k] = rate(n, herald_relay(relay_db, js, n, in_flight).await);
            purge(js).await;
            db.execute_unprepared("DELETE FROM herald_outbox")
                .await
                .unwrap();
        }
        let [one, ours] = ours;
        println!(
            "| {backend:?} | run {run}: raw (a) {raw:.0}/s, relay 1 batch in flight {one:.0}/s ({:.2}) | {n} | aggregates {} | |",
            one / raw,
            aggregates(),
        );
        ratios.push(ours / raw);
        equal_ratios.push(ours / equal);
        println!(
            "| {backend:?} | run {run}: raw (a) {raw:.0}/s, relay (b) 2 in flight {ours:.0}/s | {n} | aggregates {} | {:.2} |",
            aggregates(),
            ours / raw
        );
        println!(
            "| {backend:?} | run {run}: raw at the relay's depth (a=, 2 × {batch}) {equal:.0}/s | {n} | | (b)/(a=) {:.2} |",
            ours / equal
        );
    }
    spread(backend, "(b)/(a=)", &mut equal_ratios);
    spread(backend, "(b)/(a)", &mut ratios);
}

/// The min, median and max of `ratios`, as a table row.
fn spread(backend: Backend, what: &str, ratios: &mut [f64]) {
    ratios.sort_by(f64::total_cmp);
    println!(
        "| {backend:?} | {what} over {} runs | | min {:.2}, median {:.2}, max {:.2} | |",
        ratios.len(),
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}
