//! How a send fails: [`SendError`], classified by [`SendErrorKind`] for the
//! retry decision.
use super::Stage;

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
