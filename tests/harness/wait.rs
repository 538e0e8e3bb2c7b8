//! Waiting on conditions with a deadline.
use std::future::Future;
use std::time::{Duration, Instant};

/// Default deadline for a condition in tests: generous, because CI machines are slow;
/// a passing test returns as soon as the condition holds.
pub const DEFAULT: Duration = Duration::from_secs(60);

/// Poll `cond` until it returns true; panic with `what` after `deadline`.
pub async fn until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Poll `attempt` until it returns `Ok`; panic with `what` and the last
/// error after `deadline`. For calls a recovering server may refuse for
/// a moment (a JetStream cluster electing a leader answers 503).
pub async fn ok<T, E, F, Fut>(what: &str, deadline: Duration, mut attempt: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() > deadline => {
                panic!("timed out after {deadline:?} waiting for {what}: {e:?}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}
