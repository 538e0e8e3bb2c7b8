//! `/healthz` (the process answers), `/readyz` (every part works: 503 with
//! the reasons otherwise), `/metrics` (the Prometheus exposition).
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

const TEXT: &str = "text/plain; charset=utf-8";

pub async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, TEXT)], "ok\n")
}

pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    // A worker says which workflow set it runs (the version changes on reload).
    let version = s
        .worker()
        .map(|w| format!("workflows {}\n", w.version()))
        .unwrap_or_default();
    if s.health.is_ready() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            format!("ready\n{version}"),
        );
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, TEXT)],
        format!("not ready:\n{}\n{version}", s.health.problems().join("\n")),
    )
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics
        .ready
        .set(if s.health.is_ready() { 1.0 } else { 0.0 });
    (
        [(header::CONTENT_TYPE, herald::metrics::Metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
}
