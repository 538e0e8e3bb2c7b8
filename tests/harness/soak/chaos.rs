//! The chaos loop: one seeded fault after another (processes killed, the
//! sink down, nodes restarted or wiped, the stream lost, a partition).
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

use super::Soak;
use crate::db::pg_admin_url;
use crate::smtp::{Outage, Reply};
use crate::wait;

impl Soak {
    /// Chaos while events are produced (and a little after), then quiet.
    pub(super) async fn chaos(&mut self, start: Instant) {
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
    pub(super) async fn end_every_fault(&mut self) {
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
}
