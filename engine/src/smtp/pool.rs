//! SMTP sessions: connecting (STARTTLS when offered, implicit TLS, AUTH) and
//! a pool of idle sessions, checked before reuse. A failure to reach the
//! server is [`SendError::Unreachable`]; what happens inside one message's
//! transaction is classified in `transaction.rs`.
use std::time::Instant;

use mail_send::{Credentials, SmtpClient, SmtpClientBuilder};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

use super::SendError;
use super::transaction::{greet, transaction};
use super::url::Server;

enum Conn {
    Plain(SmtpClient<TcpStream>),
    // Boxed: the TLS state is large and most connections in tests are plain.
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// The envelope and body of one message.
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: Vec<&'a str>,
    pub body: &'a [u8],
}

pub struct Pool {
    pub server: Server,
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// `?connections=N`: a permit per session in use.
    open: Option<tokio::sync::Semaphore>,
}

impl Pool {
    pub fn new(server: Server) -> Pool {
        Pool {
            open: server.max_connections.map(tokio::sync::Semaphore::new),
            server,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.server.host, self.server.port)
    }

    /// Open a session, ready for MAIL FROM. Any failure is `Unreachable`.
    async fn connect(&self) -> Result<Conn, SendError> {
        let s = &self.server;
        tokio::time::timeout(s.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| {
                SendError::Unreachable(format!(
                    "{}: no answer within {} (connect timeout)",
                    self.addr(),
                    crate::duration::human(s.connect_timeout)
                ))
            })?
    }

    async fn connect_inner(&self) -> Result<Conn, SendError> {
        let s = &self.server;
        let at = |what: &str, e: &dyn std::fmt::Display| {
            SendError::Unreachable(format!("{}: {what}: {e}", self.addr()))
        };
        let mut builder = SmtpClientBuilder::new(s.host.clone(), s.port)
            .map_err(|e| at("invalid host", &e))?
            .implicit_tls(s.implicit_tls)
            .timeout(s.timeout)
            .helo_host(
                hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "herald".into()),
            );
        if s.tls_insecure {
            builder.tls_connector =
                mail_send::smtp::tls::build_tls_connector(true).map_err(|e| at("TLS setup", &e))?;
        }
        let stream = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| at("cannot connect", &e))?;
        // mail-send leaves Nagle on: every email would stall ~40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient {
            stream,
            timeout: s.timeout,
        };
        if s.implicit_tls {
            let mut tls = client
                .into_tls(&builder.tls_connector, &s.host)
                .await
                .map_err(|e| at("TLS handshake", &e))?;
            greet(&mut tls, &self.addr()).await?;
            let caps = tls
                .ehlo(&builder.local_host)
                .await
                .map_err(|e| at("EHLO", &e))?;
            self.authenticate(&mut tls, &caps).await?;
            return Ok(Conn::Tls(Box::new(tls)));
        }
        greet(&mut client, &self.addr()).await?;
        let helo = builder.local_host.clone();
        let caps = client.ehlo(&helo).await.map_err(|e| at("EHLO", &e))?;
        if caps.has_capability(smtp_proto::EXT_START_TLS) {
            let mut tls = client
                .start_tls(&builder.tls_connector, &s.host)
                .await
                .map_err(|e| at("STARTTLS", &e))?;
            let caps = tls.ehlo(&helo).await.map_err(|e| at("EHLO", &e))?;
            self.authenticate(&mut tls, &caps).await?;
            Ok(Conn::Tls(Box::new(tls)))
        } else {
            if self.server.credentials.is_some() {
                self.warn_plain_auth();
            }
            self.authenticate(&mut client, &caps).await?;
            Ok(Conn::Plain(client))
        }
    }

    /// Credentials about to cross the network in clear (the server offered
    /// no STARTTLS): said once per process, at warn, since anyone on the
    /// path can read them, or strip the offer to make it happen. Quiet for
    /// a server on this machine.
    fn warn_plain_auth(&self) {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !on_this_machine(&self.server.host)
            && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(server = %self.addr(),
                "sending the SMTP password without TLS: the server offered no STARTTLS (use smtps:// or a server that offers STARTTLS)");
        }
    }

    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        c: &mut SmtpClient<S>,
        caps: &smtp_proto::EhloResponse<String>,
    ) -> Result<(), SendError> {
        let Some((u, p)) = &self.server.credentials else {
            return Ok(());
        };
        // A refused login is the configuration's problem, not a message's:
        // the transport stays down (and says why) until it is fixed.
        c.authenticate(Credentials::new(u.as_str(), p.as_str()), caps)
            .await
            .map(|_| ())
            .map_err(|e| {
                SendError::Unreachable(format!(
                    "{}: authentication as {u:?} failed: {e}",
                    self.addr()
                ))
            })
    }

    /// Connect and disconnect: is the server reachable? (The outage probe.)
    /// A good session is kept for the next delivery.
    pub async fn probe(&self) -> Result<(), String> {
        // Under the connection limit like a send: a probe at start-up may
        // run beside the first deliveries.
        let _permit = match &self.open {
            Some(s) => Some(s.acquire().await.map_err(|e| e.to_string())?),
            None => None,
        };
        match self.connect().await {
            Ok(c) => {
                self.idle.lock().await.push((c, Instant::now()));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A pooled session (checked with NOOP if idle for a while), or a new one.
    async fn session(&self) -> Result<(Conn, bool), SendError> {
        loop {
            let pooled = self.idle.lock().await.pop();
            let Some((mut c, last)) = pooled else {
                return Ok((self.connect().await?, false));
            };
            if last.elapsed() < self.server.check_idle_after {
                return Ok((c, true));
            }
            let alive = match &mut c {
                Conn::Plain(c) => c.noop().await.is_ok(),
                Conn::Tls(c) => c.noop().await.is_ok(),
            };
            if alive {
                return Ok((c, true));
            }
        }
    }

    /// Send one message. A pooled session the server closed while idle is
    /// not the server's fault: the transaction is tried once more on a new
    /// session before a broken session is reported.
    pub async fn send(&self, env: &Envelope<'_>) -> Result<String, SendError> {
        // Held until the session is back in the pool (or dropped).
        let _permit = match &self.open {
            Some(s) => Some(s.acquire().await.map_err(|_| {
                SendError::Unreachable(format!("{}: the connection limit was closed", self.addr()))
            })?),
            None => None,
        };
        let (conn, pooled) = self.session().await?;
        match self.transact(conn, env).await {
            Err(SendError::Interrupted(_)) if pooled => {
                let conn = self.connect().await?;
                self.transact(conn, env).await
            }
            other => other,
        }
    }

    async fn transact(&self, mut conn: Conn, env: &Envelope<'_>) -> Result<String, SendError> {
        let r = match &mut conn {
            Conn::Plain(c) => transaction(c, env).await,
            Conn::Tls(c) => transaction(c.as_mut(), env).await,
        };
        if r.is_ok() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.server.max_idle {
                idle.push((conn, Instant::now()));
            }
        }
        // A failed session is dropped, never reused: after a rejection its
        // state is uncertain, and dropping is the simple, safe choice.
        r
    }
}

/// A host name or address that is this machine (traffic to it never
/// crosses a network).
fn on_this_machine(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_cross_a_network_unless_the_server_is_here() {
        for here in ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"] {
            assert!(super::on_this_machine(here), "{here}");
        }
        for away in ["smtp.example.org", "10.0.0.5", "192.168.1.1", "::2"] {
            assert!(!super::on_this_machine(away), "{away}");
        }
    }
}
