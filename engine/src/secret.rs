//! Secrets in URLs (`smtp://user:PASSWORD@host`, `postgres://…?password=…`,
//! `nats://user:PASSWORD@host`) never leave the process: every URL Herald
//! prints, logs or puts in an error goes through [`redact_url`], and the
//! settings that hold one are [`SecretUrl`]s, whose `Display` and `Debug`
//! redact.
use std::fmt;

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Query parameters whose values are secrets.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// The URL (or comma-separated URLs) with every password replaced by `***`:
/// in the userinfo (`user:***@host`) and in query parameters that look like
/// secrets (`?password=***`). Works on malformed URLs too (no parsing that
/// could fail and fall back to the raw text).
pub fn redact_url(s: &str) -> String {
    s.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (head, rest) = match s.find("://") {
        Some(i) => (&s[..i + 3], &s[i + 3..]),
        None => ("", s),
    };
    out.push_str(head);
    // The userinfo ends at the last '@' before the query: looking only up to
    // the first '/' would print a password holding an unencoded '/'. Rather
    // redact too much of an odd path than too little of a password.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(c) => {
                    out.push_str(&userinfo[..c]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                // A lone token before '@' may be a secret too (nats://TOKEN@host).
                None if head.starts_with("nats") || head.starts_with("tls") => {
                    out.push_str(REDACTED)
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let (query, fragment) = match tail[q + 1..].find('#') {
                Some(h) => (&tail[q + 1..q + 1 + h], &tail[q + 1 + h..]),
                None => (&tail[q + 1..], ""),
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}={REDACTED}"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

/// The secrets a URL (or comma-separated URLs) holds, as written and
/// percent-decoded: what a log writer must never let through.
pub fn secrets_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for one in s.split(',') {
        for piece in secret_pieces(one) {
            if piece.len() >= 3 {
                let decoded = percent_encoding::percent_decode_str(&piece)
                    .decode_utf8_lossy()
                    .into_owned();
                if decoded != piece {
                    out.push(decoded);
                }
                out.push(piece);
            }
        }
    }
    out
}

/// The raw secret substrings of one URL: the userinfo password (or a lone
/// NATS token) and secret-looking query values.
fn secret_pieces(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        match userinfo.find(':') {
            Some(c) => out.push(userinfo[c + 1..].to_string()),
            None if s.starts_with("nats") || s.starts_with("tls") => out.push(userinfo.to_string()),
            None => {}
        }
    }
    if let Some(q) = tail.strip_prefix('?') {
        for pair in q.split('#').next().unwrap_or("").split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_key(k)
            {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// A URL that may hold a secret. `Display` and `Debug` show it redacted;
/// [`SecretUrl::expose`] is the only way to the real text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL with its secrets, for connecting. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", redact_url(&self.0))
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

/// A secret that is not a URL (a signing key, a token). `Display` and
/// `Debug` show `***`; [`Secret::expose`] is the only way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for keying. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        assert_eq!(
            redact_url("smtp://alice:S3cretPW@host:25"),
            "smtp://alice:***@host:25"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@db/h?sslmode=require&password=x"),
            "postgres://u:***@db/h?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("nats://a:b@n1:4222,nats://c:d@n2:4222"),
            "nats://a:***@n1:4222,nats://c:***@n2:4222"
        );
        assert_eq!(redact_url("nats://tok3n@n1:4222"), "nats://***@n1:4222");
        // Malformed: still redacted, never printed raw.
        assert_eq!(
            redact_url("postgres://user:pa ss@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(redact_url("smtp://a:b:c@h"), "smtp://a:***@h");
        assert_eq!(redact_url("smtp://u:pa/ss@h:25"), "smtp://u:***@h:25");
        assert_eq!(redact_url("smtp://u:p@ss@h"), "smtp://u:***@h");
        assert_eq!(redact_url("file://./outbox-mail"), "file://./outbox-mail");
        assert_eq!(
            redact_url("sqlite://herald.db?mode=rwc"),
            "sqlite://herald.db?mode=rwc"
        );
        assert_eq!(
            secrets_in("postgres://u:p%40ss@db/h?password=xyz,nats://tok3n@n"),
            vec!["p@ss", "p%40ss", "xyz", "tok3n"]
        );
        let s = SecretUrl::new("smtp://alice:S3cretPW@host:25");
        assert!(!format!("{s} {s:?}").contains("S3cretPW"));
        assert_eq!(s.expose(), "smtp://alice:S3cretPW@host:25");
    }
}
