//! Process metrics in Prometheus form, kept by `prometheus-client` (typed
//! counters, gauges and histograms in atomics; label values escaped by the
//! encoder). The worker's delivery metrics carry a `workflow` label; a
//! process's constant labels (`role`) are set once and added to every sample.
//!
//! Names (the encoder adds `_total` to counters): `herald_emails_sent_total`,
//! `herald_send_retries_total`, `herald_dead_letters_total`,
//! `herald_uncertain_total`, `herald_emails_skipped_total`,
//! `herald_emails_in_flight_elsewhere_total`, `herald_messages_acked_total`,
//! `herald_send_latency_seconds` and `herald_end_to_end_latency_seconds`
//! (histograms), `herald_consumer_up`, all per `workflow`; the relay's
//! `herald_outbox_*` and `herald_publish_latency_seconds`; `herald_smtp_up`,
//! `herald_smtp_outages_total`, `herald_ready`.
//!
//! ```no_run
//! let metrics = herald::metrics::Metrics::new();
//! metrics.set_label("role", "worker");
//! // Hand `metrics` to a `Relay` or `Worker`, then serve the text on `/metrics`:
//! let body = metrics.render();
//! ```
mod families;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub use families::{FloatGauge, Latency, WorkflowCounter, WorkflowLatency};
use families::{PerWorkflow, label, per};

/// Everything Herald's processes measure. Unused families stay at zero (or
/// have no samples yet, for the per-workflow ones).
///
/// ```
/// use herald::metrics::Metrics;
/// let m = Metrics::new();
/// m.set_label("role", "worker");
/// m.emails_sent("welcome").inc();
/// let text = m.render();
/// assert!(text.contains("herald_emails_sent_total"));
/// ```
#[derive(Default)]
pub struct Metrics {
    pub outbox_published: Counter,
    pub outbox_duplicates: Counter,
    pub outbox_publish_failures: Counter,
    pub outbox_parked: Counter,
    pub outbox_backlog: FloatGauge,
    pub outbox_oldest_pending_seconds: FloatGauge,
    pub publish_latency: Latency,
    emails_sent: PerWorkflow<Counter>,
    emails_skipped: PerWorkflow<Counter>,
    emails_in_flight_elsewhere: PerWorkflow<Counter>,
    send_retries: PerWorkflow<Counter>,
    /// Deliveries whose connection failed after the final "." of DATA.
    uncertain: PerWorkflow<Counter>,
    dead_letters: PerWorkflow<Counter>,
    messages_acked: PerWorkflow<Counter>,
    /// Times the SMTP transport became unreachable.
    pub smtp_outages: Counter,
    /// Replies asking to slow down (421, 454, 451 4.7.x).
    pub smtp_throttled: Counter,
    /// Addresses suppressed by a hard bounce.
    pub suppressed: Counter,
    /// 1 while the SMTP transport answers.
    pub smtp_up: FloatGauge,
    /// Per workflow: 1 while its consumer runs.
    consumer_up: PerWorkflow<FloatGauge>,
    /// SMTP send duration, per workflow.
    pub send_latency: WorkflowLatency,
    /// Outbox commit to SMTP accepted, per workflow.
    pub end_to_end_latency: WorkflowLatency,
    /// Set by the process when its dependencies answer (readiness).
    pub ready: FloatGauge,
    /// Constant labels of every sample (e.g. `role="relay"`), by name.
    labels: Mutex<BTreeMap<String, String>>,
    /// Emails sent by all workflows (for the worker's closing log line).
    sent_total: Counter,
    /// Dead letters of all workflows (likewise).
    dead_letters_total: Counter,
}

impl Metrics {
    /// A fresh set, shared (`Arc`) between the process's loops and its
    /// `/metrics` endpoint.
    ///
    /// ```
    /// let metrics = herald::metrics::Metrics::new();
    /// let for_http = std::sync::Arc::clone(&metrics);
    /// metrics.outbox_published.inc();
    /// assert_eq!(for_http.outbox_published.get(), 1);
    /// ```
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Emails `workflow` had accepted by the SMTP server and recorded.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.emails_sent("welcome").inc();
    /// assert!(m.render().contains(r#"herald_emails_sent_total{workflow="welcome"} 1"#));
    /// ```
    pub fn emails_sent(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.emails_sent, workflow, Some(&self.sent_total))
    }

    /// Deliveries `workflow` skipped (guard false, or already done).
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.emails_skipped("welcome").inc();
    /// assert_eq!(m.emails_skipped("welcome").get(), 1);
    /// ```
    pub fn emails_skipped(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.emails_skipped, workflow, None)
    }

    /// Deliveries of `workflow` found claimed by another worker.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.emails_in_flight_elsewhere("welcome").inc();
    /// assert_eq!(m.emails_in_flight_elsewhere("welcome").get(), 1);
    /// ```
    pub fn emails_in_flight_elsewhere(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.emails_in_flight_elsewhere, workflow, None)
    }

    /// Transient send failures of `workflow` scheduled for retry.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.send_retries("welcome").inc();
    /// assert_eq!(m.send_retries("welcome").get(), 1);
    /// ```
    pub fn send_retries(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.send_retries, workflow, None)
    }

    /// Deliveries of `workflow` whose session broke after the end of DATA.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.uncertain("welcome").inc();
    /// assert!(m.render().contains(r#"herald_uncertain_total{workflow="welcome"} 1"#));
    /// ```
    pub fn uncertain(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.uncertain, workflow, None)
    }

    /// Dead letters written by `workflow`.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.dead_letters("welcome").inc();
    /// assert_eq!(m.dead_letters_total(), 1);
    /// ```
    pub fn dead_letters(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.dead_letters, workflow, Some(&self.dead_letters_total))
    }

    /// JetStream messages of `workflow`'s consumer acknowledged.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.messages_acked("welcome").inc();
    /// assert_eq!(m.messages_acked("welcome").get(), 1);
    /// ```
    pub fn messages_acked(&self, workflow: &str) -> WorkflowCounter<'_> {
        per(&self.messages_acked, workflow, None)
    }

    /// Emails sent so far, all workflows together.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.emails_sent("welcome").inc();
    /// m.emails_sent("receipt").inc();
    /// assert_eq!(m.sent_total(), 2);
    /// ```
    pub fn sent_total(&self) -> u64 {
        self.sent_total.get()
    }

    /// Dead letters written so far, all workflows together.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.dead_letters("welcome").inc();
    /// m.dead_letters("receipt").inc();
    /// assert_eq!(m.dead_letters_total(), 2);
    /// ```
    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters_total.get()
    }

    /// Whether `workflow`'s consumer runs (the `herald_consumer_up` gauge).
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.set_consumer_up("welcome", true);
    /// assert!(m.render().contains(r#"herald_consumer_up{workflow="welcome"} 1"#));
    /// ```
    pub fn set_consumer_up(&self, workflow: &str, up: bool) {
        self.consumer_up
            .get_or_create(&label(workflow))
            .set(if up { 1.0 } else { 0.0 });
    }

    /// A constant label added to every sample (e.g. `role="relay"`); setting
    /// a name again replaces its value.
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.set_label("role", "relay");
    /// m.outbox_published.inc();
    /// assert!(m.render().contains(r#"herald_outbox_published_total{role="relay"} 1"#));
    /// ```
    pub fn set_label(&self, k: &str, v: &str) {
        if let Ok(mut l) = self.labels.lock() {
            l.insert(k.to_string(), v.to_string());
        }
    }

    /// The registry of every family, labelled with the constant labels.
    // Long but flat: one registration per family, in the order they are exported.
    fn registry(&self) -> Registry {
        let labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = self
            .labels
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let mut r = Registry::with_labels(labels.into_iter());
        // Counters are named without `_total`: the encoder appends it.
        r.register(
            "herald_outbox_published",
            "Outbox rows published and acknowledged by JetStream",
            self.outbox_published.clone(),
        );
        r.register(
            "herald_outbox_duplicates",
            "Publishes JetStream reported as duplicates (dropped by Nats-Msg-Id)",
            self.outbox_duplicates.clone(),
        );
        r.register(
            "herald_outbox_publish_failures",
            "Failed publish attempts",
            self.outbox_publish_failures.clone(),
        );
        r.register(
            "herald_outbox_parked",
            "Rows parked after exhausting publish attempts",
            self.outbox_parked.clone(),
        );
        r.register(
            "herald_outbox_backlog",
            "Unpublished, unparked outbox rows",
            self.outbox_backlog.clone(),
        );
        r.register(
            "herald_outbox_oldest_pending_seconds",
            "Age of the oldest unpublished row",
            self.outbox_oldest_pending_seconds.clone(),
        );
        r.register(
            "herald_publish_latency_seconds",
            "Outbox commit to JetStream PubAck",
            self.publish_latency.0.clone(),
        );
        r.register(
            "herald_emails_sent",
            "Emails accepted by the SMTP server and recorded, per workflow",
            self.emails_sent.clone(),
        );
        r.register(
            "herald_emails_skipped",
            "Deliveries skipped (guard false or already sent), per workflow",
            self.emails_skipped.clone(),
        );
        r.register(
            "herald_emails_in_flight_elsewhere",
            "Deliveries found claimed by another worker (its message is looked at again later), per workflow",
            self.emails_in_flight_elsewhere.clone(),
        );
        r.register(
            "herald_send_retries",
            "Transient send failures scheduled for retry, per workflow",
            self.send_retries.clone(),
        );
        r.register(
            "herald_uncertain",
            "Deliveries whose connection failed after the end of DATA (the server may have them), per workflow",
            self.uncertain.clone(),
        );
        r.register(
            "herald_dead_letters",
            "Deliveries moved to the dead-letter store, per workflow",
            self.dead_letters.clone(),
        );
        r.register(
            "herald_messages_acked",
            "JetStream messages acknowledged by the worker, per workflow",
            self.messages_acked.clone(),
        );
        r.register(
            "herald_smtp_outages",
            "Times the SMTP transport became unreachable",
            self.smtp_outages.clone(),
        );
        r.register(
            "herald_smtp_throttled",
            "Replies asking to slow down (421, 454, 451 4.7.x): the transport's rate backed off",
            self.smtp_throttled.clone(),
        );
        r.register(
            "herald_suppressed",
            "Addresses suppressed by a hard bounce",
            self.suppressed.clone(),
        );
        r.register(
            "herald_smtp_up",
            "1 while the SMTP transport answers",
            self.smtp_up.clone(),
        );
        r.register(
            "herald_consumer_up",
            "1 while the workflow's consumer runs",
            self.consumer_up.clone(),
        );
        r.register(
            "herald_send_latency_seconds",
            "SMTP send duration, per workflow",
            self.send_latency.0.clone(),
        );
        r.register(
            "herald_end_to_end_latency_seconds",
            "Outbox commit to SMTP accepted, per workflow",
            self.end_to_end_latency.0.clone(),
        );
        r.register(
            "herald_ready",
            "1 when every part of the process works (see /readyz)",
            self.ready.clone(),
        );
        r
    }

    /// The text exposition (OpenMetrics 1.0, which Prometheus scrapes;
    /// serve it as [`Metrics::CONTENT_TYPE`]).
    ///
    /// ```
    /// let m = herald::metrics::Metrics::new();
    /// m.outbox_published.inc();
    /// let body = m.render();
    /// assert!(body.contains("herald_outbox_published_total 1"));
    /// assert!(body.ends_with("# EOF\n"));
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }

    /// The content type of [`Metrics::render`]'s text.
    ///
    /// ```
    /// use herald::metrics::Metrics;
    /// let m = Metrics::new();
    /// // What a `/metrics` handler answers with.
    /// let (content_type, body) = (Metrics::CONTENT_TYPE, m.render());
    /// assert!(content_type.starts_with("application/openmetrics-text"));
    /// ```
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
}

#[cfg(test)]
mod tests;
