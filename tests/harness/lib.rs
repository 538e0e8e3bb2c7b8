//! Test harness: real servers for Herald's integration tests and benchmarks.
//!
//! - [`nats::NatsServer`]: a `nats-server` ≥ 2.10 with JetStream on a free port
//!   and a temp store, killed on drop, restartable on the same store;
//!   [`nats::NatsCluster`]: three of them as a JetStream cluster (R3 streams),
//!   on loopback or each in its own network namespace ([`netns::Netns`]).
//! - [`db::TestDb`]: a fresh database per test, SQLite (temp file) or
//!   PostgreSQL (a uniquely named database, dropped afterwards).
//! - [`smtp::SmtpSink`]: an SMTP server over TCP in the test process that
//!   records every message and answers as scripted (250, 4xx, 5xx, drops).
//! - [`otlp::OtlpReceiver`]: an OTLP/HTTP collector stand-in that keeps the spans it receives.
//! - [`process::Herald`]: the `herald` binary as a child process (kill -9, SIGTERM).
//! - [`wait::until`]: wait for a condition with a deadline, never a bare sleep.
//! - [`soak::Soak`]: relays and workers under a seeded chaos loop on a
//!   cluster, and the invariant checker (lost, duplicates, order, stuck).

pub mod bench;
pub mod db;
pub mod env;
pub mod fuzz;
pub mod golden;
pub mod nats;
pub mod netns;
pub mod otlp;
pub mod process;
pub mod scenario;
pub mod smtp;
pub mod soak;
pub mod wait;

use std::path::PathBuf;

/// The workspace root (for `workflows/`, `nats.conf`, `target/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A seeded random source for tests that pick points at random (where to
/// kill a process). The seed is printed; `HERALD_TEST_SEED=N` replays a run.
pub fn rng(test: &str) -> fastrand::Rng {
    let seed = std::env::var("HERALD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: HERALD_TEST_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// The example workflows shipped in `workflows/` (with `samples/`).
pub fn example_workflows() -> PathBuf {
    workspace_root().join("workflows")
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// `GET path` over plain HTTP/1.1 to `addr`; the whole response, or None when
/// nothing answers (for `--http` endpoint tests).
/// One HTTP/1.1 request with a form body; the whole response, or None when
/// nothing answers.
pub async fn http_request(addr: &str, method: &str, path: &str, body: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

pub async fn http_get(addr: String, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}
