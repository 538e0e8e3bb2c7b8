//! Running a worker: every selected workflow's consumer under its
//! supervisor, and the watchers that keep health current (database, NATS,
//! the SMTP transport), until the cancellation token fires.
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Worker;
use crate::health::{self, Check, Health};
use crate::metrics::Metrics;
use crate::smtp::{Transport, TransportState};
use crate::workflow::Workflow;

impl Worker {
    /// Consume `workflows` until `stop` is cancelled; returns once every
    /// consumer has finished its in-flight messages and every task has ended.
    ///
    /// ```no_run
    /// # async fn example(worker: std::sync::Arc<herald::worker::Worker>, js: async_nats::jetstream::Context) {
    /// let stop = tokio_util::sync::CancellationToken::new();
    /// let workflows = worker.catalog().workflows.clone();
    /// let running = tokio::spawn(worker.run(js, workflows, herald::health::Health::new(), stop.clone()));
    /// tokio::signal::ctrl_c().await.ok();
    /// stop.cancel();
    /// running.await.ok(); // in-flight messages finished
    /// # }
    /// ```
    pub async fn run(
        self: Arc<Self>,
        js: jetstream::Context,
        workflows: Vec<Workflow>,
        health: Health,
        stop: CancellationToken,
    ) {
        let tasks = TaskTracker::new();
        tasks.spawn(watch_transport(
            self.transport.clone(),
            health.clone(),
            self.metrics.clone(),
            stop.clone(),
        ));
        // An unreachable SMTP server is said at start-up, not at the first send.
        let (transport, s) = (self.transport.clone(), stop.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = transport.check() => {}
                _ = s.cancelled() => {}
            }
        });
        tasks.spawn(health::watch_nats(
            js.client(),
            health.clone(),
            stop.clone(),
        ));
        tasks.spawn(health::watch_database(
            self.db.clone(),
            health.clone(),
            stop.clone(),
        ));
        tasks.spawn(self.clone().watch_stream_start(js.clone(), stop.clone()));
        // Long waits inside a delivery (rate limits) end when the worker stops.
        let (me, s) = (self.clone(), stop.clone());
        tasks.spawn(async move {
            s.cancelled().await;
            me.stop.cancel();
        });
        // Started with every workflow: follow the directory (a reload's new
        // workflows get consumers). Started with some (`--workflow`): keep
        // to those names.
        let all = self.catalog().workflows.len();
        let selection: Option<BTreeSet<String>> =
            (workflows.len() != all).then(|| workflows.iter().map(|w| w.name.clone()).collect());
        tasks.spawn(self.clone().run_schedule(selection.clone(), stop.clone()));
        let names: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
        tracing::info!(workflows = %crate::logfields::list(&names), version = %self.version(), transport = %self.transport.name(), "worker started");
        let mut running = Running::default();
        for wf in workflows {
            running.start(&self, &tasks, &js, wf, &health, &stop);
        }
        let mut generation = self.generation.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = generation.changed() => if changed.is_err() { break },
            }
            self.reconcile(
                &mut running,
                selection.as_ref(),
                &tasks,
                &js,
                &health,
                &stop,
            );
        }
        tasks.close();
        tasks.wait().await;
    }
}

/// The consumers running now, by workflow: how to stop each, the subjects
/// it was bound with, and its task.
#[derive(Default)]
struct Running(HashMap<String, Consumer>);

struct Consumer {
    stop: CancellationToken,
    subjects: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(
        &mut self,
        worker: &Arc<Worker>,
        tasks: &TaskTracker,
        js: &jetstream::Context,
        wf: Workflow,
        health: &Health,
        stop: &CancellationToken,
    ) {
        self.start_after(worker, tasks, js, wf, health, stop, None);
    }

    /// Start `wf`'s consumer, once `before` (the consumer it replaces) has
    /// finished: two supervisors of one workflow never overlap.
    #[allow(clippy::too_many_arguments)] // the run's context, passed through
    fn start_after(
        &mut self,
        worker: &Arc<Worker>,
        tasks: &TaskTracker,
        js: &jetstream::Context,
        wf: Workflow,
        health: &Health,
        stop: &CancellationToken,
        before: Option<tokio::task::JoinHandle<()>>,
    ) {
        let own = stop.child_token();
        let name = wf.name.clone();
        let subjects = wf.subjects.clone();
        let supervised = worker
            .clone()
            .supervise(js.clone(), wf, health.clone(), own.clone());
        let task = tasks.spawn(async move {
            if let Some(b) = before {
                let _ = b.await;
            }
            supervised.await;
        });
        self.0.insert(
            name,
            Consumer {
                stop: own,
                subjects,
                task,
            },
        );
    }
}

impl Worker {
    /// After a reload: stop the consumers of workflows no longer loaded (or
    /// no longer selected), start those of new ones, and rebind those whose
    /// subjects changed. Template changes need nothing here: each consumer
    /// takes its workflow anew before its next message.
    fn reconcile(
        self: &Arc<Self>,
        running: &mut Running,
        selection: Option<&BTreeSet<String>>,
        tasks: &TaskTracker,
        js: &jetstream::Context,
        health: &Health,
        stop: &CancellationToken,
    ) {
        let catalog = self.catalog();
        let wanted: HashMap<&str, &Workflow> = catalog
            .workflows
            .iter()
            .filter(|w| selection.is_none_or(|s| s.contains(&w.name)))
            .map(|w| (w.name.as_str(), w))
            .collect();
        let names: Vec<String> = running.0.keys().cloned().collect();
        for name in names {
            match wanted.get(name.as_str()) {
                Some(w)
                    if running
                        .0
                        .get(&name)
                        .is_some_and(|c| c.subjects == w.subjects) => {}
                Some(w) => {
                    if let Some(old) = running.0.remove(&name) {
                        old.stop.cancel();
                        tracing::info!(workflow = %name, subjects = %crate::logfields::list(&w.subjects), "reload: rebinding the consumer to its new subjects");
                        running.start_after(
                            self,
                            tasks,
                            js,
                            (*w).clone(),
                            health,
                            stop,
                            Some(old.task),
                        );
                    }
                }
                None => {
                    if let Some(old) = running.0.remove(&name) {
                        tracing::info!(workflow = %name, "reload: workflow removed; its consumer stops after its messages in flight");
                        old.stop.cancel();
                    }
                }
            }
        }
        for (name, w) in wanted {
            if !running.0.contains_key(name) {
                tracing::info!(workflow = %name, "reload: new workflow; starting its consumer");
                running.start(self, tasks, js, w.clone(), health, stop);
            }
        }
        tracing::info!(version = %catalog.version, "reload: running the new workflow set");
    }

    /// Keep `first_stream_seq` and `stream_created_ms` current: events the
    /// stream no longer holds (retention) are not waited for, and events
    /// published before the stream was (re)created may be taken from the
    /// outbox (`process_outstanding`).
    async fn watch_stream_start(self: Arc<Self>, js: jetstream::Context, stop: CancellationToken) {
        loop {
            if let Ok(mut s) = js.get_stream(&self.cfg.stream).await
                && let Ok(info) = s.info().await
            {
                self.first_stream_seq.store(
                    info.state.first_sequence,
                    std::sync::atomic::Ordering::Relaxed,
                );
                let created_ms = info.created.unix_timestamp_nanos() / 1_000_000;
                self.stream_created_ms.store(
                    i64::try_from(created_ms).unwrap_or(0),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
            }
        }
    }
}

/// Mirror the transport's state into health and metrics.
async fn watch_transport(
    t: Transport,
    health: Health,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut rx = t.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            TransportState::Up => {
                metrics.smtp_up.set(1.0);
                health.set("smtp", Check::Ok);
            }
            TransportState::Down { reason, .. } => {
                metrics.smtp_up.set(0.0);
                if health
                    .set("smtp", Check::Failing(reason.clone()))
                    .is_some_and(|c| c.is_ok())
                {
                    metrics.smtp_outages.inc();
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}
