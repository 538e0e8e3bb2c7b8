//! Robustness: nothing a workflow, a payload, a stream message, an outage
//! or a flag contains may panic the worker, stop a consumer silently, lose
//! order, or leak a secret. Each test here is a symptom a new user hit.

mod errors;
mod order;
mod outage;
mod poison;
mod rendering;
mod secrets;
mod uncertain;

fn workflows(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// One email per `{"n": i}` event, a small retry budget: an outage that
/// counted attempts would dead-letter everything.
const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 200ms }
"#;

async fn readyz(addr: &str) -> Option<String> {
    herald_tests::http_get(addr.to_string(), "/readyz").await
}
