//! Unit tests of the metrics: the OpenMetrics text, per-workflow labels escaped.
use super::*;
use std::time::Duration;

#[test]
fn renders_prometheus_text() {
    let m = Metrics::default();
    m.set_label("role", "relay");
    m.set_label("role", "relay");
    m.outbox_published.inc_by(3);
    m.publish_latency.observe(Duration::from_millis(3));
    let text = m.render();
    assert!(text.contains("herald_outbox_published_total{role=\"relay\"} 3"));
    assert!(
        text.contains("herald_publish_latency_seconds_bucket{role=\"relay\",le=\"0.005\"} 1"),
        "{text}"
    );
    assert!(text.contains("herald_publish_latency_seconds_count{role=\"relay\"} 1"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn per_workflow_samples_are_labelled_and_escaped() {
    let m = Metrics::default();
    m.set_label("role", "worker");
    m.emails_sent("welcome").inc();
    m.emails_sent("welcome").inc();
    m.emails_sent("odd\"name\n").inc();
    m.send_latency.observe("welcome", Duration::from_millis(20));
    let text = m.render();
    assert!(
        text.contains("herald_emails_sent_total{role=\"worker\",workflow=\"welcome\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("herald_emails_sent_total{role=\"worker\",workflow=\"odd\\\"name\\n\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "herald_send_latency_seconds_bucket{role=\"worker\",le=\"0.025\",workflow=\"welcome\"} 1"
    ));
    assert_eq!(m.sent_total(), 3);
    assert_eq!(text.matches("role=").count(), text.matches("{").count());
}
