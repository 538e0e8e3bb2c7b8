//! Email transports: SMTP with a connection pool (STARTTLS when offered,
//! implicit TLS for smtps://, AUTH when credentials are given) and the
//! `file://DIR` capture that writes one `.eml` per message atomically.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::address::Address;
use mail_send::mail_builder::headers::raw::Raw;
use mail_send::smtp::message::{Address as Envelope, Message, Parameters};
use mail_send::{Credentials, SmtpClient, SmtpClientBuilder};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

use crate::workflow::address::Mailbox;
use crate::workflow::render::Email;

/// Why a send failed; [`SendError::is_transient`] decides retry vs dead letter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("SMTP {code}: {message}")]
    Rejected { code: u16, message: String },
    #[error("SMTP connection: {0}")]
    Connection(String),
    #[error("SMTP timeout")]
    Timeout,
    #[error("SMTP protocol: {0}")]
    Protocol(String),
    #[error("cannot write mail file: {0}")]
    File(String),
    #[error("cannot build message: {0}")]
    Build(String),
}

impl SendError {
    /// 4xx, timeouts and connection failures are worth retrying; 5xx is not.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Rejected { code, .. } => (400..500).contains(code),
            SendError::Connection(_) | SendError::Timeout | SendError::File(_) => true,
            SendError::Protocol(_) | SendError::Build(_) => false,
        }
    }

    pub fn smtp_reply(&self) -> Option<String> {
        match self {
            SendError::Rejected { code, message } => Some(format!("{code} {message}")),
            _ => None,
        }
    }
}

impl From<mail_send::Error> for SendError {
    fn from(e: mail_send::Error) -> Self {
        match e {
            mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => {
                SendError::Rejected {
                    code: r.code,
                    message: reply_text(&r),
                }
            }
            mail_send::Error::Io(e) => SendError::Connection(e.to_string()),
            mail_send::Error::Timeout => SendError::Timeout,
            mail_send::Error::Tls(e) => SendError::Connection(format!("TLS: {e}")),
            // mail-send reports a connection closed by the server (EOF) as an
            // unparseable reply: a connection failure, so transient.
            mail_send::Error::UnparseableReply => SendError::Connection(
                "connection closed by the server (or unreadable reply)".into(),
            ),
            other => SendError::Protocol(other.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --smtp-url {url:?}: {reason}")]
pub struct SmtpUrlError {
    pub url: String,
    pub reason: String,
}

enum Conn {
    Plain(SmtpClient<TcpStream>),
    // Boxed: the TLS state is large and most connections in tests are plain.
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

impl Conn {
    /// Is a pooled connection still usable? (Servers close idle sessions.)
    async fn alive(&mut self) -> bool {
        match self {
            Conn::Plain(c) => c.noop().await.is_ok(),
            Conn::Tls(c) => c.noop().await.is_ok(),
        }
    }

    /// Send one message; the server's reply as `CODE [ESC] text`.
    async fn send(&mut self, m: Message<'_>) -> mail_send::Result<String> {
        let r = match self {
            Conn::Plain(c) => c.send(m).await?,
            Conn::Tls(c) => c.send(m).await?,
        };
        Ok(format!("{} {}", r.code, reply_text(&r)))
    }
}

/// The reply text with its enhanced status code (smtp-proto parses it apart).
fn reply_text(r: &smtp_proto::Response<String>) -> String {
    match r.esc {
        [0, 0, 0] => r.message.clone(),
        [a, b, c] => format!("{a}.{b}.{c} {}", r.message),
    }
}

struct SmtpTarget {
    host: String,
    port: u16,
    implicit_tls: bool,
    credentials: Option<(String, String)>,
    timeout: Duration,
    tls_insecure: bool,
}

pub struct SmtpPool {
    target: SmtpTarget,
    /// Idle connections with the time they were last used.
    idle: Mutex<Vec<(Conn, Instant)>>,
    max_idle: usize,
    /// A connection idle longer than this is checked with NOOP before reuse: a
    /// server that closed it meanwhile would otherwise cost the next email an
    /// attempt and a backoff.
    check_idle_after: Duration,
}

pub enum Transport {
    Smtp(SmtpPool),
    File(PathBuf),
}

impl Transport {
    /// Check the URL before any I/O (start-up validation).
    pub fn from_url(url: &str) -> Result<Transport, SmtpUrlError> {
        let err = |reason: &str| SmtpUrlError {
            url: url.to_string(),
            reason: reason.into(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(err("file:// needs a directory"));
            }
            return Ok(Transport::File(PathBuf::from(path)));
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
        // Pool settings from the query: ?pool=N (idle connections kept, 16)
        // and ?idle_check=DURATION (NOOP before reusing a connection idle
        // that long, 5s).
        let mut max_idle = 16;
        let mut check_idle_after = Duration::from_secs(5);
        // ?tls_insecure=true: accept any certificate (self-signed dev and test
        // servers only; never for a real provider).
        let mut tls_insecure = false;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "pool" => max_idle = v.parse().map_err(|_| err("pool must be a number"))?,
                "idle_check" => {
                    check_idle_after =
                        crate::duration::parse(&v).map_err(|e| err(&e.to_string()))?
                }
                "tls_insecure" => {
                    tls_insecure = v
                        .parse()
                        .map_err(|_| err("tls_insecure must be true or false"))?
                }
                other => {
                    return Err(err(&format!(
                        "unknown parameter {other:?} (pool, idle_check, tls_insecure)"
                    )));
                }
            }
        }
        let credentials = (!u.username().is_empty()).then(|| {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(u.username()), dec(u.password().unwrap_or("")))
        });
        Ok(Transport::Smtp(SmtpPool {
            target: SmtpTarget {
                host,
                port,
                implicit_tls,
                credentials,
                timeout: Duration::from_secs(30),
                tls_insecure,
            },
            idle: Mutex::new(Vec::new()),
            max_idle,
            check_idle_after,
        }))
    }

    /// Send one email; returns the server's reply (or the file written).
    pub async fn send(&self, email: &Email, message_id: &str) -> Result<String, SendError> {
        let body = build(email, message_id)?;
        match self {
            Transport::File(dir) => write_file(dir, message_id, &body).await,
            Transport::Smtp(pool) => pool.send(email, body).await,
        }
    }
}

impl SmtpPool {
    async fn connect(&self) -> Result<Conn, SendError> {
        let t = &self.target;
        let mut builder = SmtpClientBuilder::new(t.host.clone(), t.port)
            .map_err(SendError::Connection)?
            .implicit_tls(t.implicit_tls)
            .timeout(t.timeout)
            .helo_host(
                hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "herald".into()),
            );
        if let Some((u, p)) = &t.credentials {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        if t.tls_insecure {
            builder.tls_connector =
                mail_send::smtp::tls::build_tls_connector(true).map_err(SendError::Connection)?;
        }
        if t.implicit_tls {
            let c = builder.connect().await?;
            let _ = c.stream.get_ref().0.set_nodelay(true);
            return Ok(Conn::Tls(Box::new(c)));
        }
        // STARTTLS when the server offers it, plain otherwise.
        let stream = tokio::time::timeout(t.timeout, TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(|e| SendError::Connection(e.to_string()))?;
        // mail-send leaves Nagle on: every email would stall ~40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient {
            stream,
            timeout: t.timeout,
        };
        let greeting = client.read().await?;
        if !(200..300).contains(&greeting.code) {
            return Err(SendError::Rejected {
                code: greeting.code,
                message: greeting.message,
            });
        }
        let helo = builder.local_host.clone();
        let caps = client.ehlo(&helo).await?;
        if caps.has_capability(smtp_proto::EXT_START_TLS) {
            let mut tls = client.start_tls(&builder.tls_connector, &t.host).await?;
            let caps = tls.ehlo(&helo).await?;
            if let Some((u, p)) = &t.credentials {
                tls.authenticate(Credentials::new(u.as_str(), p.as_str()), &caps)
                    .await?;
            }
            Ok(Conn::Tls(Box::new(tls)))
        } else {
            if let Some((u, p)) = &t.credentials {
                client
                    .authenticate(Credentials::new(u.as_str(), p.as_str()), &caps)
                    .await?;
            }
            Ok(Conn::Plain(client))
        }
    }

    async fn send(&self, email: &Email, body: Vec<u8>) -> Result<String, SendError> {
        let pooled = self.idle.lock().await.pop();
        let mut conn = match pooled {
            Some((mut c, last)) => {
                if last.elapsed() < self.check_idle_after || c.alive().await {
                    c
                } else {
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        let mut rcpt: Vec<Envelope> = Vec::new();
        for a in email.to.iter().chain(&email.cc).chain(&email.bcc) {
            rcpt.push(Envelope::new(a.address.clone(), Parameters::default()));
        }
        let msg = Message {
            mail_from: Envelope::new(email.from.address.clone(), Parameters::default()),
            rcpt_to: rcpt,
            body: body.into(),
        };
        match conn.send(msg).await {
            Ok(reply) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < self.max_idle {
                    idle.push((conn, Instant::now()));
                }
                Ok(reply)
            }
            // A failed connection is dropped, never reused. A rejected
            // message leaves the session usable, but RSET state is uncertain:
            // dropping is the simple, safe choice.
            Err(e) => Err(e.into()),
        }
    }
}

fn address(m: &Mailbox) -> Address<'static> {
    Address::new_address(m.name.clone(), m.address.clone())
}

/// The RFC 5322 message. Bcc is not written (envelope only).
pub fn build(email: &Email, message_id: &str) -> Result<Vec<u8>, SendError> {
    let list = |v: &[Mailbox]| Address::new_list(v.iter().map(address).collect());
    let mut m = MessageBuilder::new()
        .from(address(&email.from))
        .to(list(&email.to))
        .subject(email.subject.clone())
        .message_id(message_id.to_string())
        .date(chrono::Utc::now().timestamp());
    if !email.cc.is_empty() {
        m = m.cc(list(&email.cc));
    }
    if !email.reply_to.is_empty() {
        m = m.reply_to(list(&email.reply_to));
    }
    for (k, v) in &email.headers {
        m = m.header(k.clone(), Raw::new(v.clone()));
    }
    if let Some(t) = &email.text {
        m = m.text_body(t.clone());
    }
    if let Some(h) = &email.html {
        m = m.html_body(h.clone());
    }
    m.write_to_vec()
        .map_err(|e| SendError::Build(e.to_string()))
}

async fn write_file(
    dir: &std::path::Path,
    message_id: &str,
    body: &[u8],
) -> Result<String, SendError> {
    let f = |e: std::io::Error| SendError::File(format!("{}: {e}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(f)?;
    let name: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(format!("{name}.eml"));
    tokio::fs::write(&tmp, body).await.map_err(f)?;
    // rename is atomic: readers never see a half-written .eml.
    tokio::fs::rename(&tmp, &dst).await.map_err(f)?;
    Ok(format!("250 written {}", dst.display()))
}
