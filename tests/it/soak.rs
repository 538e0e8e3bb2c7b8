//! The soak (tests/harness/soak/): relays and workers as processes on
//! PostgreSQL and a 3-node JetStream cluster, under a seeded chaos loop,
//! then the invariant checker. The suite runs 1,000 events;
//! `scripts/soak.sh` runs 10,000 (`HERALD_SOAK_EVENTS`), `HERALD_TEST_SEED`
//! replays a run.
use herald_tests::soak::{Soak, SoakConfig};

/// kill -9 of relays and workers, NATS node restarts (the stream leader
/// among them) and leader step-downs, a node's store wiped, the whole stream
/// deleted and republished, PostgreSQL connections terminated, 421 bursts,
/// sessions dropped after DATA, connections refused: nothing lost, no
/// duplicate outside the uncertain and accepted-but-unrecorded windows,
/// per-aggregate order kept, nothing stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_chaos_keeps_every_invariant() {
    let cfg = SoakConfig::from_env("soak_with_chaos_keeps_every_invariant");
    let report = Soak::start(cfg).await.run().await;
    let v = report.violations();
    assert!(v.is_empty(), "{}\n{}", report.summary(), v.join("\n"));
}

/// The same with the NATS nodes in network namespaces and the stream leader
/// partitioned from its peers and from Herald now and then. Where namespaces
/// cannot be created the run says so and goes on without partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_partitions_keeps_every_invariant() {
    let mut cfg = SoakConfig::from_env("soak_with_partitions_keeps_every_invariant");
    cfg.partitions = true;
    cfg.drill = false;
    let report = Soak::start(cfg).await.run().await;
    let v = report.violations();
    assert!(v.is_empty(), "{}\n{}", report.summary(), v.join("\n"));
}
