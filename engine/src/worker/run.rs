//! Running a worker: every selected workflow's consumer under its
//! supervisor, and the watchers that keep health current (database, NATS,
//! the SMTP transport), until the cancellation token fires.
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
        let scheduling: Vec<String> = workflows
            .iter()
            .filter(|w| w.schedules())
            .map(|w| w.name.clone())
            .collect();
        if !scheduling.is_empty() {
            tasks.spawn(self.clone().run_schedule(scheduling, stop.clone()));
        }
        let names: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
        tracing::info!(workflows = %names.join(","), transport = %self.transport.name(), "worker started");
        for wf in workflows {
            tasks.spawn(
                self.clone()
                    .supervise(js.clone(), wf, health.clone(), stop.clone()),
            );
        }
        tasks.close();
        tasks.wait().await;
    }
}

impl Worker {
    /// Keep `first_stream_seq` current: events the stream no longer holds
    /// (retention) are not waited for.
    async fn watch_stream_start(self: Arc<Self>, js: jetstream::Context, stop: CancellationToken) {
        loop {
            if let Ok(mut s) = js.get_stream(&self.cfg.stream).await
                && let Ok(info) = s.info().await
            {
                self.first_stream_seq.store(
                    info.state.first_sequence,
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
