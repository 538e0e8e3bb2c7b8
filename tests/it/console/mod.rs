//! `--http`: the web console in a real browser (Debian's chromium driven by
//! chromedriver over WebDriver), and over plain HTTP what a browser would
//! hide: methods, timeouts, CSRF refusals, readiness reasons, metric names
//! and labels, escaping, secrets.

mod browser;
mod http;

use herald_tests::db::Backend;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::wait;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "console-test-token-7f3a9c";

const GREET: &str = r#"
name: greet
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.name}} <{{event.email}}>"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 1s, multiplier: 2.0 }
"#;

/// A worker (with `--http` and `args`) and a relay on a world running `greet`.
struct Console {
    w: World,
    addr: String,
    worker: Herald,
    _relay: Herald,
}

impl Console {
    async fn start(backend: Backend, args: &[&str]) -> Console {
        let w = Scenario::new(backend)
            .workflow("greet.yaml", GREET)
            .start()
            .await;
        Console::on(w, args).await
    }

    async fn on(w: World, args: &[&str]) -> Console {
        let addr = format!("127.0.0.1:{}", herald_tests::free_port());
        let mut all = vec!["--http", addr.as_str()];
        all.extend_from_slice(args);
        let worker = w.worker_with(&all);
        let relay = w.relay();
        let c = Console {
            w,
            addr,
            worker,
            _relay: relay,
        };
        wait::until("the console answers", wait::DEFAULT, || async {
            c.get("/healthz").await.0 == 200
        })
        .await;
        c
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        request(
            &self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr),
            "",
        )
        .await
    }

    /// A POST with extra header lines (each ending in `\r\n`) and a form body.
    async fn post(&self, path: &str, headers: &str, body: &str) -> (u16, String, String) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{headers}",
            self.addr,
            body.len()
        );
        request(&self.addr, &head, body).await
    }

    /// Emit one event for `email`; its id.
    async fn emit(&self, name: &str, email: &str) -> String {
        self.w
            .emit("events.test.hello", json!({ "name": name, "email": email }))
            .await
    }

    async fn open_dead_letter(&self) -> i64 {
        self.w
            .count("SELECT MAX(id) FROM herald_dead_letters WHERE retried_at IS NULL")
            .await
    }
}

/// One request on a fresh connection (closed after the answer): status,
/// head, body; status 0 when nothing listens (yet).
async fn request(addr: &str, head: &str, body: &str) -> (u16, String, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new(), String::new());
    };
    s.write_all(format!("{head}Connection: close\r\n\r\n{body}").as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The header `name` of a response head (case-insensitive).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
