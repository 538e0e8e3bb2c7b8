//! The `--smtp-url`: checked before any I/O, and never printed with its
//! password (errors name it redacted).
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::redact_url;

/// An `--smtp-url` that cannot be used, found before any connection; the URL
/// in it is redacted.
///
/// ```
/// let err = herald::smtp::Transport::from_url("http://user:s3cret@mail.example.org").err().unwrap();
/// assert!(!err.to_string().contains("s3cret"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("invalid --smtp-url {url}: {reason}")]
pub struct SmtpUrlError {
    /// The URL, redacted.
    pub url: String,
    pub reason: String,
}

/// Where and how to send.
#[derive(Clone)]
pub enum Target {
    Smtp(Server),
    /// `file://DIR`: one `.eml` file per message (development capture).
    File(PathBuf),
}

/// An SMTP server and how to talk to it.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    /// smtps:// (TLS from the first byte); smtp:// uses STARTTLS when offered.
    pub implicit_tls: bool,
    pub credentials: Option<(String, String)>,
    /// Per command, and for the reply to the final "." of DATA.
    pub timeout: Duration,
    /// Connecting: TCP, TLS handshake, greeting, EHLO and AUTH together.
    pub connect_timeout: Duration,
    /// Accept any certificate (self-signed development servers only).
    pub tls_insecure: bool,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
    /// At most this many sessions open at once (`?connections=16`); without
    /// it, one per delivery in flight. Providers cap concurrent connections,
    /// and a worker may keep more deliveries in flight (their ledger writes,
    /// rendering, waiting) than it keeps SMTP sessions.
    pub max_connections: Option<usize>,
    /// A connection idle longer than this is checked with NOOP before reuse.
    pub check_idle_after: Duration,
    /// At most this rate, shared by every worker (`?rate=50/s&burst=100`).
    pub rate: Option<crate::rate::Rate>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "Server({}:{}, tls: {}, user: {:?})",
            self.host,
            self.port,
            self.implicit_tls,
            self.credentials.as_ref().map(|c| c.0.as_str())
        )
    }
}

pub fn parse(url: &str) -> Result<Target, SmtpUrlError> {
    let err = |reason: &str| SmtpUrlError {
        url: redact_url(url),
        reason: reason.into(),
    };
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(err("file:// needs a directory, e.g. file://./outbox-mail"));
        }
        // A parameter would otherwise become part of the directory's name.
        if let Some((_, params)) = path.split_once('?') {
            return Err(err(&format!(
                "file:// takes no parameters (?{params}): they apply to smtp:// and smtps://"
            )));
        }
        return Ok(Target::File(PathBuf::from(path)));
    }
    let u = url::Url::parse(url).map_err(|e| err(&e.to_string()))?;
    let implicit_tls = match u.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(err(&format!(
                "unsupported scheme {other:?} (smtp, smtps, file)"
            )));
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err("no host"))?
        .to_string();
    let port = u.port().unwrap_or(if implicit_tls { 465 } else { 25 });
    let mut server = Server {
        host,
        port,
        implicit_tls,
        credentials: None,
        timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        tls_insecure: false,
        max_idle: 16,
        max_connections: None,
        check_idle_after: Duration::from_secs(5),
        rate: None,
    };
    let burst = apply_params(&u, &mut server, &err)?;
    match (server.rate, burst) {
        (Some(r), Some(b)) => server.rate = Some(r.with_burst(b)),
        (None, Some(_)) => return Err(err("burst needs a rate (e.g. ?rate=50/s&burst=100)")),
        _ => {}
    }
    if server.timeout.is_zero() || server.connect_timeout.is_zero() {
        return Err(err("timeouts must be longer than 0s"));
    }
    server.credentials = (!u.username().is_empty()).then(|| {
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (dec(u.username()), dec(u.password().unwrap_or("")))
    });
    Ok(Target::Smtp(server))
}

/// The URL's query parameters, set on `server`; returns `burst`, which
/// needs a rate.
fn apply_params(
    u: &url::Url,
    server: &mut Server,
    err: &impl Fn(&str) -> SmtpUrlError,
) -> Result<Option<u32>, SmtpUrlError> {
    let mut burst: Option<u32> = None;
    for (k, v) in u.query_pairs() {
        let duration = |v: &str| crate::duration::parse(v).map_err(|e| err(&format!("{k}: {e}")));
        match k.as_ref() {
            "pool" => {
                server.max_idle = v.parse().map_err(|_| err("pool must be a whole number"))?
            }
            "connections" => {
                server.max_connections = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| err("connections must be a whole number of at least 1"))?,
                )
            }
            "idle_check" => server.check_idle_after = duration(&v)?,
            "timeout" => server.timeout = duration(&v)?,
            "connect_timeout" => server.connect_timeout = duration(&v)?,
            "tls_insecure" => {
                server.tls_insecure = v
                    .parse()
                    .map_err(|_| err("tls_insecure must be true or false"))?
            }
            "rate" => {
                server.rate = Some(crate::rate::Rate::parse(&v).map_err(|e| err(&e.to_string()))?)
            }
            "burst" => {
                burst = Some(
                    v.parse()
                        .ok()
                        .filter(|b| (1..=crate::rate::MAX_BURST).contains(b))
                        .ok_or_else(|| err("burst must be a whole number from 1 to 1000000"))?,
                )
            }
            other => {
                return Err(err(&format!(
                    "unknown parameter {other:?} (pool, connections, idle_check, timeout, connect_timeout, tls_insecure, rate, burst)"
                )));
            }
        }
    }
    Ok(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_show_the_password() {
        let e = parse("smtp://alice:S3cretPW@host:25?pool=x").err().unwrap();
        assert!(!e.to_string().contains("S3cretPW"), "{e}");
        let e = parse("smtpx://alice:S3cretPW@host").err().unwrap();
        assert!(!e.to_string().contains("S3cretPW"), "{e}");
    }

    #[test]
    fn parameters() {
        let Target::Smtp(s) = parse("smtps://u:p%40ss@h?pool=4&timeout=5s").unwrap() else {
            panic!("not smtp")
        };
        assert_eq!((s.port, s.implicit_tls, s.max_idle), (465, true, 4));
        assert_eq!(s.credentials, Some(("u".into(), "p@ss".into())));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert!(!format!("{s:?}").contains("p@ss"));
        assert!(parse("smtp://h?nope=1").is_err());
        assert!(parse("smtp://h?timeout=0s").is_err());
        assert!(parse("file://").is_err());
        let Err(e) = parse("file:///tmp/mail?connections=4") else {
            panic!("a parameter on file:// is refused")
        };
        assert!(e.to_string().contains("takes no parameters"), "{e}");
    }
}
