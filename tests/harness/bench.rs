//! Small helpers shared by the benchmarks: sizes from the environment,
//! percentiles, rate formatting.
use std::time::Duration;

/// `name` from the environment, else `default` (e.g. HERALD_BENCH_EVENTS).
pub fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Messages per second.
pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The `p`-th percentile (0..=100) of `samples` in milliseconds.
pub fn percentile_ms(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

/// The worker benchmarks' workflow: one email per `events.bench.*` event.
pub const BENCH_WORKFLOW: &str = r#"
name: bench
on: { subjects: ["events.bench.>"] }
email:
  from: "Bench <bench@herald.example>"
  to: "{{event.email}}"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}, your code is {{event.code}}."
  html: "<p>Hi {{event.name}}, your code is <b>{{event.code}}</b>.</p>"
"#;

/// The `i`-th event's payload for [`BENCH_WORKFLOW`].
pub fn bench_payload(i: usize) -> serde_json::Value {
    serde_json::json!({"email": format!("u{i}@example.com"), "name": format!("User {i}"), "code": format!("CODE-{i}")})
}

/// Publish `n` bench events straight into the stream (the relay's part is
/// measured apart), pipelined in windows of 4,000 acks.
pub async fn publish_bench_events(js: &async_nats::jetstream::Context, n: usize) {
    for window in (0..n).collect::<Vec<_>>().chunks(4000) {
        let mut acks = Vec::new();
        for &i in window {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
            h.insert(
                "Herald-Occurred-At",
                chrono::Utc::now().to_rfc3339().as_str(),
            );
            let body = bench_payload(i).to_string();
            acks.push(
                js.publish_with_headers("events.bench.sent", h, body.into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    }
}
