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
//! ```no_run
//! # async fn example(email: herald::workflow::render::Email) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::smtp::{SendErrorKind, Transport};
//! let smtp = Transport::from_url("smtp://mail.internal:587?connections=4")?;
//! match smtp.send(&email, "<0190c1e2.welcome.0@example.com>").await {
//!     Ok(reply) => println!("accepted: {reply}"),
//!     // A reply about the message: its own failure, counted.
//!     Err(e) if e.kind() == SendErrorKind::Permanent => eprintln!("refused: {e}"),
//!     // The server may have it: resend with the same Message-ID, or hold it.
//!     Err(e) if e.kind() == SendErrorKind::Uncertain => eprintln!("uncertain: {e}"),
//!     Err(e) => eprintln!("not sent yet: {e}"),
//! }
//! # Ok(()) }
//! ```
mod error;
mod file;
mod gate;
mod message;
mod pool;
mod transaction;
mod url;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::{SendError, SendErrorKind};
pub use gate::TransportState;
pub use message::build;
pub use transaction::Stage;
pub use url::SmtpUrlError;

use crate::workflow::render::Email;

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

    /// Try the server once, as the outage probe does: when it cannot be
    /// reached, the transport is down from now (logged, shown by health)
    /// and probed until it answers. A worker calls this when it starts, so
    /// an unreachable server is reported before the first email waits on it.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport) {
    /// transport.check().await;
    /// if !transport.state().is_up() {
    ///     eprintln!("{} cannot be reached yet", transport.name());
    /// }
    /// # }
    /// ```
    pub async fn check(&self) {
        if let Err(reason) = self.probe().await {
            self.down(&reason);
        }
    }

    async fn probe(&self) -> Result<(), String> {
        match &self.0.kind {
            Kind::Smtp(pool) => pool.probe().await,
            Kind::File(dir) => file::probe(dir).await,
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
                match (Transport(me.clone())).probe().await {
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
