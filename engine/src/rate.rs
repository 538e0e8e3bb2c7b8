//! Rate limits shared by every worker: per transport (`?rate=50/s&burst=100`
//! on the SMTP URL) and per workflow (`rate: 10/s`). The bucket is a row of
//! `herald_rate_limits`, so several worker processes share one limit (the
//! database is the one thing they all share reliably); each email reserves
//! its slot with one atomic UPDATE.
//!
//! Adaptive: a "try later" reply from the server (421, 451, 454) halves the
//! transport's rate, which then recovers, doubling every 30 s without
//! another one. A transport without a configured rate is paused instead,
//! for a second, then two, then four (up to a minute) while the replies go on.
//!
//! ```no_run
//! let rate = herald::rate::Rate::parse("50/s")?.with_burst(100);
//! assert_eq!(rate.per_second, 50.0);
//! # Ok::<(), herald::error::InvalidValue>(())
//! ```
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

/// The slowest rate: one a day.
const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// The largest burst.
///
/// ```
/// let r = herald::rate::Rate::parse("10/s").unwrap().with_burst(u32::MAX);
/// assert_eq!(r.burst, herald::rate::MAX_BURST);
/// ```
pub const MAX_BURST: u32 = 1_000_000;

/// A rate: `N/s`, `N/m` or `N/h`, with a burst (how many may go at once
/// after a quiet spell).
///
/// ```
/// let r = herald::rate::Rate::parse("600/m")?.with_burst(20);
/// assert_eq!((r.per_second, r.burst), (10.0, 20));
/// # Ok::<(), herald::error::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// `10/s`, `600/m`, `1000/h`; the burst defaults to one second's worth
    /// (at least 1).
    ///
    /// ```
    /// use herald::rate::Rate;
    /// assert_eq!(Rate::parse("50/s")?.burst, 50);
    /// assert_eq!(Rate::parse("1000/h")?.burst, 1);
    /// assert!(Rate::parse("50 per second").is_err());
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn parse(s: &str) -> Result<Rate, crate::error::InvalidValue> {
        Self::parse_text(s).map_err(crate::error::InvalidValue)
    }

    fn parse_text(s: &str) -> Result<Rate, String> {
        let err = || format!("{s:?} is not a rate: use N/s, N/m or N/h (e.g. 10/s)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let n: f64 = n.trim().parse().map_err(|_| err())?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        if !n.is_finite() || n <= 0.0 || n > 1e6 {
            return Err(format!(
                "{s:?}: the number must be above 0 and at most 1000000"
            ));
        }
        let per_second = n / per;
        // Slower than this, a slot's interval (in microseconds, slowed up
        // to 64 times after "slow down" replies, times the burst) would
        // leave the 64-bit range the bucket is kept in.
        if per_second < MIN_PER_SECOND {
            return Err(format!(
                "{s:?}: the rate must be at least one a day (e.g. 0.05/h)"
            ));
        }
        Ok(Rate {
            per_second,
            burst: per_second.ceil().clamp(1.0, f64::from(MAX_BURST)) as u32,
        })
    }

    /// The burst, from 1 to [`MAX_BURST`].
    ///
    /// ```
    /// let r = herald::rate::Rate::parse("1/s")?.with_burst(100); // quiet for a while: 100 may go at once
    /// assert_eq!(r.burst, 100);
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn with_burst(mut self, burst: u32) -> Rate {
        self.burst = burst.clamp(1, MAX_BURST);
        self
    }

    fn interval_micros(&self, factor: f64) -> i64 {
        (1e6 / (self.per_second * factor.clamp(1.0 / 64.0, 1.0))) as i64
    }

    /// The bucket at `now` (microseconds) with the rate slowed by `factor`:
    /// the interval between slots, and the floor of the next free slot
    /// (after a quiet spell up to `burst` slots are free at once).
    pub(crate) fn window(&self, factor: f64, now: i64) -> (i64, i64) {
        let interval = self.interval_micros(factor);
        let burst = interval.saturating_mul(i64::from(self.burst));
        (interval, now.saturating_sub(burst))
    }
}

/// How fast a halved rate recovers: it doubles every this long.
const RECOVERY: Duration = Duration::from_secs(30);
const MIN_FACTOR: f64 = 1.0 / 64.0;
/// Throttle replies closer together than this count once.
const DEBOUNCE: Duration = Duration::from_secs(1);

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

use crate::db::ph;

/// The factor after recovery since the last throttle.
fn recovered(factor: f64, throttled_at: Option<i64>, now: i64) -> f64 {
    match throttled_at {
        None => 1.0,
        Some(t) => {
            let halvings = (now - t).max(0) as f64 / RECOVERY.as_micros() as f64;
            (factor * 2f64.powf(halvings)).min(1.0)
        }
    }
}

/// One shared bucket.
pub(crate) struct Limiter {
    db: DatabaseConnection,
    key: String,
    /// None: no configured rate; only throttle pauses apply.
    rate: Option<Rate>,
    seen: std::sync::Mutex<Seen>,
}

/// What the last round trip told this process about a bucket, so that the
/// next one needs no extra read.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The rate factor and the last throttle (microseconds).
    factor: f64,
    throttled_at: Option<i64>,
    /// For a rate-less transport: the pause's end, and when it was read.
    pause: Option<(i64, i64)>,
}

impl Limiter {
    pub(crate) fn new(db: DatabaseConnection, key: String, rate: Option<Rate>) -> Limiter {
        Limiter {
            db,
            key,
            rate,
            seen: std::sync::Mutex::new(Seen {
                factor: 1.0,
                throttled_at: None,
                pause: None,
            }),
        }
    }

    /// Reserve the next slot; how long to wait before sending in it.
    pub(crate) async fn reserve(&self) -> Result<Duration, DbErr> {
        let Some(rate) = self.rate else {
            return self.pause_left().await;
        };
        let b = self.db.get_database_backend();
        let now = now_micros();
        let (factor, throttled_at) = self
            .seen
            .lock()
            .map(|s| (s.factor, s.throttled_at))
            .unwrap_or((1.0, None));
        let (interval, floor) = rate.window(recovered(factor, throttled_at, now), now);
        let greatest = if b == DbBackend::Postgres {
            "GREATEST"
        } else {
            "MAX"
        };
        // One atomic statement: several workers reserve distinct slots.
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                b,
                format!(
                    "INSERT INTO herald_rate_limits (key, next_free, factor) VALUES ({k}, {f} + {i}, 1) \
                     ON CONFLICT (key) DO UPDATE \
                     SET next_free = {greatest}(herald_rate_limits.next_free + {i}, excluded.next_free) \
                     RETURNING next_free, factor, throttled_at",
                    k = ph(b, 1),
                    f = ph(b, 2),
                    i = ph(b, 3)
                ),
                [
                    Value::from(self.key.as_str()),
                    Value::from(floor),
                    Value::from(interval),
                ],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(Duration::ZERO);
        };
        let next_free: i64 = row.try_get("", "next_free")?;
        self.remember(row.try_get("", "factor")?, row.try_get("", "throttled_at")?);
        let slot = next_free - interval;
        Ok(Duration::from_micros(
            u64::try_from(slot - now).unwrap_or(0),
        ))
    }

    /// A transport without a rate waits only while it is paused by a
    /// throttle (any worker's): looked up at most once a second.
    async fn pause_left(&self) -> Result<Duration, DbErr> {
        let now = now_micros();
        let cached = self.seen.lock().map(|s| s.pause).unwrap_or(None);
        let until = match cached {
            Some((until, checked)) if now - checked < 1_000_000 => until,
            _ => {
                let b = self.db.get_database_backend();
                let row = self
                    .db
                    .query_one_raw(Statement::from_sql_and_values(
                        b,
                        format!(
                            "SELECT next_free, factor, throttled_at FROM herald_rate_limits WHERE key = {}",
                            ph(b, 1)
                        ),
                        [Value::from(self.key.as_str())],
                    ))
                    .await?;
                let until = match row {
                    Some(r) => {
                        self.remember(r.try_get("", "factor")?, r.try_get("", "throttled_at")?);
                        r.try_get("", "next_free")?
                    }
                    None => 0,
                };
                if let Ok(mut s) = self.seen.lock() {
                    s.pause = Some((until, now));
                }
                until
            }
        };
        Ok(Duration::from_micros(
            u64::try_from(until - now).unwrap_or(0),
        ))
    }

    fn remember(&self, factor: f64, throttled_at: Option<i64>) {
        if let Ok(mut s) = self.seen.lock() {
            s.factor = factor;
            s.throttled_at = throttled_at;
        }
    }

    /// The server said "try later": halve the rate (or pause a rate-less
    /// transport, longer each time it happens again within a minute).
    pub(crate) async fn throttled(&self) -> Result<(), DbErr> {
        let b = self.db.get_database_backend();
        let now = now_micros();
        let (factor, throttled_at) = self
            .seen
            .lock()
            .map(|s| (s.factor, s.throttled_at))
            .unwrap_or((1.0, None));
        // The emails in flight when the server started refusing all hear
        // the same answer: one halving per second, not one per email.
        if throttled_at.is_some_and(|t| now - t < DEBOUNCE.as_micros() as i64) {
            return Ok(());
        }
        let current = recovered(factor, throttled_at, now);
        let halved = (current / 2.0).max(MIN_FACTOR);
        let pause = match self.rate {
            Some(_) => 0,
            None => {
                // 1 s, doubling while throttles keep coming (factor halves
                // each time), up to a minute.
                let n = (1.0 / halved).log2().round() as u32;
                (1_000_000i64 << n.min(6)).min(60_000_000)
            }
        };
        let greatest = if b == DbBackend::Postgres {
            "GREATEST"
        } else {
            "MAX"
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                b,
                format!(
                    "INSERT INTO herald_rate_limits (key, next_free, factor, throttled_at) \
                     VALUES ({k}, {p}, {f}, {t}) ON CONFLICT (key) DO UPDATE \
                     SET factor = {f}, throttled_at = {t}, \
                     next_free = {greatest}(herald_rate_limits.next_free, {p})",
                    f = ph(b, 1),
                    t = ph(b, 2),
                    p = ph(b, 3),
                    k = ph(b, 4)
                ),
                [
                    Value::from(halved),
                    Value::from(now),
                    Value::from(now + pause),
                    Value::from(self.key.as_str()),
                ],
            ))
            .await?;
        if let Ok(mut s) = self.seen.lock() {
            s.factor = halved;
            s.throttled_at = Some(now);
            s.pause = Some((now + pause, now));
        }
        tracing::warn!(limit = %self.key, rate_factor = halved, pause_ms = pause / 1000,
            "the server asked to slow down");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("10/s").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse("600/m").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse("1/s").unwrap().burst, 1);
        assert_eq!(Rate::parse("14/s").unwrap().burst, 14);
        assert_eq!(Rate::parse("1/h").unwrap().burst, 1);
        for bad in ["", "10", "10/d", "0/s", "-1/s", "x/s", "1e9/s", "NaN/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    /// A rate far below one a day, or a huge burst, overflowed the
    /// bucket's 64-bit arithmetic (a panic in a debug build, a wrapped
    /// floor in a release one): `fuzz/regressions/duration/`.
    #[test]
    fn slow_rates_and_big_bursts_stay_in_range() {
        assert!(Rate::parse("1e-20/h").is_err());
        let r = Rate::parse("0.05/h").unwrap().with_burst(u32::MAX);
        assert_eq!(r.burst, MAX_BURST);
        let now = now_micros();
        let (interval, floor) = r.window(1.0 / 64.0, now);
        assert!(interval > 0 && floor < now && now.checked_add(interval).is_some());
    }

    #[test]
    fn a_halved_rate_recovers() {
        let t = 0;
        assert_eq!(recovered(0.5, Some(t), t), 0.5);
        let after = t + RECOVERY.as_micros() as i64;
        assert!((recovered(0.5, Some(t), after) - 1.0).abs() < 1e-9);
        assert_eq!(recovered(0.25, None, t), 1.0);
    }
}
