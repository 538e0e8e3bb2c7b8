//! Email transports: SMTP with a connection pool (STARTTLS when offered,
//! implicit TLS for smtps://, AUTH when credentials are given) and the
//! `file://DIR` capture, behind one [`Transport`] that also knows whether
//! its server can be reached ([`TransportState`]).
//!
//! Failures are classified by where they happen ([`SendError`]): only a
//! reply about the message (`Rejected`) is the message's failure; an
//! unreachable server or a session that broke before the message was
//! complete is the transport's (no attempt counted: the gate closes and a
//! probe waits for the server); a session that broke after the final "."
//! is `Uncertain` (the server may have the message).
//!
//! Sending one email: see the example of [`Transport`].
mod file;
mod gate;
mod message;
mod pool;
mod transaction;
mod url;

use std::path::PathBuf;
use std::sync::Arc;

pub use gate::TransportState;
pub use message::build;
pub use transaction::Stage;
pub use url::SmtpUrlError;

use crate::workflow::render::Email;

/// Why a send failed.
///
/// ```no_run
/// # async fn example(transport: herald::smtp::Transport, email: herald::workflow::render::Email) {
/// use herald::smtp::SendError;
/// match transport.send_once(&email, "test.welcome.0@example.org").await {
///     Ok(reply) => println!("accepted: {reply}"),
///     Err(SendError::Uncertain(why)) => eprintln!("may have been sent: {why}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The server could not be reached: connection refused, unknown host,
    /// connect or TLS timeout, a 421 greeting, refused credentials. Not the
    /// message's failure.
    #[error("SMTP server unreachable: {0}")]
    Unreachable(String),
    /// The server replied about this message (4xx transient, 5xx permanent).
    #[error("SMTP {code} at {stage}: {message}")]
    Rejected {
        stage: Stage,
        code: u16,
        message: String,
    },
    /// The session broke before the final "." of DATA: the server cannot
    /// have accepted the message. Not the message's failure.
    #[error("SMTP session interrupted: {0}")]
    Interrupted(String),
    /// The server asked to slow down (421 "service not available" or 454
    /// during a session): not the message's failure; the transport slows.
    #[error("SMTP {code} at {stage}: {message} (the server asks to slow down)")]
    Throttled {
        stage: Stage,
        code: u16,
        message: String,
    },
    /// The session broke or timed out after the final ".": the server may
    /// have accepted the message.
    #[error("SMTP outcome unknown: {0}")]
    Uncertain(String),
    /// The message could not be built (permanent).
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// What kind of failure, for decisions.
///
/// ```
/// use herald::smtp::{SendError, SendErrorKind, Stage};
/// let e = SendError::Rejected { stage: Stage::MailFrom, code: 451, message: "4.3.0 try again".into() };
/// assert_eq!(e.kind(), SendErrorKind::Transient);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// The transport, not the message: wait for it, count nothing.
    Transport,
    /// A 4xx reply about the message: retry with backoff, counted.
    Transient,
    /// A 5xx reply, or a message that cannot be built: dead letter.
    Permanent,
    /// The server may have the message: the workflow's `on_uncertain` decides.
    Uncertain,
    /// The server asks to slow down: retry later, count nothing.
    Throttle,
}

impl SendError {
    /// Classify the failure for the retry decision (retry, dead-letter, wait for
    /// the transport), so callers need not match every variant.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport, email: herald::workflow::render::Email) {
    /// use herald::smtp::SendErrorKind;
    /// if let Err(e) = transport.send(&email, "id@example.org").await {
    ///     let retry = matches!(e.kind(), SendErrorKind::Transient | SendErrorKind::Throttle);
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> SendErrorKind {
        match self {
            SendError::Unreachable(_) | SendError::Interrupted(_) => SendErrorKind::Transport,
            SendError::Rejected { code, .. } if (400..500).contains(code) => {
                SendErrorKind::Transient
            }
            SendError::Rejected { .. } | SendError::Build(_) => SendErrorKind::Permanent,
            SendError::Uncertain(_) => SendErrorKind::Uncertain,
            SendError::Throttled { .. } => SendErrorKind::Throttle,
        }
    }

    /// A reply that asks the sender to slow down: 421 or 454, or a 451
    /// whose enhanced status is 4.7.x (policy: "rate limited, try later").
    /// A plain 451 (4.3.0 local error, greylisting) is about one message and
    /// does not slow the transport. The rate backs off, whatever becomes of
    /// the message.
    ///
    /// ```
    /// use herald::smtp::{SendError, Stage};
    /// let e = SendError::Rejected { stage: Stage::RcptTo("ada@example.com".into()), code: 451, message: "4.7.1 rate limited".into() };
    /// assert!(e.asks_to_slow_down());
    /// ```
    pub fn asks_to_slow_down(&self) -> bool {
        match self {
            SendError::Throttled { .. } => true,
            SendError::Rejected { code, message, .. } => {
                matches!(code, 421 | 454)
                    || (*code == 451 && message.trim_start().starts_with("4.7."))
            }
            _ => false,
        }
    }

    /// The address a permanent RCPT reply refused, if that is what happened.
    ///
    /// ```
    /// use herald::smtp::{SendError, Stage};
    /// let e = SendError::Rejected { stage: Stage::RcptTo("ada@example.com".into()), code: 550, message: "5.1.1 no such user".into() };
    /// assert_eq!(e.refused_recipient(), Some(("ada@example.com", 550, "5.1.1 no such user")));
    /// ```
    pub fn refused_recipient(&self) -> Option<(&str, u16, &str)> {
        match self {
            SendError::Rejected {
                stage: Stage::RcptTo(a),
                code,
                message,
            } if (500..600).contains(code) => Some((a.as_str(), *code, message.as_str())),
            _ => None,
        }
    }

    /// The server's reply, when it gave one.
    ///
    /// ```
    /// use herald::smtp::{SendError, Stage};
    /// let e = SendError::Rejected { stage: Stage::Data, code: 554, message: "5.7.1 spam".into() };
    /// assert_eq!(e.smtp_reply().as_deref(), Some("554 5.7.1 spam"));
    /// ```
    pub fn smtp_reply(&self) -> Option<String> {
        match self {
            SendError::Rejected { code, message, .. }
            | SendError::Throttled { code, message, .. } => Some(format!("{code} {message}")),
            _ => None,
        }
    }
}

enum Kind {
    // Boxed: the pool (server settings, idle sessions, connection limit)
    // dwarfs a path; it lives once per transport behind an Arc anyway.
    Smtp(Box<pool::Pool>),
    File(PathBuf),
}

struct Inner {
    kind: Kind,
    gate: gate::Gate,
    /// The URL, redacted: what logs and health say.
    name: String,
}

/// Where email goes. Cheap to clone; clones share the pool and the state.
///
/// ```no_run
/// # async fn example(email: herald::workflow::render::Email) -> Result<(), Box<dyn std::error::Error>> {
/// let transport = herald::smtp::Transport::from_url("smtp://user:pass@mail.example.org:587?rate=50/s")?;
/// let reply = transport.send(&email, "0196f0c2.welcome.0@example.org").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport(Arc<Inner>);

impl Transport {
    /// Check the URL before any I/O (start-up validation).
    ///
    /// ```
    /// use herald::smtp::Transport;
    /// let smtp = Transport::from_url("smtps://user:pass@mail.example.org:465")?;
    /// let capture = Transport::from_url("file:///tmp/herald-mail")?; // one .eml per message
    /// assert!(Transport::from_url("http://mail.example.org").is_err());
    /// # Ok::<(), herald::smtp::SmtpUrlError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Transport, SmtpUrlError> {
        let kind = match url::parse(url)? {
            url::Target::Smtp(s) => Kind::Smtp(Box::new(pool::Pool::new(s))),
            url::Target::File(p) => Kind::File(p),
        };
        Ok(Transport(Arc::new(Inner {
            kind,
            gate: gate::Gate::new(),
            name: crate::secret::redact_url(url),
        })))
    }

    /// The transport's URL without secrets.
    ///
    /// ```
    /// let t = herald::smtp::Transport::from_url("smtp://user:s3cret@mail.example.org:587")?;
    /// assert_eq!(t.name(), "smtp://user:***@mail.example.org:587");
    /// # Ok::<(), herald::smtp::SmtpUrlError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The rate configured on the URL (`?rate=50/s&burst=100`), if any.
    ///
    /// ```
    /// let t = herald::smtp::Transport::from_url("smtp://mail.example.org?rate=50/s&burst=100")?;
    /// assert_eq!(t.rate().map(|r| r.burst), Some(100));
    /// # Ok::<(), herald::smtp::SmtpUrlError>(())
    /// ```
    pub fn rate(&self) -> Option<crate::rate::Rate> {
        match &self.0.kind {
            Kind::Smtp(pool) => pool.server.rate,
            Kind::File(_) => None,
        }
    }

    /// The `file://` directory, if this is the capture.
    ///
    /// ```
    /// let t = herald::smtp::Transport::from_url("file:///tmp/herald-mail")?;
    /// assert_eq!(t.file_dir(), Some(std::path::Path::new("/tmp/herald-mail")));
    /// # Ok::<(), herald::smtp::SmtpUrlError>(())
    /// ```
    pub fn file_dir(&self) -> Option<&std::path::Path> {
        match &self.0.kind {
            Kind::File(p) => Some(p),
            Kind::Smtp(_) => None,
        }
    }

    /// Send one email; returns the server's reply (or the file written).
    /// A transport failure closes the gate and starts the probe.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport, email: herald::workflow::render::Email) -> Result<(), Box<dyn std::error::Error>> {
    /// let id = herald::worker::message_id(herald::EventId::new(), "welcome", email.index, &email.from);
    /// let reply = transport.send(&email, &id).await?; // unreachable: the gate closes until a probe gets through
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, email: &Email, message_id: &str) -> Result<String, SendError> {
        let r = self.send_once(email, message_id).await;
        match &r {
            Ok(_) => self.0.gate.delivered(),
            Err(e) if e.kind() == SendErrorKind::Transport => self.down(&e.to_string()),
            Err(_) => {}
        }
        r
    }

    /// Send one email and only that: a failure is returned, not waited
    /// out (no gate, no probe). For a one-off send such as `herald
    /// send-test`, where the person who asked is told at once.
    ///
    /// ```no_run
    /// # async fn example(email: herald::workflow::render::Email) -> Result<(), Box<dyn std::error::Error>> {
    /// let transport = herald::smtp::Transport::from_url("smtp://localhost:1025")?;
    /// match transport.send_once(&email, "send-test.0@example.org").await {
    ///     Ok(reply) => println!("accepted: {reply}"),
    ///     Err(e) => eprintln!("not sent: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_once(&self, email: &Email, message_id: &str) -> Result<String, SendError> {
        let body = build(email, message_id)?;
        match &self.0.kind {
            Kind::File(dir) => file::write(dir, message_id, &body).await,
            Kind::Smtp(pool) => {
                let env = pool::Envelope {
                    from: &email.from.address,
                    to: email
                        .to
                        .iter()
                        .chain(&email.cc)
                        .chain(&email.bcc)
                        .map(|m| m.address.as_str())
                        .collect(),
                    body: &body,
                };
                pool.send(&env).await
            }
        }
    }

    /// Close the gate (if open) and probe until the server answers.
    ///
    /// The probe holds the transport weakly: it ends when the server
    /// answers or when the last handle is gone (the worker stopped), so it
    /// never outlives what it probes for. Nothing waits on it at shutdown:
    /// a probe has no effect but reopening the gate.
    fn down(&self, reason: &str) {
        if !self.0.gate.close(reason) {
            return;
        }
        let weak = Arc::downgrade(&self.0);
        let first = self.0.gate.next_probe_delay();
        tokio::spawn(async move {
            let mut delay = first;
            loop {
                tokio::time::sleep(delay).await;
                let Some(me) = weak.upgrade() else {
                    return;
                };
                let r = match &me.kind {
                    Kind::Smtp(pool) => pool.probe().await,
                    Kind::File(dir) => file::probe(dir).await,
                };
                match r {
                    Ok(()) => {
                        me.gate.open();
                        return;
                    }
                    Err(reason) => {
                        me.gate.close(&reason);
                    }
                }
                delay = me.gate.next_probe_delay();
            }
        });
    }

    /// Whether the server can be reached now, as the last send or probe found
    /// it: for health pages and logs, without waiting.
    ///
    /// ```no_run
    /// # fn example(transport: herald::smtp::Transport) {
    /// println!("{}: {:?}", transport.name(), transport.state());
    /// # }
    /// ```
    pub fn state(&self) -> TransportState {
        self.0.gate.state()
    }

    /// Changes of state, for health reporting.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport) {
    /// let mut states = transport.subscribe();
    /// while states.changed().await.is_ok() {
    ///     println!("SMTP now {:?}", *states.borrow());
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<TransportState> {
        self.0.gate.subscribe()
    }

    /// Resolves when the transport is (again) reachable.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport, stop: tokio_util::sync::CancellationToken) {
    /// tokio::select! {
    ///     _ = transport.wait_up() => println!("SMTP reachable"),
    ///     _ = stop.cancelled() => return,
    /// }
    /// # }
    /// ```
    pub async fn wait_up(&self) {
        self.0.gate.wait_up().await
    }
}
