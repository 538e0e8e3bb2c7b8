//! Human durations in flags and YAML: `500ms`, `30s`, `5m`, `2h`, `7d`.
//!
//! ```no_run
//! use std::time::Duration;
//! assert_eq!(herald::duration::parse("5m")?, Duration::from_secs(300));
//! assert_eq!(herald::duration::human(Duration::from_millis(1500)), "1.5s");
//! # Ok::<(), herald::duration::DurationError>(())
//! ```
use std::time::Duration;

/// A duration that could not be read, with the input (cut at 64 characters)
/// and what to write instead: the text a flag or workflow problem reports.
///
/// ```
/// let err = herald::duration::parse("5 minutes").unwrap_err();
/// assert_eq!(err.input, "5 minutes");
/// assert_eq!(
///     err.to_string(),
///     "invalid duration \"5 minutes\": use a number with ms, s, m, h or d (e.g. 30s, 5m; a bare number is seconds)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// The longest duration accepted: a century is longer than any timeout,
/// retention or backoff Herald has a use for, and far from overflow.
///
/// ```
/// use std::time::Duration;
/// assert!(herald::duration::parse("36500d").is_ok());
/// assert!(herald::duration::parse("36501d").is_err());
/// assert_eq!(herald::duration::MAX, Duration::from_secs(36_500 * 86_400));
/// ```
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Read a duration as people write it in flags and workflows (`500ms`, `30s`,
/// `5m`, `2h`, `7d`; a bare number is seconds), so that every setting
/// accepts the same spelling.
///
/// ```
/// use std::time::Duration;
/// use herald::duration::parse;
/// assert_eq!(parse("30s")?, Duration::from_secs(30));
/// assert_eq!(parse("1.5s")?, Duration::from_millis(1500));
/// assert_eq!(parse("2h")?, Duration::from_secs(7200));
/// assert!(parse("5 minutes").is_err());
/// # Ok::<(), herald::duration::DurationError>(())
/// ```
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let input: String = s.chars().take(64).collect();
    let err = || DurationError {
        input: input.clone(),
        reason: "use a number with ms, s, m, h or d (e.g. 30s, 5m; a bare number is seconds)",
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    if !n.is_finite() || n < 0.0 {
        return Err(err());
    }
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(err()),
    };
    // `Duration::from_secs_f64` panics past u64::MAX seconds.
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX)
        .ok_or(DurationError {
            input,
            reason: "longer than 100 years",
        })
}

/// A duration for people: `250ms`, `3s`, `1.5s`, `2m`, `1h5m`.
///
/// ```
/// use std::time::Duration;
/// use herald::duration::human;
/// assert_eq!(human(Duration::from_millis(250)), "250ms");
/// assert_eq!(human(Duration::from_millis(1500)), "1.5s");
/// assert_eq!(human(Duration::from_secs(3900)), "1h5m");
/// ```
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return if ms.is_multiple_of(1000) {
            format!("{secs}s")
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse("5 minutes").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1s").is_err());
        // Used to panic in Duration::from_secs_f64.
        assert!(
            parse("99999999999999999999d")
                .unwrap_err()
                .to_string()
                .contains("100 years")
        );
        assert!(parse("1e400s").is_err());
        assert!(parse("NaNs").is_err());
    }
}
