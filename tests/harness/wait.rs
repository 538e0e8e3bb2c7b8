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
