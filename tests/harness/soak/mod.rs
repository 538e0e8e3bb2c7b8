//! The soak: N relays and M workers as separate `herald` processes on
//! PostgreSQL and a 3-node JetStream cluster (R3 stream), events over many
//! aggregates, a seeded chaos loop that overlaps faults, and an invariant
//! checker that reads the outbox, the stream, the ledger and the sink at the
//! end. `scripts/soak.sh` runs it big; the test suite runs it small.
//!
//! Sizes come from the environment (`HERALD_SOAK_EVENTS`, `_AGGREGATES`,
//! `_RELAYS`, `_WORKERS`, `_PRODUCE_SECS`), the seed from `HERALD_TEST_SEED`.
mod chaos;
mod check;
mod report;
mod runner;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use crate::db::TestDb;
use crate::nats::NatsCluster;
use crate::netns::Netns;
use crate::process::{Herald, HeraldEnv};
use crate::smtp::SmtpSink;

pub use report::Report;

/// Every event goes to its aggregate's address; every fifth is "important"
/// and also goes to the aggregate's audit address (a second consumer).
const NOTIFY: &str = r#"
name: notify
on: { subjects: ["events.soak.>"] }
email:
  from: "Soak <noreply@soak.example>"
  to: "a{{event.agg}}@example.com"
  subject: "n={{event.n}}"
  text: "aggregate {{event.agg}} event {{event.n}}"
retry:
  max_attempts: 200
  backoff: { initial: 50ms, max: 1s }
"#;

const AUDIT: &str = r#"
name: audit
on: { subjects: ["events.soak.important"] }
email:
  from: "Soak <noreply@soak.example>"
  to: "audit{{event.agg}}@example.com"
  subject: "n={{event.n}}"
  text: "audit of aggregate {{event.agg}} event {{event.n}}"
retry:
  max_attempts: 200
  backoff: { initial: 50ms, max: 1s }
"#;

/// The aggregate whose audit address the sink refuses for good (550; every
/// fifth event is important, so aggregate 5 has audit events): its
/// first audit event is dead-lettered, the later ones held behind it. The
/// checker counts them as dead-lettered with a reason, not lost.
const REFUSED_AGGREGATE: usize = 5;

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub name: String,
    pub events: usize,
    pub aggregates: usize,
    pub relays: usize,
    pub workers: usize,
    /// Events are committed evenly over this long (while the chaos runs).
    pub produce_for: Duration,
    /// Faults on, or a clean run.
    pub chaos: bool,
    /// Durability drill: one node's store wiped, and the whole stream
    /// deleted then restored with `herald outbox republish --since`.
    pub drill: bool,
    /// NATS nodes in network namespaces, the leader partitioned now and then.
    pub partitions: bool,
    /// For everything to be delivered after the chaos ends.
    pub settle_deadline: Duration,
}

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl SoakConfig {
    /// The suite's default (1,000 events over 100 aggregates, 2 relays, 2
    /// workers, 20 s of production), overridden by `HERALD_SOAK_*`.
    pub fn from_env(name: &str) -> SoakConfig {
        let events = env_usize("HERALD_SOAK_EVENTS", 1_000);
        SoakConfig {
            name: name.to_string(),
            events,
            aggregates: env_usize("HERALD_SOAK_AGGREGATES", (events / 20).max(1)),
            relays: env_usize("HERALD_SOAK_RELAYS", 2),
            workers: env_usize("HERALD_SOAK_WORKERS", 2),
            produce_for: Duration::from_secs(env_usize(
                "HERALD_SOAK_PRODUCE_SECS",
                (events / 50).clamp(20, 600),
            ) as u64),
            chaos: true,
            drill: true,
            partitions: false,
            settle_deadline: Duration::from_secs(env_usize(
                "HERALD_SOAK_SETTLE_SECS",
                300 + events / 20,
            ) as u64),
        }
    }
}

/// One fault the chaos loop caused, and when.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Instant,
    pub kind: &'static str,
    pub detail: String,
}

/// Faults that can leave an email accepted by the server and not recorded
/// in the ledger (the worker dies, or its database connection does, between
/// the 250 and the commit): the one window, besides `uncertain`, where a
/// duplicate is allowed.
const UNRECORDED_WINDOW: [&str; 2] = ["kill worker", "terminate db connections"];

/// One event as the producer committed it.
#[derive(Debug, Clone)]
struct Produced {
    id: uuid::Uuid,
    agg: usize,
    n: usize,
    important: bool,
}

/// The running soak world. Field order is drop order: processes, then the
/// cluster, then the namespaces its nodes live in.
pub struct Soak {
    cfg: SoakConfig,
    rng: fastrand::Rng,
    seed: u64,
    relays: Vec<Herald>,
    workers: Vec<Herald>,
    /// Killed processes, kept for their logs.
    graveyard: Vec<(String, Herald)>,
    h: HeraldEnv,
    sink: SmtpSink,
    conn: DatabaseConnection,
    db: TestDb,
    faults: Arc<Mutex<Vec<Fault>>>,
    cluster: NatsCluster,
    _dir: tempfile::TempDir,
    netns: Option<Netns>,
}
