//! One SMTP session of the sink: greeting, EHLO, STARTTLS or implicit TLS,
//! AUTH PLAIN, MAIL/RCPT as scripted, DATA answered as the script says.
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Outage, Received, Reply, State};

/// A throwaway self-signed certificate for 127.0.0.1 and localhost.
pub(super) fn tls_acceptor() -> Arc<tokio_rustls::TlsAcceptor> {
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

pub(super) async fn session(
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
