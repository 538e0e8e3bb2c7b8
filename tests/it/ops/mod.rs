//! Operations: status, outbox prune/retry, dead-letter re-drive, database outages.

mod dlq;
mod outages;
mod republish;
mod status;

use herald_tests::db::Backend;
use herald_tests::scenario::{Scenario, World};

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn with_workflow(backend: Backend, yaml: &str) -> World {
    Scenario::new(backend)
        .workflow("wf.yaml", yaml)
        .start()
        .await
}

async fn numbered(backend: Backend) -> World {
    with_workflow(backend, NUMBERED).await
}

/// One email per `{"n": i}` event, to u{n}@example.com, with a retry budget
/// long enough to ride out short outages.
const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
retry:
  max_attempts: 50
  backoff: { initial: 100ms, max: 300ms }
"#;

const BROKEN: &str = r#"
name: greet
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.email}}"
  subject: "{{event.greeting}}"
  text: "Hi {{event.name}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 100ms }
"#;
