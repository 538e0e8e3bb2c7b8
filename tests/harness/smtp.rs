//! An SMTP server over real TCP, inside the test process. It records every
//! accepted message and answers DATA as scripted, so tests can produce 4xx,
//! 5xx and dropped connections on demand.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the sink answers the end of one DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `250 OK`: the message is recorded.
    Accept,
    /// Any code and text, e.g. `(451, "try later")` or `(550, "no such user")`; not recorded.
    Code(u16, String),
    /// Read the message, then close the socket without a reply; not recorded
    /// (the client cannot know: its outcome is uncertain).
    DropConnection,
    /// Record the message, then close without a reply: the server has it,
    /// the client cannot know.
    AcceptThenDrop,
    /// Never reply (the client's timeout decides); not recorded.
    Stall,
    /// Wait this long, then accept (a slow server); recorded when it answers.
    Delay(std::time::Duration),
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    /// Whether the session was encrypted when the message was accepted.
    pub tls: bool,
    /// When the sink admitted its MAIL FROM (the moment an enforced rate
    /// counted it).
    pub at: std::time::Instant,
    /// Whether the sink's 250 for it was written to the client. A copy
    /// without one (dropped after the message) leaves the client uncertain:
    /// its resend is the one duplicate the sink itself causes.
    pub replied: bool,
}

impl Received {
    /// The first header named `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = out.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if out.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                out = Some(v.trim().to_string());
            }
        }
        out
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default()
    }

    /// The whole message with quoted-printable undone (soft line breaks
    /// joined, `=XX` decoded), for asserting on body text that long lines
    /// would otherwise split.
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// How the sink is down, when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Accept connections and close them at once.
    Drop,
    /// Greet with `421 4.3.2 Service not available` and close.
    Greet421,
    /// Stop listening: connections are refused.
    Refuse,
    /// Accept connections and never greet (a blackholed or hung server, a
    /// TLS port spoken to in plain text): the client's connect timeout.
    Silent,
}

struct State {
    /// Bumped by `close_idle`: sessions waiting for a command hang up.
    kick: tokio::sync::watch::Sender<u64>,
    received: Vec<Received>,
    script: VecDeque<Reply>,
    /// When set, the sink is in an outage of this kind.
    outage: Option<Outage>,
    connections: usize,
    data_commands: usize,
    /// Credentials of the last successful AUTH PLAIN.
    auth: Option<(String, String)>,
    /// A token bucket the sink enforces: over it, MAIL FROM gets
    /// `421 4.7.0` and the connection is closed (as SES and Gmail do).
    bucket: Option<Bucket>,
    /// MAIL FROM commands refused by the bucket.
    throttled: usize,
    /// RCPT TO replies for given addresses (lower-case), e.g. 550 5.1.1.
    rcpt_replies: std::collections::HashMap<String, (u16, String)>,
    /// RCPT TO commands answered from `rcpt_replies`.
    rcpt_refused: usize,
}

/// A token bucket: `per_second` tokens a second, holding at most `burst`.
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second)
            .min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        Self::start_with(Tls::None).await
    }

    /// A sink speaking TLS: offering STARTTLS, or implicit (smtps).
    pub async fn start_with(tls: Tls) -> SmtpSink {
        let acceptor = match tls {
            Tls::None => None,
            Tls::StartTls | Tls::Implicit => Some(tls_acceptor()),
        };
        let implicit = tls == Tls::Implicit;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            kick: tokio::sync::watch::channel(0).0,
            received: Vec::new(),
            script: VecDeque::new(),
            outage: None,
            connections: 0,
            data_commands: 0,
            auth: None,
            bucket: None,
            throttled: 0,
            rcpt_replies: Default::default(),
            rcpt_refused: 0,
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let refusing =
                    st.lock().unwrap_or_else(|p| p.into_inner()).outage == Some(Outage::Refuse);
                match (&listener, refusing) {
                    // Refusing: close the socket, reopen it on the same port after.
                    (Some(_), true) => {
                        listener = None;
                        continue;
                    }
                    (None, false) => match TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => listener = Some(l),
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                    (None, true) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                    (Some(_), false) => {}
                }
                let Some(l) = &listener else { continue };
                let accepted = tokio::select! {
                    a = l.accept() => a,
                    // Look at the outage state again now and then.
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => continue,
                };
                let Ok((sock, _)) = accepted else { continue };
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = session(sock, st, acceptor, implicit).await;
                });
            }
        });
        SmtpSink {
            port,
            state,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Queue replies for the next DATA commands (then `Accept` again).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Drop the scripted replies not used yet (a burst that ends in time,
    /// however few messages it met).
    pub fn clear_script(&self) {
        self.lock().script.clear();
    }

    /// Enforce a rate: at most `per_second` messages a second after a burst
    /// of `burst`; over it MAIL FROM is answered `421 4.7.0` and the
    /// connection closed.
    pub fn enforce_rate(&self, per_second: f64, burst: u32) {
        self.lock().bucket = Some(Bucket {
            per_second,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: std::time::Instant::now(),
        });
    }

    /// MAIL FROM commands refused by the enforced rate.
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }

    /// Answer RCPT TO for `address` with `code text` (e.g. `550 5.1.1 no such user`).
    pub fn reject_rcpt(&self, address: &str, code: u16, text: &str) {
        self.lock()
            .rcpt_replies
            .insert(address.to_ascii_lowercase(), (code, text.to_string()));
    }

    /// RCPT TO commands refused as `reject_rcpt` scripted.
    pub fn rcpt_refused(&self) -> usize {
        self.lock().rcpt_refused
    }

    /// Start or end an outage: while down, every connection is closed at once.
    pub fn set_down(&self, down: bool) {
        self.set_outage(down.then_some(Outage::Drop));
    }

    /// Start an outage of this kind, or end it (None).
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.lock().outage = outage;
    }

    /// Hang up every session waiting for a command, as servers do with idle
    /// connections.
    pub fn close_idle(&self) {
        self.lock().kick.send_modify(|g| *g += 1);
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    /// Every recipient that got at least one message, sorted, each once.
    pub fn distinct_recipients(&self) -> Vec<String> {
        let mut to: Vec<String> = self
            .lock()
            .received
            .iter()
            .flat_map(|m| m.rcpt_to.iter().cloned())
            .collect();
        to.sort();
        to.dedup();
        to
    }

    /// (user, password) of the last AUTH PLAIN.
    pub fn auth(&self) -> Option<(String, String)> {
        self.lock().auth.clone()
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// DATA commands seen, accepted or not (attempts).
    pub fn data_commands(&self) -> usize {
        self.lock().data_commands
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// TLS modes of the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    None,
    /// Plain connection that offers STARTTLS.
    StartTls,
    /// TLS from the first byte (smtps).
    Implicit,
}

/// A throwaway self-signed certificate for 127.0.0.1 and localhost.
fn tls_acceptor() -> Arc<tokio_rustls::TlsAcceptor> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("generate a test certificate");
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("TLS server config");
    Arc::new(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn session(
    sock: TcpStream,
    state: Arc<Mutex<State>>,
    acceptor: Option<Arc<tokio_rustls::TlsAcceptor>>,
    implicit: bool,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let (kick, outage) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.connections += 1;
        (s.kick.subscribe(), s.outage)
    };
    match outage {
        Some(Outage::Drop | Outage::Refuse) => return Ok(()),
        Some(Outage::Silent) => {
            // Hold the connection, say nothing, until the client gives up.
            let mut sock = sock;
            let mut buf = [0u8; 512];
            while sock.read(&mut buf).await? > 0 {}
            return Ok(());
        }
        Some(Outage::Greet421) => {
            let mut sock = sock;
            sock.write_all(b"421 4.3.2 Service not available, closing channel\r\n")
                .await?;
            return Ok(());
        }
        None => {}
    }
    if implicit {
        let Some(acceptor) = acceptor else {
            return Ok(());
        };
        let tls = acceptor.accept(sock).await?;
        converse(tls, &state, kick, None, true, true).await?;
        return Ok(());
    }
    // STARTTLS hands the raw stream back for the handshake, then the
    // conversation goes on encrypted (the client greets again with EHLO).
    if let Some(raw) = converse(sock, &state, kick.clone(), acceptor.clone(), false, true).await?
        && let Some(acceptor) = acceptor
    {
        let tls = acceptor.accept(raw).await?;
        converse(tls, &state, kick, None, true, false).await?;
    }
    Ok(())
}

/// AUTH PLAIN (RFC 4616: base64("authzid\0user\0password")): the
/// credentials recorded, and the reply.
fn auth_plain(state: &Arc<Mutex<State>>, arg: &str) -> &'static [u8] {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(arg.trim())
        .unwrap_or_default();
    let parts: Vec<String> = decoded
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if let [_, user, pass] = parts.as_slice() {
        state.lock().unwrap_or_else(|p| p.into_inner()).auth = Some((user.clone(), pass.clone()));
        b"235 2.7.0 Authentication successful\r\n"
    } else {
        b"501 5.5.2 Cannot decode AUTH PLAIN\r\n"
    }
}

/// Is this MAIL FROM over the sink's token bucket? (Counted as throttled.)
fn over_the_bucket(state: &Arc<Mutex<State>>) -> bool {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let over = s.bucket.as_mut().is_some_and(|b| !b.take());
    if over {
        s.throttled += 1;
    }
    over
}

/// The scripted reply to RCPT TO `to`, if any (counted as refused).
fn scripted_rcpt_reply(state: &Arc<Mutex<State>>, to: &str) -> Option<(u16, String)> {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let r = s.rcpt_replies.get(&to.to_ascii_lowercase()).cloned();
    if r.is_some() {
        s.rcpt_refused += 1;
    }
    r
}

/// The message after DATA, up to the final ".", dot-stuffing undone; None
/// when the client hung up.
async fn read_data<R>(r: &mut R) -> std::io::Result<Option<String>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == ".\r\n" {
            break;
        }
        // Undo dot-stuffing.
        let l = line.strip_prefix('.').unwrap_or(&line);
        data.push_str(l);
    }
    Ok(Some(data))
}

/// Keep a received message; its index.
fn record(state: &Arc<Mutex<State>>, m: Received) -> usize {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.received.push(m);
    s.received.len() - 1
}

/// DATA: the message, then the scripted reply (accept, a code, a delay, a
/// drop, a stall); false when the session ends here.
async fn data<S>(
    r: &mut BufReader<S>,
    state: &Arc<Mutex<State>>,
    from: &str,
    rcpts: &[String],
    is_tls: bool,
    admitted: std::time::Instant,
) -> std::io::Result<bool>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    r.get_mut()
        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        .await?;
    let Some(data) = read_data(r).await? else {
        return Ok(false);
    };
    let reply = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.data_commands += 1;
        s.script.pop_front().unwrap_or(Reply::Accept)
    };
    if let Reply::Delay(d) = reply {
        tokio::time::sleep(d).await;
    }
    if reply == Reply::Stall {
        // Hold the session open without a word until the client gives up.
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        return Ok(false);
    }
    let index = if matches!(
        reply,
        Reply::Accept | Reply::Delay(_) | Reply::AcceptThenDrop
    ) {
        Some(record(
            state,
            Received {
                mail_from: from.to_string(),
                rcpt_to: rcpts.to_vec(),
                data: data.clone(),
                tls: is_tls,
                at: admitted,
                replied: false,
            },
        ))
    } else {
        None
    };
    match reply {
        Reply::Accept | Reply::Delay(_) => {
            r.get_mut().write_all(b"250 2.0.0 OK queued\r\n").await?;
            r.get_mut().flush().await?;
            if let Some(i) = index {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(m) = s.received.get_mut(i) {
                    m.replied = true;
                }
            }
        }
        Reply::Code(code, text) => {
            r.get_mut()
                .write_all(format!("{code} {text}\r\n").as_bytes())
                .await?
        }
        Reply::DropConnection | Reply::AcceptThenDrop | Reply::Stall => return Ok(false),
    }
    Ok(true)
}

/// The EHLO reply: the sink's extensions, STARTTLS when offered.
async fn ehlo<W>(w: &mut W, starttls: bool) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let tls_line: &[u8] = if starttls { b"250-STARTTLS\r\n" } else { b"" };
    w.write_all(b"250-herald-test-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n")
        .await?;
    w.write_all(tls_line).await?;
    w.write_all(b"250-AUTH PLAIN\r\n250 SIZE 52428800\r\n")
        .await?;
    Ok(())
}

/// One SMTP conversation over `stream`; returns the stream when the client
/// asked for STARTTLS (offered when `starttls` is set).
async fn converse<S>(
    stream: S,
    state: &Arc<Mutex<State>>,
    mut kick: tokio::sync::watch::Receiver<u64>,
    starttls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    is_tls: bool,
    greet: bool,
) -> std::io::Result<Option<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut r = BufReader::new(stream);
    if greet {
        r.get_mut()
            .write_all(b"220 herald-test-sink ESMTP\r\n")
            .await?;
    }
    let mut from = String::new();
    let mut admitted = std::time::Instant::now();
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        tokio::select! {
            n = r.read_line(&mut line) => if n? == 0 { return Ok(None) },
            _ = kick.changed() => return Ok(None),
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            ehlo(r.get_mut(), starttls.is_some()).await?;
        } else if upper == "STARTTLS" && starttls.is_some() {
            r.get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            return Ok(Some(r.into_inner()));
        } else if upper.starts_with("HELO") {
            r.get_mut().write_all(b"250 herald-test-sink\r\n").await?;
        } else if upper.starts_with("AUTH PLAIN ") {
            r.get_mut().write_all(auth_plain(state, &cmd[11..])).await?;
        } else if upper.starts_with("MAIL FROM:") {
            if over_the_bucket(state) {
                r.get_mut()
                    .write_all(b"421 4.7.0 Too many messages, slow down\r\n")
                    .await?;
                return Ok(None);
            }
            from = addr(&cmd[10..]);
            admitted = std::time::Instant::now();
            rcpts.clear();
            r.get_mut().write_all(b"250 2.1.0 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let to = addr(&cmd[8..]);
            match scripted_rcpt_reply(state, &to) {
                Some((code, text)) => {
                    r.get_mut()
                        .write_all(format!("{code} {text}\r\n").as_bytes())
                        .await?
                }
                None => {
                    rcpts.push(to);
                    r.get_mut().write_all(b"250 2.1.5 OK\r\n").await?;
                }
            }
        } else if upper == "DATA" {
            if !data(&mut r, state, &from, &rcpts, is_tls, admitted).await? {
                return Ok(None);
            }
        } else if upper == "RSET" || upper == "NOOP" {
            r.get_mut().write_all(b"250 2.0.0 OK\r\n").await?;
        } else if upper == "QUIT" {
            r.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(None);
        } else {
            r.get_mut()
                .write_all(b"502 5.5.2 Command not recognized\r\n")
                .await?;
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let end = s.find('>').map(|i| i + 1).unwrap_or(s.len());
    s[..end].trim_matches(['<', '>']).to_string()
}
