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

/// CPU time (user + system) of this process, of every PostgreSQL process
/// on the machine, and of one more process (the test's nats-server), from
/// /proc: where a benchmark's CPU went, as BENCHMARKS.md's profiles report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub own: Duration,
    pub postgres: Duration,
    pub nats: Duration,
}

impl Cpu {
    pub fn now(nats_pid: Option<u32>) -> Cpu {
        let mut postgres = Duration::ZERO;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "postgres")
                {
                    postgres += cpu_of(pid);
                }
            }
        }
        Cpu {
            own: cpu_of(std::process::id()),
            postgres,
            nats: nats_pid.map(cpu_of).unwrap_or_default(),
        }
    }

    /// CPU spent since `before`, in microseconds per `n` items:
    /// (own, postgres, nats).
    pub fn per_item_since(&self, before: &Cpu, n: usize) -> (f64, f64, f64) {
        let us = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / n as f64;
        (
            us(self.own, before.own),
            us(self.postgres, before.postgres),
            us(self.nats, before.nats),
        )
    }
}

/// utime + stime of `pid` (clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
