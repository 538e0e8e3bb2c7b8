//! Each workflow's durable consumer: binding it, the pull loop that feeds
//! the lanes (never while the transport is down, never more than they hold),
//! each message from decode to settle, and the supervisor that restarts a
//! consumer session that ended for any reason but shutdown.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::{FutureExt, StreamExt};
use herald_entities::dead_letter::DeadLetterKind;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lanes::{Lanes, Pushed};
use super::{Disposition, Event, Worker, WorkerError, consumer_name};
use crate::health::{Check, Health};
use crate::workflow::Workflow;

/// Most messages one pull asks for.
const PULL_BATCH: usize = 256;
/// How long a pull waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// The text of a panic payload.
pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into())
}

/// One consumer session's shared parts.
struct Session {
    worker: Arc<Worker>,
    wf: Arc<Workflow>,
    /// The workflow as of the worker's reload generation last seen: a reload
    /// swaps it between two messages, never during one.
    current: std::sync::Mutex<(u64, Arc<Workflow>)>,
    lanes: Lanes,
    /// At most `concurrency` messages processed at once across the lanes.
    slots: Semaphore,
    stop: CancellationToken,
}

impl Worker {
    /// Create or update the durable consumer of `wf`.
    pub(crate) async fn consumer(
        &self,
        js: &jetstream::Context,
        wf: &Workflow,
    ) -> Result<consumer::PullConsumer, WorkerError> {
        let name = consumer_name(&wf.name);
        let err = |detail: String| WorkerError::Consumer {
            consumer: name.clone(),
            detail,
        };
        let stream = js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| err(format!("stream {}: {e}", self.cfg.stream)))?;
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subjects: wf.subjects.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.cfg.ack_wait,
            max_ack_pending: self.cfg.max_ack_pending,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        match stream.get_consumer::<consumer::pull::Config>(&name).await {
            Ok(_) => stream
                .update_consumer(config)
                .await
                .map_err(|e| err(e.to_string())),
            Err(_) => stream
                .create_consumer(config)
                .await
                .map_err(|e| err(e.to_string())),
        }
    }

    /// Decode and process one message, whatever it holds: a message that is
    /// not a Herald event, or one whose processing panicked, becomes a dead
    /// letter with the reason, and the consumer goes on.
    async fn handle(&self, wf: &Workflow, msg: &jetstream::Message) -> Disposition {
        let seq = msg.info().ok().map(|i| i.stream_sequence);
        let run = async {
            match Event::from_message(msg, seq) {
                Ok(ev) => match self.process(wf, &ev).await {
                    Ok(o) => o.disposition,
                    Err(e) => {
                        tracing::warn!(workflow = %wf.name, event_id = %ev.id, error = %e,
                            "database error; the message will be processed again");
                        Disposition::Retry {
                            after: Duration::from_secs(1),
                        }
                    }
                },
                // No id: nothing to key a ledger row on; keep it whole.
                Err(reason) => {
                    let ev = Event::undecodable(msg, seq);
                    self.dead_letter_whole(wf, &ev, reason.to_string()).await
                }
            }
        };
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(d) => d,
            Err(panic) => {
                let reason = format!(
                    "the worker panicked processing this message: {} (a bug in Herald: please report it)",
                    panic_message(panic.as_ref())
                );
                let ev =
                    Event::from_message(msg, seq).unwrap_or_else(|_| Event::undecodable(msg, seq));
                self.dead_letter_whole(wf, &ev, reason).await
            }
        }
    }

    /// Dead-letter a message as a whole; terminate it only once the dead
    /// letter is stored (nothing is dropped), else look at it again.
    async fn dead_letter_whole(&self, wf: &Workflow, ev: &Event, reason: String) -> Disposition {
        match self
            .dead_letter(
                wf,
                ev,
                None,
                DeadLetterKind::Permanent,
                reason.clone(),
                None,
                1,
            )
            .await
        {
            Ok(()) => Disposition::Terminate { reason },
            Err(e) => {
                tracing::warn!(workflow = %wf.name, error = %e, "cannot store the dead letter; the message will be processed again");
                Disposition::Retry {
                    after: Duration::from_secs(1),
                }
            }
        }
    }

    /// Run one workflow's consumer until `stop`: a session that ends for any
    /// other reason (an error, a deleted consumer, a panic) is logged and
    /// started again with backoff, and health says so meanwhile.
    pub(super) async fn supervise(
        self: Arc<Self>,
        js: jetstream::Context,
        wf: Workflow,
        health: Health,
        stop: CancellationToken,
    ) {
        let wf = Arc::new(wf);
        let part = format!("consumer {}", wf.name);
        let mut delay = Duration::from_millis(500);
        let mut last_reason = String::new();
        loop {
            health.set(&part, Check::Starting("binding the consumer".into()));
            let started = Instant::now();
            let session = self.clone().session(&js, wf.clone(), &health, &part, &stop);
            let result = AssertUnwindSafe(session).catch_unwind().await;
            self.metrics.set_consumer_up(&wf.name, false);
            if stop.is_cancelled() {
                // Stopped on purpose (shutdown, or a reload removed it):
                // no longer a part of this process's readiness.
                health.remove(&part);
                break;
            }
            let reason = match result {
                Ok(Ok(())) => "the message stream ended".to_string(),
                Ok(Err(e)) => e,
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            if started.elapsed() > Duration::from_secs(60) {
                delay = Duration::from_millis(500);
            }
            if reason != last_reason {
                tracing::error!(workflow = %wf.name, %reason, retry_in_ms = delay.as_millis() as u64,
                    "consumer stopped; starting it again");
                last_reason = reason.clone();
            } else {
                tracing::debug!(workflow = %wf.name, %reason, "consumer stopped again");
            }
            health.set(&part, Check::Failing(reason));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        tracing::info!(workflow = %wf.name, "consumer stopped");
    }

    /// One session: bind, then pull into the lanes until `stop` or an error.
    async fn session(
        self: Arc<Self>,
        js: &jetstream::Context,
        wf: Arc<Workflow>,
        health: &Health,
        part: &str,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        // Binding asks the server: with NATS down it waits out the request
        // timeout, which must not hold up a shutdown.
        let consumer = tokio::select! {
            c = self.consumer(js, &wf) => c.map_err(|e| e.to_string())?,
            _ = stop.cancelled() => return Ok(()),
        };
        super::failpoint::hit("consumer_session");
        health.set(part, Check::Ok);
        self.metrics.set_consumer_up(&wf.name, true);
        let session_stop = stop.child_token();
        let generation = *self.generation.borrow();
        let s = Arc::new(Session {
            worker: self.clone(),
            current: std::sync::Mutex::new((generation, wf.clone())),
            wf,
            lanes: Lanes::new(self.cfg.max_in_flight()),
            slots: Semaphore::new(self.cfg.concurrency.max(1)),
            stop: session_stop.clone(),
        });
        let tasks = TaskTracker::new();
        tasks.spawn(progress(s.clone(), self.cfg.ack_wait / 3));
        let result = pull(&s, &consumer, &tasks).await;
        // Stop pulling, let each lane finish the message it is on, give the
        // rest back; an error stops the lanes at once.
        if result.is_err() {
            session_stop.cancel();
        }
        let drained = async {
            tasks.close();
            tasks.wait().await;
        };
        if stop.is_cancelled() || result.is_err() {
            session_stop.cancel();
        }
        drained.await;
        result
    }
}

/// Pull messages into the lanes while there is room and the transport is up.
async fn pull(
    s: &Arc<Session>,
    consumer: &consumer::PullConsumer,
    tasks: &TaskTracker,
) -> Result<(), String> {
    let transport = s.worker.transport.clone();
    loop {
        tokio::select! {
            _ = s.stop.cancelled() => return Ok(()),
            _ = transport.wait_up() => {}
        }
        tokio::select! {
            _ = s.stop.cancelled() => return Ok(()),
            _ = s.lanes.wait_for_room() => {}
        }
        let n = s.lanes.room().min(PULL_BATCH);
        if n == 0 {
            continue;
        }
        let mut batch = consumer
            .batch()
            .max_messages(n)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| format!("cannot pull: {e}"))?;
        loop {
            let next = tokio::select! {
                _ = s.stop.cancelled() => return Ok(()),
                m = batch.next() => m,
            };
            match next {
                None => break,
                Some(Ok(msg)) => {
                    let key = s.lanes.key_of(&msg);
                    if let Pushed::NewLane(key) = s.lanes.push(key, msg) {
                        tasks.spawn(lane(s.clone(), key));
                    }
                }
                Some(Err(e)) => return Err(format!("pull failed: {e}")),
            }
        }
    }
}

mod lane;

use lane::{lane, progress};
