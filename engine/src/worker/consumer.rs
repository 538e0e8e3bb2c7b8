//! Each workflow's durable consumer: binding it, pulling, and handling one
//! message from decode to settle.
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;

use super::settle::settle;
use super::{Disposition, Event, Worker, WorkerError, consumer_name};
use crate::shutdown::Shutdown;
use crate::workflow::Workflow;
use herald_entities::dead_letter::DeadLetterKind;

impl Worker {
    async fn handle(&self, wf: &Workflow, msg: jetstream::Message) {
        let seq = msg.info().ok().map(|i| i.stream_sequence);
        let ev = match Event::from_message(&msg, seq) {
            Ok(ev) => ev,
            Err(reason) => {
                // No id: nothing to key a ledger row on; keep it whole in the DLQ.
                let ev = Event::undecodable(&msg, seq);
                // Terminate only once the dead letter is stored: nothing is dropped.
                let d = match self
                    .dead_letter(
                        wf,
                        &ev,
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
                        tracing::warn!(error = %e, "cannot store dead letter; message will be retried");
                        Disposition::Retry {
                            after: Duration::from_secs(1),
                        }
                    }
                };
                settle(&msg, &d, &self.metrics).await;
                return;
            }
        };
        // Keep the message ours while a slow SMTP server answers.
        let progress = {
            let msg = msg.clone();
            let every = self.cfg.ack_wait / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            })
        };
        let d = match self.process(wf, &ev).await {
            Ok(o) => o.disposition,
            Err(e) => {
                tracing::warn!(workflow = %wf.name, event_id = %ev.id, error = %e, "database error; message will be retried");
                Disposition::Retry {
                    after: Duration::from_secs(1),
                }
            }
        };
        progress.abort();
        settle(&msg, &d, &self.metrics).await;
    }

    /// Create or update the durable consumer of `wf`.
    pub async fn consumer(
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

    /// Consume one workflow until shutdown; reconnects on consumer errors.
    pub async fn run_workflow(
        self: Arc<Self>,
        js: jetstream::Context,
        wf: Workflow,
        mut shutdown: Shutdown,
    ) {
        let wf = Arc::new(wf);
        while !shutdown.is_triggered() {
            let consumer = match self.consumer(&js, &wf).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind consumer; retrying");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = shutdown.wait() => {} }
                    continue;
                }
            };
            self.metrics.ready.set(1.0);
            let messages = match consumer.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(workflow = %wf.name, error = %e, "cannot pull; retrying");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = shutdown.wait() => {} }
                    continue;
                }
            };
            let mut stop = shutdown.clone();
            // take_until: stop pulling on shutdown; in-flight messages finish.
            // A deleted consumer ends the stream: the loop binds a new one.
            let stream = messages.take_until(Box::pin(async move { stop.wait().await }));
            stream
                .for_each_concurrent(self.cfg.concurrency, |m| {
                    let me = self.clone();
                    let wf = wf.clone();
                    async move {
                        match m {
                            Ok(msg) => me.handle(&wf, msg).await,
                            Err(e) => {
                                tracing::warn!(workflow = %wf.name, error = %e, "pull error")
                            }
                        }
                    }
                })
                .await;
            if !shutdown.is_triggered() {
                tracing::warn!(workflow = %wf.name, "message stream ended; binding the consumer again");
            }
        }
        tracing::info!(workflow = %wf.name, "consumer stopped");
    }
}
