//! The worker end to end: relay and worker as processes, real nats-server,
//! real SMTP sink over TCP, both databases.

mod contract_offer;
mod recovery;
mod smtp;
mod startup;
mod workflows;

use herald_tests::db::Backend;
use herald_tests::env::TestEnv;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use serde_json::json;

/// `notify` (FAST_RETRY) with a relay and a worker running, and a first
/// email through: everything is bound and flowing.
async fn flowing(backend: Backend) -> (World, Herald, Herald) {
    let w = notify(backend).await;
    let relay = w.relay();
    let worker = w.worker();
    w.emit(
        "events.test.first",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    w.wait_emails(1).await;
    (w, relay, worker)
}

/// The `notify` workflow (FAST_RETRY), nothing running yet.
async fn notify(backend: Backend) -> World {
    Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await
}

pub(crate) const FAST_RETRY: &str = r#"
name: notify
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.email}}"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
  html: "<p>Hi {{event.name}}</p>"
retry:
  max_attempts: 3
  backoff: { initial: 100ms, max: 200ms }
"#;

async fn stream_ack_floor(env: &TestEnv) -> u64 {
    let js = env.nats.jetstream().await;
    let Ok(stream) = js.get_stream("HERALD").await else {
        return 0;
    };
    let Ok(mut c) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-notify")
        .await
    else {
        return 0;
    };
    c.info()
        .await
        .map(|i| i.ack_floor.stream_sequence)
        .unwrap_or(0)
}
