//! Secrets in URLs (`smtp://user:PASSWORD@host`, `postgres://…?password=…`,
//! `nats://user:PASSWORD@host`) never leave the process: every URL Herald
//! prints, logs or puts in an error goes through [`redact_url`], and the
//! settings that hold one are [`SecretUrl`]s, whose `Display` and `Debug`
//! redact.
//!
//! ```no_run
//! let url = "smtp://mailer:S3cret@mail.example.org:587";
//! let shown = herald::secret::redact_url(url);
//! assert!(!shown.contains("S3cret"));
//! tracing::info!(smtp = %shown, "sending through");
//! ```
use std::fmt;

/// What replaces a secret.
///
/// ```
/// let shown = herald::secret::redact_url("nats://token@n1:4222");
/// assert!(shown.contains(herald::secret::REDACTED));
/// ```
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
///
/// ```
/// use herald::secret::redact_url;
/// assert_eq!(redact_url("postgres://herald:s3cret@db/herald"), "postgres://herald:***@db/herald");
/// assert_eq!(redact_url("smtp://mail.example.org?password=s3cret"), "smtp://mail.example.org?password=***");
/// ```
pub fn redact_url(s: &str) -> String {
    urls(s)
        .into_iter()
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

/// The URLs of a comma-separated list (`nats://a@n1,nats://b@n2`): a comma
/// starts another URL only where a scheme follows it, so that a comma in a
/// password (`smtp://u:a,b@h`) does not cut the password in two.
fn urls(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in s.match_indices(',') {
        if starts_with_scheme(&s[i + 1..]) {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Does `s` begin with `scheme://`?
fn starts_with_scheme(s: &str) -> bool {
    s.find("://").is_some_and(|i| {
        let scheme = &s[..i];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    })
}

/// One URL in the pieces redaction cares about.
struct Parts<'a> {
    /// `scheme://`, or nothing.
    head: &'a str,
    /// The user and the secret of the userinfo (`user:PASSWORD`, or a lone
    /// NATS token), when there is a secret.
    user: Option<(&'a str, &'a str)>,
    /// From the `@` (if any) up to the query.
    host: &'a str,
    /// The query, from its `?` (or from an `&` that continues a query the
    /// password cut), without the fragment.
    query: &'a str,
    fragment: &'a str,
}

/// Cut one URL. The userinfo ends at the last `@`: a password may hold any
/// character (`/`, `?`, `#`, `@`, `,` unencoded make a malformed URL that
/// still must not be printed), so an `@` in a path or a query makes this
/// redact too much, never too little.
fn parts(s: &str) -> Parts<'_> {
    let (head, rest) = match s.find("://") {
        Some(i) => (&s[..i + 3], &s[i + 3..]),
        None => ("", s),
    };
    let nats = head.starts_with("nats") || head.starts_with("tls");
    let (user, after) = match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, secret)) => (Some((user, secret)), &rest[at..]),
            // A lone token before '@' may be a secret too (nats://TOKEN@host).
            None if nats => (Some(("", &rest[..at])), &rest[at..]),
            None => (None, rest),
        },
        None => (None, rest),
    };
    let end = after.find(['?', '#', '&']).unwrap_or(after.len());
    let (host, tail) = after.split_at(end);
    let (query, fragment) = match tail.find('#') {
        Some(h) => tail.split_at(h),
        None => (tail, ""),
    };
    Parts {
        head,
        user,
        host,
        query,
        fragment,
    }
}

/// The query's `key=value` pairs (after its first character, `?` or `&`).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, Option<(&str, &str)>)> {
    query
        .get(1..)
        .unwrap_or("")
        .split('&')
        .map(|pair| (pair, pair.split_once('=')))
}

fn redact_one(s: &str) -> String {
    let p = parts(s);
    let mut out = String::with_capacity(s.len());
    out.push_str(p.head);
    match p.user {
        Some(("", _)) => out.push_str(REDACTED),
        Some((user, _)) => {
            out.push_str(user);
            out.push(':');
            out.push_str(REDACTED);
        }
        None => {}
    }
    out.push_str(p.host);
    if let Some(sep) = p.query.get(..1) {
        out.push_str(sep);
        let pairs: Vec<String> = query_pairs(p.query)
            .map(|(pair, kv)| match kv {
                Some((k, _)) if is_secret_key(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out.push_str(p.fragment);
    out
}

/// The secrets a URL (or comma-separated URLs) holds, as written and
/// percent-decoded: what a log writer must never let through.
///
/// ```
/// let secrets = herald::secret::secrets_in("postgres://herald:p%40ss@db/herald");
/// assert!(secrets.contains(&"p%40ss".to_string()));
/// assert!(secrets.contains(&"p@ss".to_string()));
/// ```
pub fn secrets_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for one in urls(s) {
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
/// NATS token) and secret-looking query values, cut as [`redact_url`] cuts.
fn secret_pieces(s: &str) -> Vec<String> {
    let p = parts(s);
    let mut out: Vec<String> = p
        .user
        .map(|(_, secret)| secret.to_string())
        .into_iter()
        .collect();
    for (_, kv) in query_pairs(p.query) {
        if let Some((k, v)) = kv
            && is_secret_key(k)
        {
            out.push(v.to_string());
        }
    }
    out
}

/// A URL that may hold a secret. `Display` and `Debug` show it redacted;
/// [`SecretUrl::expose`] is the only way to the real text.
///
/// ```
/// use herald::secret::SecretUrl;
/// let url: SecretUrl = "postgres://herald:s3cret@db/herald".parse()?;
/// assert_eq!(url.to_string(), "postgres://herald:***@db/herald");
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wrap a URL read from a flag or the environment, so that it cannot end up
    /// in a log or an error message with its password.
    ///
    /// ```
    /// let url = herald::secret::SecretUrl::new("nats://user:s3cret@n1:4222");
    /// assert_eq!(format!("{url:?}"), "SecretUrl(nats://user:***@n1:4222)");
    /// ```
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL with its secrets, for connecting. Never print it.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = herald::secret::SecretUrl::new(std::env::var("HERALD_DATABASE_URL")?);
    /// let db = herald::db::connect(url.expose()).await?;
    /// # Ok(()) }
    /// ```
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
///
/// ```
/// let key = herald::secret::Secret::new("0123456789abcdef-signing-key");
/// assert_eq!(key.to_string(), "***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret read from a flag or the environment, so that printing the
    /// settings shows `***` instead.
    ///
    /// ```
    /// let key = herald::secret::Secret::new("0123456789abcdef-signing-key");
    /// assert_eq!(format!("{key:?}"), "Secret(***)");
    /// ```
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for keying. Never print it.
    ///
    /// ```
    /// use herald::{secret::Secret, unsubscribe::Unsubscribe};
    /// let key = Secret::new("0123456789abcdef-signing-key");
    /// let links = Unsubscribe::new(key.expose(), "https://mail.example.org", None)?;
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
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
        // Found by the `urls` fuzz target: a password with an unencoded
        // `?`, `#` or `,` was printed whole.
        for (url, shown) in [
            ("smtp://alice:S3cre?/PW@host:25", "smtp://alice:***@host:25"),
            (
                "smtp://alice:pa#ss@host:25?pool=2",
                "smtp://alice:***@host:25?pool=2",
            ),
            ("smtp://alice:a,b@host", "smtp://alice:***@host"),
            (
                "postgres://u:p?w&password=x@db/h?sslmode=require",
                "postgres://u:***@db/h?sslmode=require",
            ),
            (
                "postgres://db/h?user=a@b&password=x",
                "postgres://db/h?user=a@b&password=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(secrets_in("smtp://alice:pa#ss@host"), vec!["pa#ss"]);
        let s = SecretUrl::new("smtp://alice:S3cretPW@host:25");
        assert!(!format!("{s} {s:?}").contains("S3cretPW"));
        assert_eq!(s.expose(), "smtp://alice:S3cretPW@host:25");
    }
}
