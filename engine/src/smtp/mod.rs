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
mod file;
mod gate;
mod message;
mod pool;
mod url;

use std::path::PathBuf;
use std::sync::Arc;

pub use gate::TransportState;
pub use message::build;
pub use pool::Stage;
pub use url::SmtpUrlError;

use crate::workflow::render::Email;

/// Why a send failed.
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
#[derive(Clone)]
pub struct Transport(Arc<Inner>);

impl Transport {
    /// Check the URL before any I/O (start-up validation).
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
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The rate configured on the URL (`?rate=50/s&burst=100`), if any.
    pub fn rate(&self) -> Option<crate::rate::Rate> {
        match &self.0.kind {
            Kind::Smtp(pool) => pool.server.rate,
            Kind::File(_) => None,
        }
    }

    /// The `file://` directory, if this is the capture.
    pub fn file_dir(&self) -> Option<&std::path::Path> {
        match &self.0.kind {
            Kind::File(p) => Some(p),
            Kind::Smtp(_) => None,
        }
    }

    /// Send one email; returns the server's reply (or the file written).
    /// A transport failure closes the gate and starts the probe.
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

    pub fn state(&self) -> TransportState {
        self.0.gate.state()
    }

    /// Changes of state, for health reporting.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<TransportState> {
        self.0.gate.subscribe()
    }

    /// Resolves when the transport is (again) reachable.
    pub async fn wait_up(&self) {
        self.0.gate.wait_up().await
    }
}
