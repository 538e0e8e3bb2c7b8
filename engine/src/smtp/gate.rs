//! Whether the transport can be reached. An unreachable server is a state
//! of the transport, not a failure of each message in flight: the first
//! send that finds it unreachable closes the gate, deliveries wait at the
//! gate (no attempt counted), one probe retries the server with backoff,
//! and the gate opens when the server answers. Logged once per change.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The transport as the worker sees it.
///
/// ```no_run
/// # async fn example(transport: herald::smtp::Transport) {
/// use herald::smtp::TransportState;
/// if let TransportState::Down { reason, since } = transport.state() {
///     eprintln!("SMTP down for {:?}: {reason}", since.elapsed());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportState {
    Up,
    Down {
        /// Why the last attempt to reach it failed (no secret in it).
        reason: String,
        since: Instant,
    },
}

impl TransportState {
    /// Whether deliveries may go now, or wait at the gate without counting an
    /// attempt.
    ///
    /// ```no_run
    /// # async fn example(transport: herald::smtp::Transport) {
    /// if !transport.state().is_up() {
    ///     transport.wait_up().await;
    /// }
    /// # }
    /// ```
    pub fn is_up(&self) -> bool {
        matches!(self, TransportState::Up)
    }
}

/// The shared state and the probe's backoff.
pub struct Gate {
    tx: watch::Sender<TransportState>,
    /// Probe delay: grows while probes fail, and also while the server keeps
    /// dropping sessions that a probe found fine (it resets only after a
    /// delivery goes through), so a server that accepts connections and
    /// drops every transaction is tried at most every `MAX_PROBE`.
    backoff: Mutex<Duration>,
}

const FIRST_PROBE: Duration = Duration::from_millis(250);
const MAX_PROBE: Duration = Duration::from_secs(30);

impl Gate {
    pub fn new() -> Gate {
        Gate {
            tx: watch::channel(TransportState::Up).0,
            backoff: Mutex::new(FIRST_PROBE),
        }
    }

    pub fn state(&self) -> TransportState {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<TransportState> {
        self.tx.subscribe()
    }

    /// Close the gate; true when this call closed it (the caller then
    /// starts the probe). A later reason replaces the earlier one silently.
    pub fn close(&self, reason: &str) -> bool {
        let mut closed = false;
        self.tx.send_if_modified(|s| match s {
            TransportState::Up => {
                *s = TransportState::Down {
                    reason: reason.to_string(),
                    since: Instant::now(),
                };
                closed = true;
                true
            }
            TransportState::Down { reason: r, .. } => {
                *r = reason.to_string();
                false
            }
        });
        if closed {
            tracing::error!(
                reason,
                "SMTP transport unreachable: deliveries wait (no attempt is counted) while it is probed"
            );
        }
        closed
    }

    /// Open the gate after a successful probe.
    pub fn open(&self) {
        let mut was_down = None;
        self.tx.send_if_modified(|s| match s {
            TransportState::Down { since, .. } => {
                was_down = Some(since.elapsed());
                *s = TransportState::Up;
                true
            }
            TransportState::Up => false,
        });
        if let Some(d) = was_down {
            tracing::info!(
                down_ms = d.as_millis() as u64,
                "SMTP transport reachable again: deliveries resume"
            );
        }
    }

    /// A delivery went through: the next outage probes from the start.
    pub fn delivered(&self) {
        if let Ok(mut b) = self.backoff.lock() {
            *b = FIRST_PROBE;
        }
    }

    /// The wait before the next probe (and grow it for the one after).
    pub fn next_probe_delay(&self) -> Duration {
        match self.backoff.lock() {
            Ok(mut b) => {
                let d = *b;
                *b = (*b * 2).min(MAX_PROBE);
                d
            }
            Err(_) => MAX_PROBE,
        }
    }

    /// Resolves when the gate is open.
    pub async fn wait_up(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(TransportState::is_up).await;
    }
}
