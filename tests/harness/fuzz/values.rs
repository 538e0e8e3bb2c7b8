//! Targets `urls` (URL parsers and redaction: a password never shown) and
//! `duration` (human durations and rates).

/// The texts a URL may be shown as: where a password must never appear.
fn shown(url: &str) -> Vec<String> {
    let mut out = vec![
        herald::secret::redact_url(url),
        herald::db::redact(url),
        herald::secret::SecretUrl::new(url).to_string(),
        format!("{:?}", herald::secret::SecretUrl::new(url)),
    ];
    // Errors: the URL they name (their own words, "(smtp, smtps, file)",
    // may hold a short password by chance).
    match herald::smtp::Transport::from_url(url) {
        Err(e) => {
            let _ = e.to_string();
            out.push(e.url);
        }
        Ok(t) => out.push(t.name().to_string()),
    }
    if let Err(e) = herald::db::backend_of(url) {
        let _ = e.to_string();
        if let herald::db::DbError::InvalidUrl { url, .. } = e {
            out.push(url);
        }
    }
    // What the log writer lets through: the URL with every secret it was
    // told about replaced.
    let mut logged = url.to_string();
    let mut secrets = herald::secret::secrets_in(url);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in &secrets {
        logged = logged.replace(s.as_str(), herald::secret::REDACTED);
    }
    out.push(logged);
    out
}

/// Target `urls`: the SMTP URL parser, the database URL check and URL
/// redaction. Input: a URL; or, with two NUL bytes, `PREFIX\0PASSWORD\0SUFFIX`,
/// a URL whose password is known. Finds: panics in the parsers, and (second
/// form) any text Herald prints or logs of the URL that still holds the
/// password, whatever characters the password has.
pub fn urls(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.splitn(3, '\0').collect();
    let [prefix, password, suffix] = parts[..] else {
        let _ = shown(&text);
        return;
    };
    let url = format!("{prefix}{password}{suffix}");
    let shown = shown(&url);
    // Only a password in the password's place (`scheme://user:` before it,
    // `@host` after it), long enough to be told apart, that the rest of the
    // URL does not contain anyway.
    let in_place = prefix.split_once("://").is_some_and(|(scheme, user)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
            && user.ends_with(':')
            && !user[..user.len() - 1].contains([':', '/', '?', '#', '@', ','])
    }) && suffix
        .strip_prefix('@')
        .and_then(|h| h.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric());
    // A password holding `,scheme://` reads as a list of URLs (`nats://a,
    // nats://b`), and its part before the comma cannot be told from a port:
    // not covered.
    if !in_place
        || password.contains("://")
        || password.chars().count() < 4
        || password.contains(['*', '\t', '\n', '\r'])
        || password.trim() != password
        || format!("{prefix}{suffix}").contains(password)
    {
        return;
    }
    for s in &shown {
        assert!(
            !s.contains(password),
            "password {password:?} of {url:?} shown as {s:?}"
        );
    }
}

/// Target `duration`: human durations (`herald::duration::parse`, used by
/// flags, SMTP URL parameters and workflow settings) and rates (`10/s`).
/// Input: `DURATION`, `DURATION|RATE` or `DURATION|RATE&BURST`. Finds: panics, durations past
/// the limit, and what the worker computes from one (backoff delays) panicking.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (d, rate) = text.split_once('|').unwrap_or((&text, ""));
    // A rate as a workflow gives it, and as the SMTP URL does (`burst=N`).
    let (rate, burst) = rate.split_once('&').unwrap_or((rate, ""));
    if let Ok(mut r) = herald::rate::Rate::parse(rate) {
        assert!(
            r.per_second > 0.0 && r.per_second.is_finite() && r.burst >= 1,
            "{r:?}"
        );
        if let Ok(b) = burst.parse() {
            r = r.with_burst(b);
        }
        let now = chrono::Utc::now().timestamp_micros();
        for factor in [1.0, 0.5, 1.0 / 64.0] {
            let (interval, floor) = herald::internals::rate::window(&r, factor, now);
            assert!(interval > 0 && floor <= now, "{r:?}: {interval} {floor}");
            // The reservation adds the interval to a slot in SQL (BIGINT).
            assert!(
                now.checked_add(interval).is_some(),
                "{r:?}: interval {interval}"
            );
        }
    }
    let Ok(parsed) = herald::duration::parse(d) else {
        return;
    };
    assert!(
        parsed <= herald::duration::MAX,
        "{d:?} parsed as {parsed:?}"
    );
    assert!(!herald::duration::human(parsed).is_empty());
    // As a delay, a deadline and a JetStream setting.
    assert!(chrono::Duration::from_std(parsed).is_ok());
    let _ = chrono::Utc::now() + chrono::Duration::from_std(parsed).unwrap_or_default();
    let _ = std::time::Instant::now() + parsed;
    assert!(
        i64::try_from(parsed.as_nanos()).is_ok(),
        "{parsed:?} in nanoseconds"
    );
    let policy = herald::retry::RetryPolicy {
        max_attempts: 8,
        initial: parsed,
        max: herald::duration::MAX,
        multiplier: 10.0,
    };
    for attempt in [1, 2, 8, 64, u32::MAX] {
        assert!(policy.delay(attempt) <= herald::duration::MAX);
    }
}
