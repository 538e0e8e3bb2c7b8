//! The metric types `Metrics` is made of: latency histograms (one, or one per
//! workflow), the per-workflow counter it hands out, the `workflow` label.
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[cfg(doc)]
use super::Metrics;

/// Latency buckets (seconds): 1 ms to 60 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A gauge holding an f64.
///
/// ```
/// use herald::metrics::Metrics;
/// let m = Metrics::new();
/// m.outbox_backlog.set(120.0);
/// assert_eq!(m.outbox_backlog.get(), 120.0);
/// ```
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The label of the worker's per-workflow metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WorkflowLabel {
    workflow: String,
}

pub(super) fn label(workflow: &str) -> WorkflowLabel {
    WorkflowLabel {
        workflow: workflow.to_string(),
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub(super) type PerWorkflow<M, C = fn() -> M> = Family<WorkflowLabel, M, C>;

pub(super) fn per<'a>(
    family: &PerWorkflow<Counter>,
    workflow: &str,
    total: Option<&'a Counter>,
) -> WorkflowCounter<'a> {
    WorkflowCounter {
        counter: family.get_or_create_owned(&label(workflow)),
        total,
    }
}

/// A latency histogram observed in [`Duration`]s.
///
/// ```
/// let m = herald::metrics::Metrics::new();
/// m.publish_latency.observe(std::time::Duration::from_millis(12));
/// assert!(m.render().contains("herald_publish_latency_seconds_count 1"));
/// ```
#[derive(Clone, Debug)]
pub struct Latency(pub(super) Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(latency_histogram())
    }
}

impl Latency {
    /// Record one measured duration, in seconds in the histogram.
    ///
    /// ```
    /// use std::time::Instant;
    /// let m = herald::metrics::Metrics::new();
    /// let started = Instant::now();
    /// // ... publish ...
    /// m.publish_latency.observe(started.elapsed());
    /// ```
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// A latency histogram per workflow.
///
/// ```
/// let m = herald::metrics::Metrics::new();
/// m.send_latency.observe("welcome", std::time::Duration::from_millis(250));
/// assert!(m.render().contains(r#"herald_send_latency_seconds_count{workflow="welcome"} 1"#));
/// ```
#[derive(Clone, Debug)]
pub struct WorkflowLatency(pub(super) PerWorkflow<Histogram>);

impl Default for WorkflowLatency {
    fn default() -> Self {
        WorkflowLatency(Family::new_with_constructor(latency_histogram))
    }
}

impl WorkflowLatency {
    /// Observe `d` for `workflow`.
    ///
    /// ```
    /// use std::time::Instant;
    /// let m = herald::metrics::Metrics::new();
    /// let started = Instant::now();
    /// // ... send the email ...
    /// m.send_latency.observe("welcome", started.elapsed());
    /// ```
    pub fn observe(&self, workflow: &str, d: Duration) {
        self.0
            .get_or_create(&label(workflow))
            .observe(d.as_secs_f64());
    }
}

/// One workflow's counter, as [`Metrics`] hands it out: `inc` it.
///
/// ```
/// let m = herald::metrics::Metrics::new();
/// let sent = m.emails_sent("welcome");
/// sent.inc();
/// assert_eq!(sent.get(), 1);
/// ```
pub struct WorkflowCounter<'a> {
    counter: Counter,
    /// The all-workflows total it also counts into, if one is kept.
    total: Option<&'a Counter>,
}

impl WorkflowCounter<'_> {
    /// Count one more, in the workflow's series and in the all-workflows
    /// total when the counter keeps one.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.emails_sent("welcome").inc();
    /// m.emails_sent("digest").inc();
    /// assert_eq!(m.sent_total(), 2);
    /// ```
    pub fn inc(&self) {
        self.counter.inc();
        if let Some(t) = self.total {
            t.inc();
        }
    }

    /// This workflow's count so far.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.dead_letters("welcome").inc();
    /// assert_eq!(m.dead_letters("welcome").get(), 1);
    /// assert_eq!(m.dead_letters("digest").get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        self.counter.get()
    }
}
