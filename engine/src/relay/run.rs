//! The relay's loop: batches in flight, backoff and health, the periodic
//! work beside it (statistics, gauges, retention, a lost stream).
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use chrono::Utc;
use sea_orm::DbBackend;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BatchOutcome, Relay, RelayError, RelayErrorKind, listen};
use crate::health::{self, Check, Health};
use crate::outbox::store;

/// The relay's current failure, shared by its batches in flight.
type Failing = Mutex<Option<(RelayErrorKind, String)>>;

impl Relay {
    /// Publish until `stop` is cancelled (the batch in hand is finished).
    /// Errors of the database or NATS never end the loop: they are logged
    /// once per change of state, reported in `health`, and retried with
    /// backoff.
    ///
    /// ```no_run
    /// # async fn example(relay: herald::relay::Relay) {
    /// use tokio_util::sync::CancellationToken;
    /// let stop = CancellationToken::new();
    /// let on_signal = stop.clone();
    /// tokio::spawn(async move {
    ///     let _ = tokio::signal::ctrl_c().await;
    ///     on_signal.cancel();
    /// });
    /// relay.run(herald::health::Health::new(), stop).await;
    /// # }
    /// ```
    pub async fn run(&self, health: Health, stop: CancellationToken) {
        let tasks = self.spawn_watchers(&health, &stop);
        health.set("relay", Check::Starting("first batch".into()));
        // Batches in flight are concurrent futures of this task, not tasks:
        // what overlaps is waiting (acks, commits), not computing.
        // The relay's failure state is one for all its batches in flight: a
        // batch that publishes ends it, whichever batch met the failure.
        let failing = Mutex::new(None);
        // SQLite has one writer: a second batch would only wait for the
        // first one's writes (measured: no gain), so it runs one at a time.
        let lanes = match self.db.get_database_backend() {
            DbBackend::Postgres => self.cfg.in_flight.max(1),
            _ => 1,
        };
        futures::future::join_all(
            (0..lanes).map(|lane| self.drive(lane, &health, &stop, &failing)),
        )
        .await;
        tasks.wait().await;
        tracing::info!(
            published = self.metrics.outbox_published.get(),
            duplicates = self.metrics.outbox_duplicates.get(),
            parked = self.metrics.outbox_parked.get(),
            "relay stopped"
        );
    }

    /// One batch after another until `stop`; lane 0 also prunes and
    /// refreshes the gauges.
    async fn drive(
        &self,
        lane: usize,
        health: &Health,
        stop: &CancellationToken,
        failing: &Failing,
    ) {
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        let mut last_analyze: Option<Instant> = None;
        let mut last_gauges = Instant::now() - Duration::from_secs(3600);
        while !stop.is_cancelled() {
            let result = self.run_once().await;
            let wait = match &result {
                Ok(o) if self.recovered(o, failing) => {
                    health.set("relay", Check::Ok);
                    backoff.reset();
                    if lane == 0 {
                        self.analyze_on_backlog(o, &mut last_analyze).await;
                    }
                    self.batch_done(o)
                }
                // An empty batch says nothing about NATS: the failure stands.
                Ok(_) => true,
                Err(e) => self.batch_failed(e, failing, health).await,
            };
            if lane == 0 && last_gauges.elapsed() > Duration::from_secs(5) {
                last_gauges = Instant::now();
                self.idle_checks(&result).await;
            }
            if let Some(ret) = self.cfg.retention
                && lane == 0
                && last_prune.elapsed() > Duration::from_secs(60)
            {
                last_prune = Instant::now();
                self.prune(ret).await;
            }
            if wait {
                let d = match &result {
                    Ok(_) => self.cfg.poll_interval,
                    Err(_) => backoff.next_backoff().unwrap_or(Duration::from_secs(5)),
                };
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = self.wake.notified(), if result.is_ok() => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }

    /// A full batch means a backlog: on PostgreSQL, refresh the outbox's
    /// statistics then, at most every 10 minutes, so that the claim and the
    /// order check keep their index plans through a burst.
    async fn analyze_on_backlog(&self, o: &BatchOutcome, last: &mut Option<Instant>) {
        let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(600));
        if self.db.get_database_backend() != DbBackend::Postgres
            || (o.claimed as u32) < self.cfg.batch_size
            || !due
        {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = store::refresh_statistics(&self.db).await {
            tracing::debug!(error = %e, "could not analyze the outbox");
        }
    }

    /// The tasks that run beside the loop until `stop`: the PostgreSQL
    /// wake-up, the database and NATS health watchers.
    fn spawn_watchers(&self, health: &Health, stop: &CancellationToken) -> TaskTracker {
        let tasks = TaskTracker::new();
        if self.db.get_database_backend() == DbBackend::Postgres {
            tasks.spawn(listen::wake_on_notify(
                self.db.clone(),
                self.wake.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(health::watch_database(
            self.db.clone(),
            health.clone(),
            stop.clone(),
        ));
        tasks.spawn(health::watch_nats(
            self.js.client(),
            health.clone(),
            stop.clone(),
        ));
        tasks.close();
        tasks
    }

    /// Log a batch that did something; whether to wait before the next.
    fn batch_done(&self, o: &BatchOutcome) -> bool {
        if o.claimed > 0 {
            tracing::debug!(
                claimed = o.claimed,
                published = o.published,
                duplicates = o.duplicates,
                failed = o.failed,
                parked = o.parked,
                claim_ms = o.claim_ms,
                publish_ms = o.publish_ms,
                mark_ms = o.mark_ms,
                "batch"
            );
        }
        // A full batch means more is waiting: go again at once.
        (o.claimed as u32) < self.cfg.batch_size
    }

    /// Whether a successful batch ends the relay's failure (logged once):
    /// any batch that claimed rows does, an empty one only a database
    /// failure (the claim worked; it did not try NATS).
    fn recovered(&self, o: &BatchOutcome, failing: &Failing) -> bool {
        let mut state = failing.lock().unwrap_or_else(|p| p.into_inner());
        let ends = match &*state {
            None => true,
            Some((kind, _)) => o.claimed > 0 || *kind == RelayErrorKind::Database,
        };
        if ends && let Some((_, prev)) = state.take() {
            tracing::info!(previous_error = %prev, "relay recovered");
        }
        ends
    }

    /// A failed batch: recreate a missing stream when this relay owns its
    /// settings, log once per change of error, report it. Always waits.
    async fn batch_failed(&self, e: &RelayError, failing: &Failing, health: &Health) -> bool {
        if let (RelayErrorKind::NoStream, Some(settings)) = (e.kind(), &self.stream) {
            match crate::jetstream::ensure_stream(&self.js, settings).await {
                Ok(_) => {
                    tracing::warn!(stream = %settings.name, "the events stream was missing: recreated it")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot recreate the events stream yet")
                }
            }
        }
        let msg = e.to_string();
        let mut state = failing.lock().unwrap_or_else(|p| p.into_inner());
        if state.as_ref().map(|(_, m)| m) != Some(&msg) {
            tracing::warn!(error = %msg, "relay cannot publish; retrying with backoff");
            *state = Some((e.kind(), msg.clone()));
        }
        drop(state);
        health.set("relay", Check::Failing(msg));
        true
    }

    /// Every 5 s: a lost stream recreated while idle, the backlog gauges.
    async fn idle_checks(&self, result: &Result<BatchOutcome, RelayError>) {
        // An idle relay publishes nothing, so it would not notice a
        // lost stream (deleted, or gone with a cluster's storage)
        // until the next event; the workers' consumers need it now.
        if matches!(result, Ok(o) if o.claimed == 0) {
            self.recreate_lost_stream().await;
        }
        if let Ok(b) = store::backlog(&self.db, Utc::now()).await {
            self.metrics.outbox_backlog.set(b.pending as f64);
            self.metrics
                .outbox_oldest_pending_seconds
                .set(b.oldest_pending_age_seconds);
        }
    }

    /// Recreate the events stream if it is gone (with this relay's
    /// settings); quiet when it is there or NATS does not answer. Only the
    /// server's "stream not found" counts as gone: a request that timed out
    /// while a cluster elects a leader says nothing about the stream.
    async fn recreate_lost_stream(&self) {
        let Some(settings) = &self.stream else {
            return;
        };
        match self.js.get_stream(&settings.name).await {
            Err(e) if crate::jetstream::stream_missing(&e) => {}
            _ => return,
        }
        match crate::jetstream::open_stream(&self.js, settings).await {
            Ok(_) => {
                tracing::warn!(stream = %settings.name, "the events stream was missing: recreated it (`herald outbox republish --since` restores what it held)")
            }
            Err(e) => tracing::debug!(error = %e, "cannot recreate the events stream yet"),
        }
    }

    async fn prune(&self, older_than: Duration) -> u64 {
        let pruned = crate::outbox::prune(&self.db, older_than)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %crate::db::describe(&e), "prune failed");
                0
            });
        if pruned > 0 && self.db.get_database_backend() == DbBackend::Postgres {
            // Space of pruned rows is reused only once vacuumed; the outbox
            // grew without bound where autovacuum was off (measured: 345 MiB
            // in ten minutes at 1,000 events/s, with the rows flat).
            if let Err(e) = store::vacuum(&self.db).await {
                tracing::debug!(error = %e, "could not vacuum the outbox");
            }
        }
        pruned
    }
}
