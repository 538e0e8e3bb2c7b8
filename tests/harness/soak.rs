//! The soak: N relays and M workers as separate `herald` processes on
//! PostgreSQL and a 3-node JetStream cluster (R3 stream), events over many
//! aggregates, a seeded chaos loop that overlaps faults, and an invariant
//! checker that reads the outbox, the stream, the ledger and the sink at the
//! end. `scripts/soak.sh` runs it big; the test suite runs it small.
//!
//! Sizes come from the environment (`HERALD_SOAK_EVENTS`, `_AGGREGATES`,
//! `_RELAYS`, `_WORKERS`, `_PRODUCE_SECS`), the seed from `HERALD_TEST_SEED`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::outbox::{NewEvent, enqueue};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use serde_json::json;

use crate::db::{Backend, TestDb, pg_admin_url};
use crate::nats::{NatsCluster, Placement};
use crate::netns::Netns;
use crate::process::{Herald, HeraldEnv};
use crate::smtp::{Outage, Reply, SmtpSink};
use crate::wait;

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

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub events: usize,
    /// Expected deliveries: event × workflow × recipient.
    pub expected: usize,
    pub sent: usize,
    pub dead_lettered: usize,
    pub emails: usize,
    pub lost: Vec<String>,
    pub duplicates_uncertain: usize,
    pub duplicates_unrecorded: usize,
    pub duplicates_unexplained: Vec<String>,
    pub order_violations: Vec<String>,
    pub stuck_outbox: i64,
    pub unfinished_deliveries: i64,
    pub stream_missing: usize,
    pub stream_duplicates: usize,
    pub faults: BTreeMap<&'static str, usize>,
    /// Bytes on disk per row, indexes included (for docs/capacity.md).
    pub outbox_bytes_per_row: i64,
    pub ledger_bytes_per_row: i64,
    pub produce_secs: f64,
    pub total_secs: f64,
    pub load: String,
    /// Processes that exited by themselves, or not cleanly on SIGTERM.
    pub exits: Vec<String>,
    /// Set when the run did not settle before its deadline.
    pub unsettled: String,
}

impl Report {
    /// Each broken invariant, one line each; empty when the run passed.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.unsettled.is_empty() {
            v.push(self.unsettled.clone());
        }
        let few = |xs: &[String]| xs.iter().take(10).cloned().collect::<Vec<_>>().join("; ");
        v.extend(self.exits.iter().cloned());
        if !self.lost.is_empty() {
            v.push(format!("lost {}: {}", self.lost.len(), few(&self.lost)));
        }
        if !self.duplicates_unexplained.is_empty() {
            v.push(format!(
                "duplicates outside the uncertain and accepted-but-unrecorded windows {}: {}",
                self.duplicates_unexplained.len(),
                few(&self.duplicates_unexplained)
            ));
        }
        if !self.order_violations.is_empty() {
            v.push(format!(
                "per-aggregate order violations {}: {}",
                self.order_violations.len(),
                few(&self.order_violations)
            ));
        }
        if self.stuck_outbox != 0 {
            v.push(format!("outbox rows stuck: {}", self.stuck_outbox));
        }
        if self.unfinished_deliveries != 0 {
            v.push(format!(
                "deliveries left unfinished (sending, retrying, uncertain): {}",
                self.unfinished_deliveries
            ));
        }
        if self.stream_missing != 0 {
            v.push(format!(
                "published events missing from the stream: {}",
                self.stream_missing
            ));
        }
        v
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} · {} events · {} deliveries expected: {} sent, {} dead-lettered · {} emails at the sink",
            self.seed, self.events, self.expected, self.sent, self.dead_lettered, self.emails
        );
        let _ = writeln!(
            s,
            "lost {} · duplicates {} (uncertain {}, accepted-but-unrecorded {}, unexplained {}) · order violations {} · stuck outbox {} · unfinished deliveries {} · stream: missing {}, duplicate ids {}",
            self.lost.len(),
            self.duplicates_uncertain
                + self.duplicates_unrecorded
                + self.duplicates_unexplained.len(),
            self.duplicates_uncertain,
            self.duplicates_unrecorded,
            self.duplicates_unexplained.len(),
            self.order_violations.len(),
            self.stuck_outbox,
            self.unfinished_deliveries,
            self.stream_missing,
            self.stream_duplicates
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let _ = writeln!(s, "faults: {}", faults.join(", "));
        let _ = writeln!(
            s,
            "on disk: outbox {} B/row, ledger {} B/row (indexes included)",
            self.outbox_bytes_per_row, self.ledger_bytes_per_row
        );
        let _ = writeln!(
            s,
            "produced in {:.1} s, all settled after {:.1} s; load average at the end: {}",
            self.produce_secs, self.total_secs, self.load
        );
        s
    }
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

impl Soak {
    /// Build the world and start the processes. With `partitions`, the
    /// nodes go into network namespaces; when they cannot be created the
    /// reason is printed and the run goes on without partitions.
    pub async fn start(mut cfg: SoakConfig) -> Soak {
        let seed = std::env::var("HERALD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        eprintln!("{}: HERALD_TEST_SEED={seed}", cfg.name);
        let began = Instant::now();
        let netns = if cfg.partitions {
            match Netns::create(3) {
                Ok(n) => Some(n),
                Err(why) => {
                    eprintln!(
                        "{}: SKIPPING network partitions: cannot create network namespaces here ({why})",
                        cfg.name
                    );
                    cfg.partitions = false;
                    None
                }
            }
        } else {
            None
        };
        let placement = netns
            .as_ref()
            .map(Netns::placement)
            .unwrap_or(Placement::Loopback);
        let cluster = NatsCluster::start_placed(placement).await;
        eprintln!(
            "{}: cluster up after {:.1} s",
            cfg.name,
            began.elapsed().as_secs_f64()
        );
        let db = TestDb::new(Backend::Postgres).await;
        let conn = db.connect().await;
        eprintln!(
            "{}: database ready after {:.1} s",
            cfg.name,
            began.elapsed().as_secs_f64()
        );
        let sink = SmtpSink::start().await;
        sink.reject_rcpt(
            &format!("audit{REFUSED_AGGREGATE}@example.com"),
            550,
            "5.7.1 mailbox refuses audit mail",
        );
        let dir = tempfile::tempdir().expect("workflows dir");
        std::fs::write(dir.path().join("notify.yaml"), NOTIFY).expect("write workflow");
        std::fs::write(dir.path().join("audit.yaml"), AUDIT).expect("write workflow");
        let mut h = HeraldEnv::default();
        h.set("HERALD_DATABASE_URL", db.url.clone())
            .set("HERALD_NATS_URL", cluster.urls())
            .set("HERALD_SMTP_URL", sink.url())
            .set("HERALD_WORKFLOWS", dir.path().display().to_string())
            .set("HERALD_LOG", "warn,herald=info");
        let mut s = Soak {
            rng: fastrand::Rng::with_seed(seed),
            seed,
            relays: Vec::new(),
            workers: Vec::new(),
            graveyard: Vec::new(),
            h,
            sink,
            conn,
            db,
            faults: Arc::new(Mutex::new(Vec::new())),
            cluster,
            _dir: dir,
            netns,
            cfg,
        };
        for _ in 0..s.cfg.relays {
            let r = s.spawn_relay();
            s.relays.push(r);
        }
        for _ in 0..s.cfg.workers {
            let w = s.spawn_worker();
            s.workers.push(w);
        }
        s
    }

    fn spawn_relay(&self) -> Herald {
        self.h.spawn(&[
            "relay",
            "--relay-poll",
            "100ms",
            "--relay-lease",
            "3s",
            "--stream-replicas",
            "3",
        ])
    }

    fn spawn_worker(&self) -> Herald {
        // Claims of a killed worker expire after the ack wait. Fewer
        // connections than the default 16: PostgreSQL's default
        // max_connections (100) is shared with everything else on the machine.
        self.h
            .spawn(&["worker", "--ack-wait", "10s", "--db-connections", "8"])
    }

    fn fault(&self, kind: &'static str, detail: String) {
        eprintln!("{}: fault: {kind} {detail}", self.cfg.name);
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fault {
                at: Instant::now(),
                kind,
                detail,
            });
    }

    /// Chaos while events are produced (and a little after), then quiet.
    async fn chaos(&mut self, start: Instant) {
        let chaos_until = start + self.cfg.produce_for + Duration::from_secs(10);
        let mut drilled = !self.cfg.drill;
        let mut wiped = !self.cfg.drill;
        while self.cfg.chaos && Instant::now() < chaos_until {
            let half = start + self.cfg.produce_for / 2;
            if !wiped && Instant::now() > start + self.cfg.produce_for / 4 {
                wiped = true;
                self.wipe_a_node().await;
            } else if !drilled && Instant::now() > half {
                drilled = true;
                self.lose_the_stream(start).await;
            } else {
                self.one_fault().await;
            }
            // The pause between faults (part of the chaos, not a wait for a
            // condition).
            tokio::time::sleep(Duration::from_millis(self.rng.u64(200..1500))).await;
        }
    }

    /// Every fault ends: the sink answers, every process and node runs.
    async fn end_every_fault(&mut self) {
        self.sink.set_outage(None);
        if let Some(n) = &self.netns {
            for i in 0..3 {
                let _ = n.heal(i);
            }
        }
        for node in &mut self.cluster.nodes {
            node.start_again().await;
        }
    }

    /// Wait until `expected` deliveries are resolved, saying how far it got
    /// every 30 s; false when the deadline passed first.
    async fn settle(&self, start: Instant, expected: usize) -> bool {
        // Not `wait::until`: when it does not settle, the checker still runs
        // and the report says what is missing and where it stands.
        let settle_start = Instant::now();
        let mut last_said = Instant::now();
        let mut settled = false;
        while settle_start.elapsed() < self.cfg.settle_deadline {
            let done = resolved(&self.conn).await;
            if done >= expected as i64 {
                settled = true;
                break;
            }
            if last_said.elapsed() > Duration::from_secs(30) {
                last_said = Instant::now();
                eprintln!(
                    "{}: {done} of {expected} deliveries resolved after {:.0} s",
                    self.cfg.name,
                    start.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        settled
    }

    /// No process may have exited by itself (a leader change, a node or
    /// the database going away are not reasons to), and each stops
    /// cleanly when asked.
    async fn stop_every_process(&mut self, report: &mut Report) {
        let names = (0..self.relays.len())
            .map(|i| format!("relay #{i}"))
            .chain((0..self.workers.len()).map(|i| format!("worker #{i}")));
        for (name, p) in names.zip(self.relays.iter_mut().chain(self.workers.iter_mut())) {
            if let Some(st) = p.try_status() {
                report.exits.push(format!("{name} exited by itself: {st}"));
            } else {
                let st = p.terminate(Duration::from_secs(60)).await;
                if st.code() != Some(0) {
                    report
                        .exits
                        .push(format!("{name} stopped with {st} on SIGTERM"));
                }
            }
        }
    }

    /// Run the whole soak and check the invariants; the report says what it found.
    pub async fn run(mut self) -> Report {
        let start = Instant::now();
        let producer = tokio::spawn(produce(
            self.conn.clone(),
            self.cfg.events,
            self.cfg.aggregates,
            self.cfg.produce_for,
        ));
        self.chaos(start).await;
        let produced = producer.await.expect("producer task");
        let produce_secs = produced.1.as_secs_f64();
        let produced = produced.0;
        self.end_every_fault().await;
        let expected = produced.len() + produced.iter().filter(|p| p.important).count();
        let settled = self.settle(start, expected).await;
        let mut report = self.check(&produced).await;
        self.stop_every_process(&mut report).await;
        if !settled {
            report.unsettled = format!(
                "not all {expected} deliveries sent or dead-lettered within {:?} after the chaos",
                self.cfg.settle_deadline
            );
        }
        report.produce_secs = produce_secs;
        report.total_secs = start.elapsed().as_secs_f64();
        report.load = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        eprintln!("{}: {}", self.cfg.name, report.summary());
        if !report.violations().is_empty() {
            self.dump_logs();
        }
        report
    }

    fn dump_logs(&self) {
        let all = self
            .relays
            .iter()
            .map(|r| ("relay".to_string(), r))
            .chain(self.workers.iter().map(|w| ("worker".to_string(), w)))
            .chain(self.graveyard.iter().map(|(n, p)| (n.clone(), p)));
        for (name, p) in all {
            let log = p.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("---- {name} (last 30 lines)\n{tail}");
        }
    }

    /// One random fault, chosen by the seeded generator.
    /// Kill -9 a relay and start another in its place.
    fn kill_a_relay(&mut self) {
        let i = self.rng.usize(..self.relays.len());
        let mut new = self.spawn_relay();
        std::mem::swap(&mut self.relays[i], &mut new);
        new.kill9();
        self.graveyard.push(("killed relay".into(), new));
        self.fault("kill relay", format!("#{i}"));
    }

    /// Kill -9 a worker and start another in its place.
    fn kill_a_worker(&mut self) {
        let i = self.rng.usize(..self.workers.len());
        self.workers[i].kill9();
        self.fault("kill worker", format!("#{i}"));
        let mut new = self.spawn_worker();
        std::mem::swap(&mut self.workers[i], &mut new);
        self.graveyard.push(("killed worker".into(), new));
    }

    /// A burst of 421 replies from the sink, for a random time.
    async fn smtp_421_burst(&mut self) {
        // A burst in time: what the senders do not meet within it
        // is dropped. (Left queued, each 421 would meet the first
        // send after the pause the previous one caused, and a burst
        // of 40 would last 40 of those pauses.)
        let n = self.rng.usize(5..40);
        let ms = self.rng.u64(500..3000);
        self.sink
            .script((0..n).map(|_| Reply::Code(421, "4.3.2 try again later".into())));
        self.fault("smtp 421 burst", format!("up to {n} replies in {ms} ms"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.sink.clear_script();
    }

    /// The sink drops a few sessions after DATA (accepted or not).
    fn smtp_drops_after_data(&mut self) {
        let n = self.rng.usize(1..6);
        let replies: Vec<Reply> = (0..n)
            .map(|_| {
                if self.rng.bool() {
                    Reply::AcceptThenDrop
                } else {
                    Reply::DropConnection
                }
            })
            .collect();
        self.sink.script(replies);
        self.fault("smtp drops after DATA", format!("{n} sessions"));
    }

    /// The sink refuses connections or greets with 421, for a random time.
    async fn smtp_outage(&mut self) {
        let (outage, kind) = if self.rng.bool() {
            (Outage::Refuse, "smtp refuses connections")
        } else {
            (Outage::Greet421, "smtp greets 421")
        };
        let ms = self.rng.u64(1000..4000);
        self.sink.set_outage(Some(outage));
        self.fault(kind, format!("{ms} ms"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.sink.set_outage(None);
    }

    async fn one_fault(&mut self) {
        match self.rng.u32(0..100) {
            0..12 => self.kill_a_relay(),
            12..27 => self.kill_a_worker(),
            27..40 if self.cfg.partitions => self.partition_the_leader().await,
            27..40 => self.restart_a_node().await,
            40..55 => {
                let which = match self.rng.u32(0..3) {
                    0 => "'herald relay'",
                    1 => "'herald worker'",
                    _ => "'herald relay', 'herald worker'",
                };
                self.terminate_connections(which).await;
                self.fault("terminate db connections", which.into());
            }
            55..67 => self.smtp_421_burst().await,
            67..79 => self.smtp_drops_after_data(),
            79..90 => self.smtp_outage().await,
            90..95 => {
                if self.cluster.step_down("HERALD").await {
                    self.fault("leader step-down", String::new());
                }
            }
            _ => {
                if self.cfg.partitions {
                    self.partition_the_leader().await;
                } else {
                    self.restart_a_node().await;
                }
            }
        }
    }

    /// Kill -9 a node (the stream leader half the time) and start it again
    /// on its store, once the stream has all three replicas current (R3
    /// survives one node down, not two).
    async fn restart_a_node(&mut self) {
        if !self.cluster.stream_healthy("HERALD").await {
            return;
        }
        let leader = self.cluster.stream_leader("HERALD").await;
        let (i, which) = match leader {
            Some(l) if self.rng.bool() => (l, "the leader"),
            _ => (self.rng.usize(..3), "a node"),
        };
        self.cluster.nodes[i].kill();
        self.fault("restart nats node", format!("n{i} ({which})"));
        tokio::time::sleep(Duration::from_millis(self.rng.u64(500..3000))).await;
        self.cluster.nodes[i].start_again().await;
    }

    /// A node loses its disk: killed, its JetStream store deleted, started
    /// empty; it must catch up from the other two.
    async fn wipe_a_node(&mut self) {
        let healthy = self.cluster.stream_healthy("HERALD").await;
        wait::until(
            "the stream has three current replicas",
            wait::DEFAULT,
            || self.cluster.stream_healthy("HERALD"),
        )
        .await;
        let i = self.rng.usize(..3);
        self.cluster.nodes[i].kill_and_wipe();
        self.fault(
            "wipe a node's store",
            format!("n{i} (stream healthy before: {healthy})"),
        );
        tokio::time::sleep(Duration::from_millis(self.rng.u64(500..2000))).await;
        self.cluster.nodes[i].start_again().await;
    }

    /// The whole stream is lost (deleted); a relay recreates it with its
    /// settings, then `herald outbox republish --since` restores the
    /// events published before.
    async fn lose_the_stream(&mut self, start: Instant) {
        let js = self.cluster.jetstream().await;
        wait::until("the stream is deleted", wait::DEFAULT, || {
            let js = js.clone();
            async move { js.delete_stream("HERALD").await.is_ok() }
        })
        .await;
        self.fault("delete the stream", String::new());
        wait::until(
            "a relay recreates the stream with three replicas",
            wait::DEFAULT,
            || {
                let js = js.clone();
                async move {
                    js.get_stream("HERALD")
                        .await
                        .is_ok_and(|s| s.cached_info().config.num_replicas == 3)
                }
            },
        )
        .await;
        let since = format!("{}s", start.elapsed().as_secs() + 60);
        let out =
            crate::scenario::run_off_runtime(&self.h, &["outbox", "republish", "--since", &since])
                .await;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "republish failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.fault("republish", text);
    }

    /// Cut the stream leader off from its peers and from Herald for a few
    /// seconds, then join it again.
    async fn partition_the_leader(&mut self) {
        if !self.cluster.stream_healthy("HERALD").await {
            return;
        }
        let Some(l) = self.cluster.stream_leader("HERALD").await else {
            return;
        };
        let Some(n) = &self.netns else { return };
        if let Err(e) = n.isolate(l) {
            eprintln!("{}: cannot partition n{l}: {e}", self.cfg.name);
            return;
        }
        let ms = self.rng.u64(3000..8000);
        self.fault("partition the leader", format!("n{l} for {ms} ms"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Some(n) = &self.netns {
            let _ = n.heal(l);
        }
    }

    /// pg_terminate_backend on the processes' connections, by the
    /// application_name each role sets (the harness's own are not touched).
    async fn terminate_connections(&self, names: &str) {
        let Ok(admin) = sea_orm::Database::connect(pg_admin_url()).await else {
            return;
        };
        let db_name = self.db.url.rsplit('/').next().unwrap_or_default();
        let _ = admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db_name}' AND application_name IN ({names})"
            ))
            .await;
        let _ = admin.close().await;
    }

    /// Read the outbox, the stream, the ledger and the sink; say what holds.
    async fn check(&self, produced: &[Produced]) -> Report {
        let mut r = Report {
            seed: self.seed,
            events: produced.len(),
            ..Default::default()
        };
        for f in self.faults.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            *r.faults.entry(f.kind).or_default() += 1;
        }
        let faults = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();

        // The ledger and the dead letters.
        let ledger = by_event_and_workflow(
            &self.conn,
            "SELECT event_id, workflow, state FROM herald_deliveries",
        )
        .await;
        let dead = by_event_and_workflow(
            &self.conn,
            "SELECT event_id, workflow, reason FROM herald_dead_letters WHERE discarded_at IS NULL",
        )
        .await;

        // The sink: copies per Message-ID, in the order they arrived.
        let received = self.sink.received();
        r.emails = received.len();
        let mut copies: HashMap<String, Vec<&crate::smtp::Received>> = HashMap::new();
        for m in &received {
            copies.entry(m.message_id()).or_default().push(m);
        }

        check_lost(&mut r, produced, &ledger, &dead, &copies);
        check_duplicates(&mut r, &copies, &faults);
        check_order(&mut r, produced, &received);

        // Stuck rows and unfinished deliveries.
        r.stuck_outbox = scalar(
            &self.conn,
            "SELECT COUNT(*) FROM herald_outbox WHERE published_at IS NULL",
        )
        .await;
        r.unfinished_deliveries = scalar(
            &self.conn,
            "SELECT COUNT(*) FROM herald_deliveries WHERE state IN ('sending', 'retrying', 'uncertain')",
        )
        .await;

        r.outbox_bytes_per_row = scalar(
            &self.conn,
            "SELECT (pg_total_relation_size('herald_outbox') / GREATEST(COUNT(*), 1))::bigint FROM herald_outbox",
        )
        .await;
        r.ledger_bytes_per_row = scalar(
            &self.conn,
            "SELECT (pg_total_relation_size('herald_deliveries') / GREATEST(COUNT(*), 1))::bigint FROM herald_deliveries",
        )
        .await;

        self.check_stream(&mut r, produced).await;
        r
    }

    /// The stream holds every published event (after the drill, thanks
    /// to republish), each id once.
    async fn check_stream(&self, r: &mut Report, produced: &[Produced]) {
        let js = self.cluster.jetstream().await;
        // Right after the last partition heals the cluster may still be
        // electing a leader ("JetStream system temporarily unavailable"):
        // read the stream once it answers with a leader.
        crate::wait::until(
            "the stream answers, with a leader",
            Duration::from_secs(120),
            || async {
                js.get_stream("HERALD").await.is_ok_and(|s| {
                    s.cached_info()
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.leader.is_some())
                })
            },
        )
        .await;
        let total = match js.get_stream("HERALD").await {
            Ok(s) => s.cached_info().state.messages as usize,
            Err(_) => 0,
        };
        let msgs = crate::env::stream_messages_of(&js, total).await;
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for m in &msgs {
            *ids.entry(m.msg_id.as_str()).or_default() += 1;
        }
        r.stream_duplicates = ids.values().filter(|c| **c > 1).count();
        r.stream_missing = produced
            .iter()
            .filter(|p| !ids.contains_key(p.id.to_string().as_str()))
            .count();
    }
}

/// `(event_id, workflow) → third column` of a query's rows.
async fn by_event_and_workflow(
    conn: &DatabaseConnection,
    sql: &str,
) -> HashMap<(uuid::Uuid, String), String> {
    rows(conn, sql)
        .await
        .into_iter()
        .filter_map(|row| {
            Some((
                (
                    row.try_get_by_index::<uuid::Uuid>(0).ok()?,
                    row.try_get_by_index::<String>(1).ok()?,
                ),
                row.try_get_by_index::<String>(2).ok()?,
            ))
        })
        .collect()
}

/// Copies of each email at the sink, by Message-ID.
type Copies<'a> = HashMap<String, Vec<&'a crate::smtp::Received>>;

/// Lost: every event × workflow × recipient sent (and at the sink) or
/// dead-lettered with a reason.
fn check_lost(
    r: &mut Report,
    produced: &[Produced],
    ledger: &HashMap<(uuid::Uuid, String), String>,
    dead: &HashMap<(uuid::Uuid, String), String>,
    copies: &Copies,
) {
    let mut expected: Vec<(&Produced, &str)> = Vec::new();
    for p in produced {
        expected.push((p, "notify"));
        if p.important {
            expected.push((p, "audit"));
        }
    }
    r.expected = expected.len();
    for (p, wf) in &expected {
        let key = (p.id, wf.to_string());
        let mid = format!("<{}.{wf}.0@soak.example>", p.id);
        let at_sink = copies.contains_key(&mid);
        match (ledger.get(&key), dead.get(&key)) {
            (Some(state), _) if state == "sent" && at_sink => r.sent += 1,
            (Some(state), _) if state == "sent" => r
                .lost
                .push(format!("{wf} {} recorded sent, never at the sink", p.id)),
            (_, Some(reason)) if !reason.trim().is_empty() => r.dead_lettered += 1,
            (l, d) => r.lost.push(format!(
                "{wf} {} (agg {} n {}): ledger {l:?}, dead letter {d:?}",
                p.id, p.agg, p.n
            )),
        }
    }
}

/// Duplicates: each copy after the first needs a cause.
fn check_duplicates(r: &mut Report, copies: &Copies, faults: &[Fault]) {
    for (mid, cs) in copies {
        for pair in cs.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            if !prev.replied {
                r.duplicates_uncertain += 1;
            } else if faults
                .iter()
                .any(|f| UNRECORDED_WINDOW.contains(&f.kind) && f.at >= prev.at && f.at <= next.at)
            {
                r.duplicates_unrecorded += 1;
            } else {
                r.duplicates_unexplained.push(format!(
                    "{mid}: a copy {:?} after one acknowledged, no fault between",
                    next.at.duration_since(prev.at)
                ));
            }
        }
    }
}

/// Order: per workflow and aggregate, the first copies arrive in the
/// order the events were produced.
fn check_order(r: &mut Report, produced: &[Produced], received: &[crate::smtp::Received]) {
    let by_id: HashMap<String, &Produced> =
        produced.iter().map(|p| (p.id.to_string(), p)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last: HashMap<(String, usize), usize> = HashMap::new();
    for m in received {
        let mid = m.message_id();
        if !seen.insert(mid.clone()) {
            continue;
        }
        let inner = mid.trim_matches(['<', '>']);
        let mut parts = inner.splitn(3, '.');
        let (Some(id), Some(wf)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(p) = by_id.get(id) else { continue };
        if let Some(prev) = last.insert((wf.to_string(), p.agg), p.n)
            && prev >= p.n
        {
            r.order_violations.push(format!(
                "{wf} aggregate {}: event {} emailed after event {prev}",
                p.agg, p.n
            ));
        }
    }
}

/// Deliveries resolved: sent, or dead-lettered (a ledger row, or a dead
/// letter for an event held as a whole).
async fn resolved(conn: &DatabaseConnection) -> i64 {
    scalar(
        conn,
        "SELECT COUNT(*) FROM (SELECT event_id, workflow FROM herald_deliveries WHERE state IN ('sent', 'dead') \
         UNION SELECT event_id, workflow FROM herald_dead_letters WHERE discarded_at IS NULL) t",
    )
    .await
}

async fn rows(conn: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("query")
}

async fn scalar(conn: &DatabaseConnection, sql: &str) -> i64 {
    rows(conn, sql)
        .await
        .first()
        .and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .unwrap_or(-1)
}

/// Commit `n` events over `aggregates` aggregates in transactions of 20,
/// evenly over `over`: the application's side, on the harness's own
/// connection (which the chaos never terminates). Event i belongs to
/// aggregate i % aggregates; its `n` counts that aggregate's events.
async fn produce(
    conn: DatabaseConnection,
    n: usize,
    aggregates: usize,
    over: Duration,
) -> (Vec<Produced>, Duration) {
    let start = Instant::now();
    let per_txn = 20;
    let txns = n.div_ceil(per_txn).max(1);
    let mut out = Vec::with_capacity(n);
    for t in 0..txns {
        let txn = conn.begin().await.expect("begin");
        for i in t * per_txn..((t + 1) * per_txn).min(n) {
            let (agg, k) = (i % aggregates, i / aggregates);
            let important = i % 5 == 0;
            let subject = if important {
                "events.soak.important"
            } else {
                "events.soak.normal"
            };
            let id = enqueue(
                &txn,
                NewEvent::new(subject, json!({"agg": agg, "n": k})).aggregate("acct", agg),
            )
            .await
            .expect("enqueue");
            out.push(Produced {
                id: id.as_uuid(),
                agg,
                n: k,
                important,
            });
        }
        txn.commit().await.expect("commit");
        // Pacing the producer (load shape, not a wait for a condition).
        let due = start + over.mul_f64((t + 1) as f64 / txns as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    (out, start.elapsed())
}
