//! The worker: one durable pull consumer per workflow. For each message it
//! renders the workflow's emails and, per recipient, claims the ledger row,
//! sends, records the result; only then does it acknowledge. What happens to
//! a message is decided in one place, [`Disposition`].
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::dlq::{self, NewDeadLetter};
use crate::jetstream::headers;
use crate::ledger::{self, Claim, Key};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::smtp::{SendError, Transport};
use crate::workflow::render::{Meta, Outcome, RenderError};
use crate::workflow::{Catalog, Workflow};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub stream: String,
    /// Messages processed at once per workflow.
    pub concurrency: usize,
    pub max_ack_pending: i64,
    /// JetStream redelivers a message unacknowledged for this long; it is
    /// also the ledger's claim lease: a `sending` row younger than this may
    /// be in another worker's hands and is not sent again.
    pub ack_wait: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            stream: "HERALD".into(),
            concurrency: 16,
            max_ack_pending: 1000,
            ack_wait: Duration::from_secs(60),
        }
    }
}

/// The fate of a message: the only thing the consumer loop acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Ack,
    Retry {
        after: Duration,
    },
    /// Terminate: the event as a whole cannot be processed (dead letter written).
    Terminate {
        reason: String,
    },
    /// Nothing failed, but another worker holds a claim on one of its
    /// deliveries ([`Claim::InFlight`]): look at the message again after
    /// `after`, when that delivery is recorded or its claim has gone stale.
    Busy {
        after: Duration,
    },
}

/// Binding a workflow's durable consumer failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("JetStream consumer {consumer}: {detail}")]
    Consumer { consumer: String, detail: String },
}

/// Why a dead letter could not be re-driven.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("workflow {0:?} is not in the workflows directory")]
    UnknownWorkflow(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Everything the processing of one message needs.
pub struct Worker {
    pub db: DatabaseConnection,
    pub catalog: Arc<Catalog>,
    pub transport: Arc<Transport>,
    pub metrics: Arc<Metrics>,
    pub cfg: WorkerConfig,
    /// `herald replay --resend`: send deliveries the ledger has as sent once
    /// more, recording this reason, with a distinct Message-ID.
    pub resend: Option<String>,
}

/// An event as the worker sees it, from a stream message (or a dead letter).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub subject: String,
    pub payload: String,
    pub aggregate: Option<String>,
    pub occurred_at: String,
    pub stream_seq: Option<u64>,
    pub headers: String,
}

impl Event {
    pub fn from_message(m: &async_nats::Message, stream_seq: Option<u64>) -> Result<Event, String> {
        let h = m.headers.clone().unwrap_or_default();
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        let id = get(headers::MSG_ID).ok_or("message has no Nats-Msg-Id header")?;
        let id =
            Uuid::parse_str(&id).map_err(|e| format!("Nats-Msg-Id {id:?} is not a UUID: {e}"))?;
        let mut map = serde_json::Map::new();
        for (k, vs) in h.iter() {
            if let Some(v) = vs.first() {
                map.insert(
                    k.to_string(),
                    serde_json::Value::String(v.as_str().to_string()),
                );
            }
        }
        Ok(Event {
            id,
            subject: m.subject.to_string(),
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
            aggregate: get(headers::AGGREGATE),
            occurred_at: get(headers::OCCURRED_AT).unwrap_or_default(),
            stream_seq,
            headers: serde_json::Value::Object(map).to_string(),
        })
    }
}

impl Event {
    /// What templates see as `meta` when `workflow` runs this event.
    pub fn meta(&self, workflow: &str) -> Meta {
        Meta {
            id: self.id.to_string(),
            subject: self.subject.clone(),
            aggregate: self.aggregate.clone(),
            occurred_at: self.occurred_at.clone(),
            workflow: workflow.to_string(),
        }
    }
}

/// Test support: abort the process at a named point when `HERALD_FAILPOINT`
/// names it, to prove crash windows (see tests/it/worker.rs).
fn failpoint(name: &str) {
    if std::env::var("HERALD_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

/// The earlier of a wait so far (if any) and `d`: a message with several
/// recipients is looked at again as soon as the first of them may proceed.
fn sooner(so_far: Option<Duration>, d: Duration) -> Duration {
    so_far.map_or(d, |x| x.min(d))
}

/// `<{event_id}.{workflow}.{n}@{domain of from}>`: derived from the ledger key.
pub fn message_id(event: Uuid, workflow: &str, index: usize, from: &str) -> String {
    let domain = crate::workflow::render::bare_address(from)
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| "herald.local".into());
    format!("{event}.{workflow}.{index}@{domain}")
}

/// Durable consumer name of a workflow.
pub fn consumer_name(wf: &str) -> String {
    format!("herald-{wf}")
}

impl Worker {
    #[allow(clippy::too_many_arguments)] // one row's fields, named at every call site
    async fn dead_letter(
        &self,
        wf: &Workflow,
        ev: &Event,
        recipient: Option<&str>,
        kind: &'static str,
        reason: String,
        smtp: Option<String>,
        attempts: u32,
    ) -> Result<(), DbErr> {
        self.metrics.dead_letters.inc();
        tracing::error!(workflow = %wf.name, event_id = %ev.id, subject = %ev.subject, recipient = ?recipient, %reason, "dead letter");
        dlq::insert(
            &self.db,
            NewDeadLetter {
                event_id: ev.id,
                workflow: &wf.name,
                recipient,
                subject: &ev.subject,
                stream_seq: ev.stream_seq,
                payload: &ev.payload,
                headers: ev.headers.clone(),
                kind,
                reason,
                smtp_reply: smtp,
                attempts,
            },
        )
        .await
        .map(|_| ())
    }

    /// Run one event through one workflow. Database errors are returned (the
    /// message is retried); everything else becomes a disposition.
    pub async fn process(&self, wf: &Workflow, ev: &Event) -> Result<Disposition, DbErr> {
        let payload: serde_json::Value = match serde_json::from_str(&ev.payload) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                let reason = format!("payload of {} is not a JSON object", ev.subject);
                self.dead_letter(wf, ev, None, "permanent", reason.clone(), None, 1)
                    .await?;
                return Ok(Disposition::Terminate { reason });
            }
        };
        let emails = match self.catalog.render(wf, &payload, &ev.meta(&wf.name)) {
            Ok(Outcome::Skipped { guard }) => {
                ledger::record_skipped(&self.db, ev.id, &wf.name, &guard).await?;
                self.metrics.emails_skipped.inc();
                return Ok(Disposition::Ack);
            }
            Ok(Outcome::Emails(e)) => e,
            Err(e) => return self.render_failed(wf, ev, e).await,
        };
        let mut retry_after: Option<Duration> = None;
        let mut busy: Option<Duration> = None;
        let mut seen = std::collections::HashSet::new();
        for email in &emails {
            let mut recipient = email.recipient_key();
            if !seen.insert(recipient.clone()) {
                // The same address twice in one fan-out: keep both, keyed apart.
                recipient = format!("{recipient}#{}", email.index);
            }
            let key = Key {
                event_id: ev.id,
                workflow: &wf.name,
                recipient: &recipient,
            };
            let mut claim = ledger::claim(
                &self.db,
                &key,
                email.index,
                &email.subject,
                self.cfg.ack_wait,
            )
            .await?;
            let mut resent = false;
            if let (Claim::Done { state }, Some(reason)) = (&claim, &self.resend)
                && state == ledger::state::SENT
            {
                claim = ledger::claim_resend(&self.db, &key, reason).await?;
                resent = true;
            }
            let attempt = match claim {
                Claim::Done { .. } => {
                    self.metrics.emails_skipped.inc();
                    continue;
                }
                Claim::InFlight { retry_after: d } => {
                    tracing::info!(workflow = %wf.name, event_id = %ev.id, %recipient, retry_in = ?d,
                        "another worker is sending this email; checking again later");
                    self.metrics.emails_in_flight_elsewhere.inc();
                    busy = Some(sooner(busy, d));
                    continue;
                }
                Claim::Send { attempt } => attempt,
            };
            let mut mid = message_id(ev.id, &wf.name, email.index, &email.from);
            if resent {
                // A deliberate resend must not look like the original downstream.
                mid = mid.replacen('@', &format!(".r{attempt}@"), 1);
            }
            let started = std::time::Instant::now();
            match self.transport.send(email, &mid).await {
                Ok(reply) => {
                    failpoint("after_smtp_accept");
                    // The server has the email: recording it is now the only
                    // thing between us and a duplicate, so a database blip is
                    // retried here rather than turned into a redelivery.
                    let policy = backoff::ExponentialBackoff {
                        initial_interval: Duration::from_millis(50),
                        max_interval: Duration::from_secs(2),
                        max_elapsed_time: Some(Duration::from_secs(30)),
                        ..Default::default()
                    };
                    let message_id = format!("<{mid}>");
                    backoff::future::retry(policy, || async {
                        ledger::mark_sent(&self.db, &key, &message_id, &reply)
                            .await
                            .map_err(backoff::Error::transient)
                    })
                    .await?;
                    failpoint("after_ledger_sent");
                    self.metrics.emails_sent.inc();
                    self.metrics.send_latency.observe(started.elapsed());
                    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&ev.occurred_at) {
                        let lat = chrono::Utc::now()
                            .signed_duration_since(t)
                            .to_std()
                            .unwrap_or_default();
                        self.metrics.end_to_end_latency.observe(lat);
                    }
                }
                Err(e) => {
                    let reply = e.smtp_reply();
                    if e.is_transient() && attempt < wf.retry.max_attempts {
                        self.metrics.send_retries.inc();
                        ledger::mark_retrying(&self.db, &key, &e.to_string(), reply.as_deref())
                            .await?;
                        let d = wf.retry.delay(attempt);
                        tracing::warn!(workflow = %wf.name, event_id = %ev.id, %recipient, attempt, error = %e, retry_in = ?d, "send failed, will retry");
                        retry_after = Some(sooner(retry_after, d));
                    } else {
                        let kind = if e.is_transient() {
                            "exhausted"
                        } else {
                            "permanent"
                        };
                        let reason = match &e {
                            SendError::Rejected { .. } => format!("SMTP rejected the message: {e}"),
                            _ if e.is_transient() => {
                                format!("gave up after {attempt} attempts: {e}")
                            }
                            _ => e.to_string(),
                        };
                        ledger::mark_dead(&self.db, &key, &reason, reply.as_deref()).await?;
                        self.dead_letter(wf, ev, Some(&recipient), kind, reason, reply, attempt)
                            .await?;
                    }
                }
            }
        }
        Ok(match (retry_after, busy) {
            (Some(after), busy) => Disposition::Retry {
                after: sooner(busy, after),
            },
            (None, Some(after)) => Disposition::Busy { after },
            (None, None) => Disposition::Ack,
        })
    }

    async fn render_failed(
        &self,
        wf: &Workflow,
        ev: &Event,
        e: RenderError,
    ) -> Result<Disposition, DbErr> {
        let reason = e.to_string();
        let key = Key {
            event_id: ev.id,
            workflow: &wf.name,
            recipient: ledger::WHOLE_EVENT_RECIPIENT,
        };
        match ledger::claim(&self.db, &key, 0, "", self.cfg.ack_wait).await? {
            // Already dead-lettered by an earlier delivery of this message.
            Claim::Done { .. } => return Ok(Disposition::Terminate { reason }),
            // Another worker is writing this dead letter now.
            Claim::InFlight { retry_after } => {
                return Ok(Disposition::Busy { after: retry_after });
            }
            Claim::Send { .. } => {}
        }
        ledger::mark_dead(&self.db, &key, &reason, None).await?;
        self.dead_letter(wf, ev, None, "permanent", reason.clone(), None, 1)
            .await?;
        Ok(Disposition::Terminate { reason })
    }

    /// Re-drive a dead letter through the normal path: reopen its dead
    /// deliveries, process the stored event again (the ledger skips what was
    /// sent), and mark the dead letter retried. A new failure writes a new
    /// dead letter.
    pub async fn redrive(
        &self,
        dl: &herald_entities::dead_letter::Model,
    ) -> Result<Disposition, RedriveError> {
        let wf = self
            .catalog
            .get(&dl.workflow)
            .ok_or_else(|| RedriveError::UnknownWorkflow(dl.workflow.clone()))?;
        ledger::reopen_dead(&self.db, dl.event_id, &dl.workflow).await?;
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&dl.headers).unwrap_or_default();
        let header = |k: &str| headers.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let ev = Event {
            id: dl.event_id,
            subject: dl.subject.clone(),
            payload: dl.payload.clone(),
            aggregate: header(headers::AGGREGATE),
            occurred_at: header(headers::OCCURRED_AT).unwrap_or_default(),
            stream_seq: dl.stream_seq.and_then(|s| u64::try_from(s).ok()),
            headers: dl.headers.clone(),
        };
        let d = self.process(wf, &ev).await?;
        dlq::mark_retried(&self.db, dl.id).await?;
        Ok(d)
    }

    /// Apply a disposition to a message: the only place that acks.
    async fn settle(&self, msg: &jetstream::Message, d: &Disposition) {
        let r = match d {
            Disposition::Ack => msg.double_ack().await.map(|_| ()),
            Disposition::Retry { after } | Disposition::Busy { after } => {
                msg.ack_with(AckKind::Nak(Some(*after))).await.map(|_| ())
            }
            Disposition::Terminate { .. } => msg.ack_with(AckKind::Term).await.map(|_| ()),
        };
        match r {
            Ok(()) => self.metrics.messages_acked.inc(),
            // The ledger already holds the outcome: a redelivery is harmless.
            Err(e) => tracing::warn!(error = %e, "ack failed; the message will be redelivered"),
        }
    }

    async fn handle(&self, wf: &Workflow, msg: jetstream::Message) {
        let seq = msg.info().ok().map(|i| i.stream_sequence);
        let ev = match Event::from_message(&msg, seq) {
            Ok(ev) => ev,
            Err(reason) => {
                // No id: nothing to key a ledger row on; keep it whole in the DLQ.
                let ev = Event {
                    id: Uuid::nil(),
                    subject: msg.subject.to_string(),
                    payload: String::from_utf8_lossy(&msg.payload).into_owned(),
                    aggregate: None,
                    occurred_at: String::new(),
                    stream_seq: seq,
                    headers: "{}".into(),
                };
                // Terminate only once the dead letter is stored: nothing is dropped.
                let d = match self
                    .dead_letter(wf, &ev, None, "permanent", reason.clone(), None, 1)
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
                self.settle(&msg, &d).await;
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
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(workflow = %wf.name, event_id = %ev.id, error = %e, "database error; message will be retried");
                Disposition::Retry {
                    after: Duration::from_secs(1),
                }
            }
        };
        progress.abort();
        self.settle(&msg, &d).await;
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
