//! Relay settings: the config and its builder setters, the JetStream
//! context a relay publishes with, and a process's relay identity.
use std::time::Duration;

use async_nats::jetstream;

use crate::retry::RetryPolicy;

/// Relay settings (flags of `herald relay`).
///
/// ```
/// let cfg = herald::relay::RelayConfig::default()
///     .batch_size(1000)
///     .poll_interval(std::time::Duration::from_millis(100));
/// assert_eq!(cfg.batch_size, 1000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Batches in flight at once on PostgreSQL: while one awaits its PubAcks
    /// or its published mark, the next is claimed and published (SQLite,
    /// with its single writer, runs one batch at a time). Each holds one
    /// database connection; no two hold rows of the same aggregate.
    pub in_flight: usize,
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
            in_flight: 2,
        }
    }
}

impl RelayConfig {
    /// Rows per iteration: larger batches publish more per round trip to
    /// the database; at least 1.
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().batch_size(2_000);
    /// assert_eq!(cfg.batch_size, 2_000);
    /// ```
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Batches in flight at once (at least 1).
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().in_flight(1);
    /// assert_eq!(cfg.in_flight, 1);
    /// ```
    pub fn in_flight(mut self, batches: usize) -> Self {
        self.in_flight = batches.max(1);
        self
    }

    /// How long a claim is held: after a crash, its rows are published again
    /// once it runs out.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().lease(Duration::from_secs(60));
    /// assert_eq!(cfg.lease, Duration::from_secs(60));
    /// ```
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How often an idle relay looks for rows (PostgreSQL's NOTIFY wakes it
    /// sooner).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().poll_interval(Duration::from_millis(50));
    /// assert_eq!(cfg.poll_interval, Duration::from_millis(50));
    /// ```
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Publish attempts of one row before it is parked.
    ///
    /// ```
    /// let cfg = herald::relay::RelayConfig::default().max_attempts(10);
    /// assert_eq!(cfg.retry.max_attempts, 10);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.retry.max_attempts = n.max(1);
        self
    }

    /// Prune published rows older than this (`None`: keep them, e.g. to
    /// republish from the outbox later).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = herald::relay::RelayConfig::default().retention(Some(Duration::from_secs(7 * 86_400)));
    /// assert!(cfg.retention.is_some());
    /// ```
    pub fn retention(mut self, d: Option<Duration>) -> Self {
        self.retention = d;
        self
    }
}

/// The JetStream context a relay publishes with. async-nats caps the acks in
/// flight (5,000 by default) and makes `publish` wait for a free slot; since
/// the relay issues a whole batch before awaiting any ack, a batch larger than
/// the cap would wait forever. The cap is therefore at least the batch size.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = herald::relay::RelayConfig::default().batch_size(10_000);
/// let client = herald::jetstream::connect("nats://localhost:4222", "billing-relay").await?;
/// let js = herald::relay::jetstream_context(client, cfg.batch_size);
/// # Ok(()) }
/// ```
pub fn jetstream_context(client: async_nats::Client, batch_size: u32) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .max_ack_inflight((batch_size as usize).max(5_000))
        .build(client)
}

/// `host-pid-xxxx`: unique per process, readable in the table.
pub(crate) fn instance_id(role: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &rnd[..6])
}
