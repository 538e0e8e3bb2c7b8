//! Process metrics in Prometheus text format: counters, gauges and fixed-bucket
//! histograms kept in atomics, so hot paths never take a lock.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency buckets (seconds): 1 ms to 60 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge holding an f64 (stored as bits).
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

enum Kind<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
    Histogram(&'a Histogram),
}

/// Everything Herald's processes measure. Unused families stay at zero.
#[derive(Default)]
pub struct Metrics {
    pub outbox_published: Counter,
    pub outbox_duplicates: Counter,
    pub outbox_publish_failures: Counter,
    pub outbox_parked: Counter,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_pending_seconds: Gauge,
    pub publish_latency: Histogram,
    pub emails_sent: Counter,
    pub emails_skipped: Counter,
    pub emails_in_flight_elsewhere: Counter,
    pub send_retries: Counter,
    /// Deliveries whose connection failed after the final "." of DATA.
    pub uncertain: Counter,
    /// Times the SMTP transport became unreachable.
    pub smtp_outages: Counter,
    /// Replies asking to slow down (421, 451, 454).
    pub smtp_throttled: Counter,
    /// Addresses suppressed by a hard bounce.
    pub suppressed: Counter,
    /// 1 while the SMTP transport answers.
    pub smtp_up: Gauge,
    /// Per workflow: 1 while its consumer runs.
    consumer_up: Mutex<std::collections::BTreeMap<String, f64>>,
    pub dead_letters: Counter,
    pub messages_acked: Counter,
    pub send_latency: Histogram,
    pub end_to_end_latency: Histogram,
    /// Set by the process when its dependencies answer (readiness).
    pub ready: Gauge,
    labels: Mutex<Vec<(String, String)>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn families(&self) -> Vec<(&'static str, &'static str, Kind<'_>)> {
        vec![
            (
                "herald_outbox_published_total",
                "Outbox rows published and acknowledged by JetStream",
                Kind::Counter(&self.outbox_published),
            ),
            (
                "herald_outbox_duplicates_total",
                "Publishes JetStream reported as duplicates (dropped by Nats-Msg-Id)",
                Kind::Counter(&self.outbox_duplicates),
            ),
            (
                "herald_outbox_publish_failures_total",
                "Failed publish attempts",
                Kind::Counter(&self.outbox_publish_failures),
            ),
            (
                "herald_outbox_parked_total",
                "Rows parked after exhausting publish attempts",
                Kind::Counter(&self.outbox_parked),
            ),
            (
                "herald_outbox_backlog",
                "Unpublished, unparked outbox rows",
                Kind::Gauge(&self.outbox_backlog),
            ),
            (
                "herald_outbox_oldest_pending_seconds",
                "Age of the oldest unpublished row",
                Kind::Gauge(&self.outbox_oldest_pending_seconds),
            ),
            (
                "herald_publish_latency_seconds",
                "Outbox commit to JetStream PubAck",
                Kind::Histogram(&self.publish_latency),
            ),
            (
                "herald_emails_sent_total",
                "Emails accepted by the SMTP server and recorded",
                Kind::Counter(&self.emails_sent),
            ),
            (
                "herald_emails_skipped_total",
                "Deliveries skipped (guard false or already sent)",
                Kind::Counter(&self.emails_skipped),
            ),
            (
                "herald_emails_in_flight_elsewhere_total",
                "Deliveries found claimed by another worker (its message is looked at again later)",
                Kind::Counter(&self.emails_in_flight_elsewhere),
            ),
            (
                "herald_send_retries_total",
                "Transient send failures scheduled for retry",
                Kind::Counter(&self.send_retries),
            ),
            (
                "herald_uncertain_total",
                "Deliveries whose connection failed after the end of DATA (the server may have them)",
                Kind::Counter(&self.uncertain),
            ),
            (
                "herald_smtp_outages_total",
                "Times the SMTP transport became unreachable",
                Kind::Counter(&self.smtp_outages),
            ),
            (
                "herald_smtp_throttled_total",
                "Replies asking to slow down (421, 451, 454): the transport's rate backed off",
                Kind::Counter(&self.smtp_throttled),
            ),
            (
                "herald_suppressed_total",
                "Addresses suppressed by a hard bounce",
                Kind::Counter(&self.suppressed),
            ),
            (
                "herald_smtp_up",
                "1 while the SMTP transport answers",
                Kind::Gauge(&self.smtp_up),
            ),
            (
                "herald_dead_letters_total",
                "Deliveries moved to the dead-letter store",
                Kind::Counter(&self.dead_letters),
            ),
            (
                "herald_messages_acked_total",
                "JetStream messages acknowledged by the worker",
                Kind::Counter(&self.messages_acked),
            ),
            (
                "herald_send_latency_seconds",
                "SMTP send duration",
                Kind::Histogram(&self.send_latency),
            ),
            (
                "herald_end_to_end_latency_seconds",
                "Outbox commit to SMTP accepted",
                Kind::Histogram(&self.end_to_end_latency),
            ),
            (
                "herald_ready",
                "1 when the database and NATS answer",
                Kind::Gauge(&self.ready),
            ),
        ]
    }

    /// Whether `workflow`'s consumer runs (the `herald_consumer_up` gauge).
    pub fn set_consumer_up(&self, workflow: &str, up: bool) {
        if let Ok(mut m) = self.consumer_up.lock() {
            m.insert(workflow.to_string(), if up { 1.0 } else { 0.0 });
        }
    }

    /// Constant labels added to every sample (e.g. `role="relay"`).
    pub fn set_label(&self, k: &str, v: &str) {
        if let Ok(mut l) = self.labels.lock() {
            l.push((k.to_string(), v.to_string()));
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let labels = self.labels.lock().map(|l| l.clone()).unwrap_or_default();
        let base: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let lbl = |extra: Option<String>| {
            let mut all = base.clone();
            all.extend(extra);
            if all.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", all.join(","))
            }
        };
        let mut out = String::new();
        for (name, help, kind) in self.families() {
            let _ = writeln!(out, "# HELP {name} {help}");
            match kind {
                Kind::Counter(c) => {
                    let _ = writeln!(
                        out,
                        "# TYPE {name} counter\n{name}{} {}",
                        lbl(None),
                        c.get()
                    );
                }
                Kind::Gauge(g) => {
                    let _ = writeln!(out, "# TYPE {name} gauge\n{name}{} {}", lbl(None), g.get());
                }
                Kind::Histogram(h) => {
                    let _ = writeln!(out, "# TYPE {name} histogram");
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let n = h.buckets[i].load(Ordering::Relaxed);
                        let _ =
                            writeln!(out, "{name}_bucket{} {n}", lbl(Some(format!("le=\"{b}\""))));
                    }
                    let count = h.count.load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        lbl(Some("le=\"+Inf\"".into()))
                    );
                    let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                    let _ = writeln!(
                        out,
                        "{name}_sum{} {sum}\n{name}_count{} {count}",
                        lbl(None),
                        lbl(None)
                    );
                }
            }
        }
        let up = self
            .consumer_up
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP herald_consumer_up 1 while the workflow's consumer runs\n# TYPE herald_consumer_up gauge"
        );
        for (wf, v) in up {
            let _ = writeln!(
                out,
                "herald_consumer_up{} {v}",
                lbl(Some(format!("workflow=\"{}\"", escape(&wf))))
            );
        }
        out
    }
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.set_label("role", "relay");
        m.outbox_published.add(3);
        m.publish_latency.observe(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("herald_outbox_published_total{role=\"relay\"} 3"));
        assert!(
            text.contains("herald_publish_latency_seconds_bucket{role=\"relay\",le=\"0.005\"} 1")
        );
        assert!(text.contains("herald_publish_latency_seconds_count{role=\"relay\"} 1"));
    }
}
