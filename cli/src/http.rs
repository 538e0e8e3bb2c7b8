//! The operations endpoint of long-running commands (`--http ADDR`):
//! `GET /healthz` (the process is alive), `GET /readyz` (every part it runs
//! works: 503 with the reasons otherwise), `GET /metrics` (Prometheus text).
//! HTTP/1.1 by hand: three fixed routes do not justify a web framework.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald::health::Health;
use herald::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bind `addr` and serve until `stop`. Binding errors are returned at once
/// (a configuration problem the operator must see at start-up).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            let Ok((mut sock, _)) = accepted else {
                continue;
            };
            let metrics = metrics.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // A client that sends nothing is not waited for forever.
                let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let mut words = req.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
                let (status, ctype, body) = respond(method, path, &metrics, &health);
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(local)
}

fn respond(
    method: &str,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> (&'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain", "GET only\n".into());
    }
    match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if health.is_ready() => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            format!("not ready:\n{}\n", health.problems().join("\n")),
        ),
        "/metrics" => {
            metrics.ready.set(if health.is_ready() { 1.0 } else { 0.0 });
            (
                "200 OK",
                herald::metrics::Metrics::CONTENT_TYPE,
                metrics.render(),
            )
        }
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}
