//! Connecting to NATS: comma-separated URLs, credentials passed as options
//! (never kept inside the URLs), the first connection's error made clear.
use std::time::Duration;

use super::StreamError;

/// The innermost cause of an error, e.g. `Connection refused (os error 111)`.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// Connect to NATS. `urls` may be comma-separated. The first connection
/// must succeed at once (a clear error naming the URL and the cause, not a
/// timeout later); after that the client reconnects forever, and Herald's
/// loops treat failed requests as transient.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = herald::jetstream::connect("nats://n1:4222,nats://n2:4222", "billing-relay").await?;
/// let js = async_nats::jetstream::new(client);
/// # Ok(()) }
/// ```
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, StreamError> {
    let addrs: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let err = |reason: String| StreamError::Connect {
        url: crate::secret::redact_url(urls),
        reason,
    };
    if addrs.is_empty() {
        return Err(err("no URL given".into()));
    }
    // Credentials go to the client as options, never inside the URLs it
    // keeps: async-nats logs its server addresses (with any password in
    // them) at debug level.
    let mut credentials: Option<(String, Option<String>)> = None;
    let mut bare = Vec::with_capacity(addrs.len());
    for a in &addrs {
        let mut u = url::Url::parse(a).map_err(|e| err(format!("invalid URL: {e}")))?;
        if !u.username().is_empty() {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let c = (dec(u.username()), u.password().map(dec));
            if credentials.as_ref().is_some_and(|prev| *prev != c) {
                return Err(err("every URL must carry the same credentials".into()));
            }
            credentials = Some(c);
            let _ = u.set_username("");
            let _ = u.set_password(None);
        }
        bare.push(u.to_string());
    }
    let mut opts = async_nats::ConnectOptions::new();
    opts = match credentials {
        Some((user, Some(pass))) => opts.user_and_password(user, pass),
        // nats://TOKEN@host
        Some((token, None)) => opts.token(token),
        None => opts,
    };
    opts.name(name)
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None)
        // The list, not one string joined by commas: async-nats parses a
        // string as a single address ("invalid port number" for a list).
        .connect(bare)
        .await
        .map_err(|e| err(root_cause(&e)))
}
