//! The lease fence: a batch publishes only while its lease is surely its own.
use std::time::{Duration, Instant, SystemTime};

/// How long a batch may still publish: until 90% of its lease has passed
/// since it began claiming, by the monotonic clock and by the wall clock
/// (another relay compares leases with its wall clock). A relay frozen
/// longer than that (SIGSTOP, a suspended VM, a starved host) has lost its
/// rows: on SQLite their lease ran out, on PostgreSQL the server ended the
/// idle transaction that locked them, and another relay may have published
/// them and later rows of their aggregates. Publishing them again after
/// the duplicate window would put duplicates behind those later events.
pub(super) struct Fence {
    since: Instant,
    wall: SystemTime,
    limit: Duration,
}

impl Fence {
    pub(super) fn new(since: Instant, wall: SystemTime, lease: Duration) -> Self {
        Fence {
            since,
            wall,
            limit: lease.mul_f64(0.9),
        }
    }

    pub(super) fn expired(&self) -> bool {
        self.since.elapsed() >= self.limit || self.wall.elapsed().is_ok_and(|e| e >= self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_expires_at_ninety_percent_of_the_lease_by_either_clock() {
        let lease = Duration::from_secs(10);
        assert!(!Fence::new(Instant::now(), SystemTime::now(), lease).expired());
        let by_monotonic = Instant::now().checked_sub(Duration::from_secs(9));
        if let Some(since) = by_monotonic {
            assert!(Fence::new(since, SystemTime::now(), lease).expired());
        }
        let wall = SystemTime::now() - Duration::from_secs(9);
        assert!(Fence::new(Instant::now(), wall, lease).expired());
    }
}
