//! Running the soak: building the world, spawning relays and workers,
//! producing events, waiting for the deliveries to settle, stopping cleanly.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::outbox::{NewEvent, enqueue};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::json;

use super::check::resolved;
use super::{AUDIT, Fault, NOTIFY, Produced, REFUSED_AGGREGATE, Report, Soak, SoakConfig};
use crate::db::{Backend, TestDb};
use crate::nats::{NatsCluster, Placement};
use crate::netns::Netns;
use crate::process::{Herald, HeraldEnv};
use crate::smtp::SmtpSink;

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

    pub(super) fn spawn_relay(&self) -> Herald {
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

    pub(super) fn spawn_worker(&self) -> Herald {
        // Claims of a killed worker expire after the ack wait. Fewer
        // connections than the default 16: PostgreSQL's default
        // max_connections (100) is shared with everything else on the machine.
        self.h
            .spawn(&["worker", "--ack-wait", "10s", "--db-connections", "8"])
    }

    pub(super) fn fault(&self, kind: &'static str, detail: String) {
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
