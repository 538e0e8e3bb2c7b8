//! The relay: publishes committed outbox rows to JetStream, at least once.
//!
//! One iteration claims a batch (leases rows), publishes them pipelined in
//! `seq` order on one connection (so each aggregate's order is the stream's
//! order), awaits all PubAcks, then marks the acknowledged rows in one
//! statement. A crash anywhere leaves rows unmarked; their leases expire and
//! they are published again with the same `Nats-Msg-Id`, which JetStream drops
//! as a duplicate within the stream's duplicate window.
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use backoff::backoff::Backoff;
use chrono::Utc;
use futures::future::join_all;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::Notify;

use crate::jetstream::headers;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use store::Claimed;

/// Relay settings (flags of `herald relay`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and published per iteration.
    pub batch_size: u32,
    /// How long a claim is held; an unfinished claim is released after it (crash).
    pub lease: Duration,
    /// Fallback poll interval (PostgreSQL also wakes on NOTIFY).
    pub poll_interval: Duration,
    /// Publish attempts before a row is parked (a poison row), and the delay between them.
    pub retry: RetryPolicy,
    /// Prune published rows older than this (None: keep them).
    pub retention: Option<Duration>,
    /// This relay's identity in `lease_owner`.
    pub instance: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            retry: RetryPolicy {
                max_attempts: 5,
                initial: Duration::from_millis(500),
                max: Duration::from_secs(60),
                multiplier: 2.0,
            },
            retention: None,
            instance: instance_id("relay"),
        }
    }
}

/// The JetStream context a relay publishes with. async-nats caps the acks in
/// flight (5,000 by default) and makes `publish` wait for a free slot; since
/// the relay issues a whole batch before awaiting any ack, a batch larger than
/// the cap would wait forever. The cap is therefore at least the batch size.
pub fn jetstream_context(client: async_nats::Client, batch_size: u32) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .max_ack_inflight((batch_size as usize).max(5_000))
        .build(client)
}

/// `host-pid-xxxx`: unique per process, readable in the table.
pub fn instance_id(role: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &rnd[..6])
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("NATS: {0}")]
    Nats(String),
}

/// What one iteration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub claimed: usize,
    pub published: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub parked: usize,
    /// Time spent claiming, publishing (until the last PubAck) and marking:
    /// logged at debug level to see where a slow batch went.
    pub claim_ms: u64,
    pub publish_ms: u64,
    pub mark_ms: u64,
}

pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    cfg: RelayConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

enum PublishFailure {
    /// The row itself cannot be published (too large, rejected): counts an attempt.
    Row(String),
    /// The server is unreachable or slow: the row is released untouched.
    Transport(String),
}

fn classify(kind: PublishErrorKind, err: &dyn std::fmt::Display) -> PublishFailure {
    match kind {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => PublishFailure::Transport(err.to_string()),
        // No stream: someone deleted it; ensure_stream at the next start fixes it,
        // the rows must not burn their attempts meanwhile.
        PublishErrorKind::StreamNotFound => PublishFailure::Transport(err.to_string()),
        _ => PublishFailure::Row(err.to_string()),
    }
}

fn build_headers(row: &Claimed) -> Result<HeaderMap, String> {
    let extra: std::collections::BTreeMap<String, String> = serde_json::from_str(&row.headers)
        .map_err(|e| format!("headers column is not a JSON object of strings: {e}"))?;
    let mut h = HeaderMap::new();
    for (k, v) in extra {
        h.insert(k.as_str(), v.as_str());
    }
    h.insert(headers::MSG_ID, row.event_id.to_string().as_str());
    h.insert(headers::OCCURRED_AT, row.created_at.to_rfc3339().as_str());
    h.insert(headers::OUTBOX_SEQ, row.seq.to_string().as_str());
    if let Some(k) = &row.ordering_key {
        h.insert(headers::AGGREGATE, k.as_str());
    }
    Ok(h)
}

/// Publish already-published rows again (`herald outbox republish`), e.g. after
/// JetStream lost acknowledged messages. Same headers and `Nats-Msg-Id` as the
/// first time: JetStream drops those it still holds within its duplicate
/// window, and the ledger keeps the worker from emailing anyone twice.
/// Returns (published, dropped as duplicates).
pub async fn republish(
    js: &jetstream::Context,
    rows: &[herald_entities::outbox::Model],
) -> Result<(u64, u64), RelayError> {
    let (mut published, mut duplicates) = (0, 0);
    for chunk in rows.chunks(500) {
        let mut pending = Vec::with_capacity(chunk.len());
        for r in chunk {
            let claimed = Claimed {
                seq: r.seq,
                event_id: r.event_id,
                subject: r.subject.clone(),
                ordering_key: r.ordering_key.clone(),
                payload: r.payload.clone(),
                headers: r.headers.clone(),
                created_at: r.created_at,
                attempts: r.attempts,
            };
            let hdrs = build_headers(&claimed).map_err(RelayError::Nats)?;
            let fut = js
                .publish_with_headers(
                    r.subject.clone(),
                    hdrs,
                    bytes::Bytes::from(r.payload.clone()),
                )
                .await
                .map_err(|e| RelayError::Nats(e.to_string()))?;
            pending.push(fut);
        }
        for fut in pending {
            let ack = fut.await.map_err(|e| RelayError::Nats(e.to_string()))?;
            if ack.duplicate {
                duplicates += 1
            } else {
                published += 1
            }
        }
    }
    Ok((published, duplicates))
}

impl Relay {
    pub fn new(
        db: DatabaseConnection,
        js: jetstream::Context,
        cfg: RelayConfig,
        metrics: Arc<Metrics>,
    ) -> Relay {
        Relay {
            db,
            js,
            cfg,
            metrics,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Claim, publish and mark one batch.
    pub async fn run_once(&self) -> Result<BatchOutcome, RelayError> {
        let started = Instant::now();
        let now = Utc::now();
        let until = now
            + chrono::Duration::from_std(self.cfg.lease).unwrap_or(chrono::Duration::seconds(30));
        let rows = store::claim(
            &self.db,
            &self.cfg.instance,
            now,
            until,
            self.cfg.batch_size,
        )
        .await?;
        let mut out = BatchOutcome {
            claimed: rows.len(),
            claim_ms: elapsed_ms(started),
            ..Default::default()
        };
        if rows.is_empty() {
            return Ok(out);
        }
        let mut row_failures: Vec<(&Claimed, String)> = Vec::new();
        let mut transport: Vec<i64> = Vec::new();
        let mut transport_error: Option<String> = None;
        let mut pending = Vec::with_capacity(rows.len());
        // Issue every publish in seq order before awaiting any ack: the client
        // writes them in this order, so the stream keeps it.
        for row in &rows {
            let hdrs = match build_headers(row) {
                Ok(h) => h,
                Err(e) => {
                    row_failures.push((row, e));
                    continue;
                }
            };
            match self
                .js
                .publish_with_headers(
                    row.subject.clone(),
                    hdrs,
                    bytes::Bytes::from(row.payload.clone()),
                )
                .await
            {
                Ok(fut) => pending.push((row, fut)),
                Err(e) => match classify(e.kind(), &e) {
                    PublishFailure::Row(msg) => row_failures.push((row, msg)),
                    PublishFailure::Transport(msg) => {
                        transport.push(row.seq);
                        transport_error.get_or_insert(msg);
                    }
                },
            }
        }
        let results = join_all(
            pending
                .into_iter()
                .map(|(row, fut)| async move { (row, fut.await) }),
        )
        .await;
        let acked_at = Utc::now();
        out.publish_ms = elapsed_ms(started) - out.claim_ms;
        let mut acks = Vec::with_capacity(results.len());
        for (row, res) in results {
            match res {
                Ok(ack) => {
                    acks.push((row.seq, ack.sequence));
                    if ack.duplicate {
                        out.duplicates += 1;
                        self.metrics.outbox_duplicates.inc();
                    } else {
                        out.published += 1;
                        self.metrics.outbox_published.inc();
                    }
                    let lat = (acked_at - row.created_at).to_std().unwrap_or_default();
                    self.metrics.publish_latency.observe(lat);
                }
                Err(e) => match classify(e.kind(), &e) {
                    PublishFailure::Row(msg) => row_failures.push((row, msg)),
                    PublishFailure::Transport(msg) => {
                        transport.push(row.seq);
                        transport_error.get_or_insert(msg);
                    }
                },
            }
        }
        store::mark_published(&self.db, &self.cfg.instance, acked_at, &acks).await?;
        out.mark_ms = elapsed_ms(started) - out.claim_ms - out.publish_ms;
        for (row, msg) in &row_failures {
            out.failed += 1;
            self.metrics.outbox_publish_failures.inc();
            let attempt = u32::try_from(row.attempts).unwrap_or(0);
            let delay = self.cfg.retry.delay(attempt + 1);
            let next = acked_at + chrono::Duration::from_std(delay).unwrap_or_default();
            let park = (attempt + 1 >= self.cfg.retry.max_attempts).then_some(acked_at);
            if park.is_some() {
                out.parked += 1;
                self.metrics.outbox_parked.inc();
                tracing::error!(seq = row.seq, event_id = %row.event_id, subject = %row.subject, error = %msg,
                    "outbox row parked after {} attempts; `herald outbox retry` re-drives it", attempt + 1);
            } else {
                tracing::warn!(seq = row.seq, event_id = %row.event_id, subject = %row.subject, error = %msg,
                    retry_in = ?delay, "publish failed");
            }
            store::record_failure(&self.db, &self.cfg.instance, row.seq, msg, next, park).await?;
        }
        store::release(&self.db, &self.cfg.instance, &transport).await?;
        if let Some(e) = transport_error
            && acks.is_empty()
        {
            return Err(RelayError::Nats(e));
        }
        Ok(out)
    }

    /// Publish until `shutdown`. Errors of the database or NATS never end the
    /// loop: they are logged once per change of state and retried with backoff.
    pub async fn run(&self, mut shutdown: Shutdown) {
        self.spawn_listener();
        let mut failing: Option<String> = None;
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        let mut last_gauges = Instant::now() - Duration::from_secs(3600);
        while !shutdown.is_triggered() {
            let result = self.run_once().await;
            let wait = match &result {
                Ok(o) => {
                    if let Some(prev) = failing.take() {
                        tracing::info!(previous_error = %prev, "relay recovered");
                    }
                    self.metrics.ready.set(1.0);
                    backoff.reset();
                    if o.claimed > 0 {
                        tracing::debug!(?o, "batch");
                    }
                    // A full batch means more is waiting: go again at once.
                    if o.claimed as u32 >= self.cfg.batch_size {
                        None
                    } else {
                        Some(self.cfg.poll_interval)
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if failing.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(error = %msg, "relay cannot publish; retrying with backoff");
                        failing = Some(msg);
                    }
                    self.metrics.ready.set(0.0);
                    Some(backoff.next_backoff().unwrap_or(Duration::from_secs(5)))
                }
            };
            if last_gauges.elapsed() > Duration::from_secs(5) {
                last_gauges = Instant::now();
                if let Ok(b) = store::backlog(&self.db, Utc::now()).await {
                    self.metrics.outbox_backlog.set(b.pending as f64);
                    self.metrics
                        .outbox_oldest_pending_seconds
                        .set(b.oldest_pending_age_seconds);
                }
            }
            if let Some(ret) = self.cfg.retention
                && last_prune.elapsed() > Duration::from_secs(60)
            {
                last_prune = Instant::now();
                self.prune(ret).await;
            }
            if let Some(d) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = self.wake.notified(), if result.is_ok() => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
        tracing::info!(
            published = self.metrics.outbox_published.get(),
            duplicates = self.metrics.outbox_duplicates.get(),
            parked = self.metrics.outbox_parked.get(),
            "relay stopped"
        );
    }

    /// Delete published rows older than `older_than`, in small batches.
    pub async fn prune(&self, older_than: Duration) -> u64 {
        prune(&self.db, older_than).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "prune failed");
            0
        })
    }

    /// PostgreSQL: wake on NOTIFY from `enqueue` (delivered at commit).
    fn spawn_listener(&self) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut l) => {
                        if l.listen(crate::outbox::NOTIFY_CHANNEL).await.is_ok() {
                            while l.recv().await.is_ok() {
                                wake.notify_one();
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Delete published rows older than `older_than` in batches of 1,000 so that
/// no statement holds locks for long; returns the number deleted.
pub async fn prune(db: &DatabaseConnection, older_than: Duration) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let mut total = 0;
    loop {
        let n = store::prune(db, cutoff, 1000).await?;
        total += n;
        if n < 1000 {
            return Ok(total);
        }
    }
}
