//! What a long-running process knows about its own health, for `/readyz`,
//! the metrics and the logs: each part (the database, NATS, the SMTP
//! transport, each workflow's consumer, the relay) reports its state here,
//! and the process is ready only when every part is.
//!
//! ```no_run
//! use herald::health::{Check, Health};
//! let health = Health::new();
//! health.set("database", Check::Ok);
//! health.set("smtp", Check::Failing("connection refused".into()));
//! if !health.is_ready() {
//!     // `/readyz` answers 503 and names the failing part.
//! }
//! ```
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio_util::sync::CancellationToken;

/// One part's state.
///
/// ```
/// use herald::health::Check;
/// let c = Check::Failing("no answer to SELECT 1 within 2s".into());
/// assert_eq!(c.to_string(), "failing: no answer to SELECT 1 within 2s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    Ok,
    /// Not yet ready (binding a consumer, first connection).
    Starting(String),
    /// Not working, and why.
    Failing(String),
}

impl Check {
    /// Whether this part lets the process count as ready (`/readyz`).
    ///
    /// ```
    /// use herald::health::Check;
    /// assert!(Check::Ok.is_ok());
    /// assert!(!Check::Starting("binding consumer".into()).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Check::Ok)
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Ok => f.write_str("ok"),
            Check::Starting(r) => write!(f, "starting: {r}"),
            Check::Failing(r) => write!(f, "failing: {r}"),
        }
    }
}

/// The health of one process, shared by its parts. Cheap to clone.
///
/// ```
/// use herald::health::{Check, Health};
/// let health = Health::new();
/// health.set("database", Check::Ok);
/// health.set("smtp", Check::Failing("connection refused".into()));
/// assert!(!health.is_ready());
/// ```
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, Check>>>);

impl Health {
    /// An empty record, not ready until a part reports: one per process, cloned
    /// into each part that reports (relay, worker, watchers).
    ///
    /// ```
    /// let health = herald::health::Health::new();
    /// assert!(!health.is_ready());
    /// assert_eq!(health.problems(), ["starting"]);
    /// ```
    pub fn new() -> Health {
        Health::default()
    }

    /// Record `part`'s state; returns the previous one (None: a new part).
    ///
    /// ```
    /// use herald::health::{Check, Health};
    /// let health = Health::new();
    /// assert_eq!(health.set("nats", Check::Starting("connecting".into())), None);
    /// assert!(health.set("nats", Check::Ok).is_some());
    /// ```
    pub fn set(&self, part: &str, check: Check) -> Option<Check> {
        self.0
            .lock()
            .ok()
            .and_then(|mut m| m.insert(part.to_string(), check))
    }

    /// Forget a part that no longer runs (a workflow removed by a reload), so
    /// that its last state does not keep the process unready.
    ///
    /// ```
    /// use herald::health::{Check, Health};
    /// let health = Health::new();
    /// health.set("consumer herald-welcome", Check::Failing("deleted".into()));
    /// health.remove("consumer herald-welcome");
    /// assert!(health.snapshot().is_empty());
    /// ```
    pub fn remove(&self, part: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(part);
        }
    }

    /// Every part and its state, by name.
    ///
    /// ```
    /// use herald::health::{Check, Health};
    /// let health = Health::new();
    /// health.set("database", Check::Ok);
    /// for (part, check) in health.snapshot() {
    ///     println!("{part}: {check}");
    /// }
    /// ```
    pub fn snapshot(&self) -> Vec<(String, Check)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Ready when every part is ok (and at least one reported).
    ///
    /// ```
    /// use herald::health::{Check, Health};
    /// let health = Health::new();
    /// health.set("database", Check::Ok);
    /// health.set("nats", Check::Ok);
    /// assert!(health.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        let s = self.snapshot();
        !s.is_empty() && s.iter().all(|(_, c)| c.is_ok())
    }

    /// The parts that are not ok, as `part: state` lines.
    ///
    /// ```
    /// use herald::health::{Check, Health};
    /// let health = Health::new();
    /// health.set("database", Check::Ok);
    /// health.set("smtp", Check::Failing("connection refused".into()));
    /// assert_eq!(health.problems(), ["smtp: failing: connection refused"]);
    /// ```
    pub fn problems(&self) -> Vec<String> {
        let s = self.snapshot();
        if s.is_empty() {
            return vec!["starting".into()];
        }
        s.into_iter()
            .filter(|(_, c)| !c.is_ok())
            .map(|(p, c)| format!("{p}: {c}"))
            .collect()
    }
}

/// Keep the `database` part current: a `SELECT 1` every few seconds, which
/// must answer within two.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::health::{Health, watch_database};
/// let db = herald::db::connect("sqlite://herald.db?mode=rwc").await?;
/// let (health, stop) = (Health::new(), tokio_util::sync::CancellationToken::new());
/// tokio::spawn(watch_database(db, health.clone(), stop.clone()));
/// # Ok(()) }
/// ```
pub async fn watch_database(db: DatabaseConnection, health: Health, stop: CancellationToken) {
    loop {
        let ping =
            tokio::time::timeout(Duration::from_secs(2), db.execute_unprepared("SELECT 1")).await;
        let check = match ping {
            Ok(Ok(_)) => Check::Ok,
            Ok(Err(e)) => Check::Failing(crate::db::describe(&e)),
            Err(_) => Check::Failing("no answer to SELECT 1 within 2s".into()),
        };
        report(&health, "database", check);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Keep the `nats` part current from the client's connection state.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::health::{Health, watch_nats};
/// let client = herald::jetstream::connect("nats://127.0.0.1:4222", "my-app").await?;
/// let (health, stop) = (Health::new(), tokio_util::sync::CancellationToken::new());
/// tokio::spawn(watch_nats(client, health.clone(), stop.clone()));
/// # Ok(()) }
/// ```
pub async fn watch_nats(client: async_nats::Client, health: Health, stop: CancellationToken) {
    loop {
        let check = match client.connection_state() {
            async_nats::connection::State::Connected => Check::Ok,
            async_nats::connection::State::Pending => Check::Starting("connecting".into()),
            async_nats::connection::State::Disconnected => {
                Check::Failing("disconnected; reconnecting".into())
            }
        };
        report(&health, "nats", check);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Set a part's state, logging when it changes (once per change, not per check).
///
/// ```
/// use herald::health::{Check, Health, report};
/// let health = Health::new();
/// report(&health, "smtp", Check::Failing("connection refused".into())); // logged once
/// report(&health, "smtp", Check::Failing("connection refused".into())); // not again
/// assert!(!health.is_ready());
/// ```
pub fn report(health: &Health, part: &str, check: Check) {
    let previous = health.set(part, check.clone());
    if previous.as_ref() == Some(&check) {
        return;
    }
    match (&previous, &check) {
        (_, Check::Failing(reason)) => tracing::error!(part, %reason, "unhealthy"),
        (Some(Check::Failing(_)), Check::Ok) => tracing::info!(part, "healthy again"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_part_is() {
        let h = Health::new();
        assert!(!h.is_ready());
        h.set("database", Check::Ok);
        h.set("consumer notify", Check::Starting("binding".into()));
        assert!(!h.is_ready());
        assert_eq!(h.problems(), vec!["consumer notify: starting: binding"]);
        h.set("consumer notify", Check::Ok);
        assert!(h.is_ready());
        h.set("smtp", Check::Failing("connection refused".into()));
        assert_eq!(h.problems(), vec!["smtp: failing: connection refused"]);
    }
}
