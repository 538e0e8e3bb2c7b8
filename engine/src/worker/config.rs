//! `WorkerConfig`: the worker's settings (the flags of `herald worker`) and
//! their setters.
use std::time::Duration;

/// Worker settings (the flags of `herald worker`).
///
/// ```
/// let cfg = herald::worker::WorkerConfig::default()
///     .stream("HERALD")
///     .concurrency(32)
///     .ack_wait(std::time::Duration::from_secs(30));
/// assert_eq!(cfg.concurrency, 32);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    pub stream: String,
    /// Messages processed at once per workflow.
    pub concurrency: usize,
    pub max_ack_pending: i64,
    /// JetStream redelivers a message unacknowledged for this long; it is
    /// also the ledger's claim lease: a `sending` row younger than this may
    /// be in another worker's hands and is not sent again.
    pub ack_wait: Duration,
    /// One-click unsubscribe links for workflows with a `category`.
    pub unsubscribe: Option<crate::unsubscribe::Unsubscribe>,
}

impl WorkerConfig {
    /// What these workflows need that this configuration lacks: a workflow
    /// with a `category` sends bulk mail with one-click unsubscribe, which
    /// needs the unsubscribe settings. Checked before a worker starts (and
    /// by `herald config`), one line per workflow.
    ///
    /// ```no_run
    /// # fn example(catalog: herald::workflow::Catalog) {
    /// let missing = herald::worker::WorkerConfig::default().missing_settings(catalog.workflows.iter());
    /// for line in &missing {
    ///     eprintln!("{line}");
    /// }
    /// # }
    /// ```
    pub fn missing_settings<'a>(
        &self,
        workflows: impl Iterator<Item = &'a crate::workflow::Workflow>,
    ) -> Vec<String> {
        workflows
            .filter(|w| w.category().is_some() && self.unsubscribe.is_none())
            .map(|w| {
                format!(
                    "workflow {} has a category (bulk mail with one-click unsubscribe): set --public-url (HERALD_PUBLIC_URL: where recipients reach this worker's --http listener) and --unsubscribe-secret (HERALD_UNSUBSCRIBE_SECRET: at least 16 characters, kept stable), or run only other workflows with --workflow",
                    w.name
                )
            })
            .collect()
    }

    /// The JetStream stream to consume: the one the relay publishes to.
    ///
    /// ```
    /// let cfg = herald::worker::WorkerConfig::default().stream("HERALD_STAGING");
    /// ```
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// Messages processed at once per workflow (at least 1); messages of one
    /// aggregate still go one at a time.
    ///
    /// ```
    /// let cfg = herald::worker::WorkerConfig::default().concurrency(64);
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The consumer's cap on unacknowledged messages (at least 1): bounds what a
    /// stalled worker holds.
    ///
    /// ```
    /// let cfg = herald::worker::WorkerConfig::default().max_ack_pending(5000);
    /// ```
    pub fn max_ack_pending(mut self, n: i64) -> Self {
        self.max_ack_pending = n.max(1);
        self
    }

    /// How long a message may stay unacknowledged before JetStream redelivers it;
    /// longer than the slowest SMTP send.
    ///
    /// ```
    /// let cfg = herald::worker::WorkerConfig::default().ack_wait(std::time::Duration::from_secs(120));
    /// ```
    pub fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = d;
        self
    }

    /// Sign one-click unsubscribe links (needed by workflows with a `category`).
    ///
    /// ```
    /// use herald::{unsubscribe::Unsubscribe, worker::WorkerConfig};
    /// let links = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
    /// let cfg = WorkerConfig::default().unsubscribe(links);
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn unsubscribe(mut self, u: crate::unsubscribe::Unsubscribe) -> Self {
        self.unsubscribe = Some(u);
        self
    }

    /// Messages taken from the stream at once (in lanes, running or
    /// waiting): enough to keep every slot busy across many aggregates,
    /// never more than the consumer's max_ack_pending.
    ///
    /// ```
    /// let cfg = herald::worker::WorkerConfig::default().concurrency(4).max_ack_pending(100);
    /// assert_eq!(cfg.max_in_flight(), 100);
    /// ```
    pub fn max_in_flight(&self) -> usize {
        let cap = usize::try_from(self.max_ack_pending.max(1)).unwrap_or(1000);
        (self.concurrency.max(1) * 64)
            .min(cap)
            .max(self.concurrency.max(1))
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            stream: "HERALD".into(),
            concurrency: 16,
            max_ack_pending: 1000,
            ack_wait: Duration::from_secs(60),
            unsubscribe: None,
        }
    }
}
