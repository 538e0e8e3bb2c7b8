//! Retry policy shared by the relay (publish attempts of an outbox row) and
//! the worker (send attempts of a delivery): exponential backoff from the
//! `backoff` crate, without jitter, because the delay is stored (outbox
//! `next_attempt_at`) or handed to JetStream (nak delay) and must be reproducible.
//!
//! ```no_run
//! use std::time::Duration;
//! let policy = herald::retry::RetryPolicy { max_attempts: 5, ..Default::default() };
//! // Reproducible delays: the same attempt always waits as long.
//! assert_eq!(policy.delay(2), policy.delay(2));
//! assert!(policy.delay(1) <= Duration::from_secs(3600));
//! ```
use std::time::Duration;

/// How many attempts, and how long to wait after each failed one.
///
/// ```
/// use std::time::Duration;
/// let policy = herald::retry::RetryPolicy {
///     max_attempts: 5,
///     initial: Duration::from_secs(2),
///     ..Default::default()
/// };
/// assert_eq!(policy.delay(3), Duration::from_secs(8));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt number `attempt` (1-based), computed with `backoff`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = herald::retry::RetryPolicy::default(); // 1s, doubling, at most 5 minutes
    /// assert_eq!(policy.delay(1), Duration::from_secs(1));
    /// assert_eq!(policy.delay(4), Duration::from_secs(8));
    /// assert_eq!(policy.delay(20), Duration::from_secs(300));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        use backoff::backoff::Backoff;
        let mut b = backoff::ExponentialBackoff {
            initial_interval: self.initial,
            current_interval: self.initial,
            randomization_factor: 0.0,
            multiplier: self.multiplier,
            max_interval: self.max,
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut d = self.initial;
        for _ in 0..attempt.clamp(1, 64) {
            d = b.next_backoff().unwrap_or(self.max);
        }
        d.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(11), Duration::from_secs(1));
    }
}
