//! An SMTP server over real TCP, inside the test process. It records every
//! accepted message and answers DATA as scripted, so tests can produce 4xx,
//! 5xx and dropped connections on demand.
mod replies;
mod session;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

pub use replies::{Outage, Received, Reply};
use session::{session, tls_acceptor};

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

    /// The Subject of every message received, in the order received.
    pub fn subjects(&self) -> Vec<String> {
        self.lock()
            .received
            .iter()
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect()
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
