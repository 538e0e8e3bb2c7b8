//! Herald: a notification workflow engine.
//!
//! Applications commit a state change together with an outbox row
//! ([`outbox::enqueue`]); the relay ([`relay`]) publishes committed rows to
//! NATS JetStream; the worker ([`worker`]) consumes them through declarative
//! YAML workflows ([`workflow`]), renders Handlebars emails and sends them over
//! SMTP ([`smtp`]), recording each delivery in a ledger ([`ledger`]) before it
//! acknowledges the message. See ARCHITECTURE.md for the map.

pub mod db;
pub mod dlq;
pub mod duration;
pub mod error;
mod event_id;
pub mod health;
pub mod jetstream;
pub mod ledger;
pub mod logfields;
pub mod metrics;
pub mod outbox;
pub mod rate;
pub mod relay;
pub mod replay;
pub mod retry;
pub mod secret;
pub mod smtp;
pub mod status;
pub mod subject;
pub mod suppression;
pub mod telemetry;
pub mod trace;
pub mod unsubscribe;
pub mod worker;
pub mod workflow;

pub use event_id::EventId;

#[cfg(feature = "testing")]
pub mod testing;

/// Herald's own tests and fuzz targets reach inside through here. Not part
/// of the API: no stability promise, hidden from the documentation.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub mod ledger {
        pub use crate::ledger::claims::{
            Claim, Key, claim, claim_grouped, claim_resend, mark_retrying, mark_sent,
        };
        pub use crate::ledger::group::{NewClaims, OwnedKey, Sent, SentRecord, Writer};
    }
    pub mod outbox {
        pub use crate::outbox::store::{Claimed, LockedBatch, claim, claim_locked, release};
    }
    pub mod rate {
        /// A rate's bucket at a moment: (slot interval, floor of the next
        /// free slot), in microseconds, as each reservation computes it.
        pub fn window(rate: &crate::rate::Rate, factor: f64, now: i64) -> (i64, i64) {
            rate.window(factor, now)
        }
    }
    pub mod relay {
        pub use crate::relay::publish::{build_headers, precheck};
    }
    pub mod worker {
        pub use crate::worker::event::Event;
    }
    pub mod workflow {
        pub use crate::workflow::address::{address, list, split_mailbox_template};
        pub use crate::workflow::source::parse;

        use crate::workflow::render::{Meta, Outcome, RenderError};
        use crate::workflow::{Catalog, TimeZone, Workflow};

        /// What the worker renders of an event before its email: the digest
        /// key, the send time, the quiet hours' time zone and the locale,
        /// each as `render_setting` gives it.
        pub fn render_settings(
            catalog: &Catalog,
            wf: &Workflow,
            payload: &serde_json::Value,
            meta: &Meta,
        ) -> Vec<Result<String, RenderError>> {
            let d = &wf.delivery;
            let zone = d.quiet_hours.as_ref().and_then(|q| match &q.tz {
                TimeZone::Template(id) => Some(id),
                TimeZone::Fixed(_) => None,
            });
            [
                d.digest.as_ref().map(|g| &g.key),
                d.send_at.as_ref(),
                zone,
                d.locale.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|id| catalog.render_setting(wf, id, payload, meta))
            .collect()
        }

        /// A digest of `events` (in stream order), as the schedule loop renders it.
        pub fn render_digest(
            catalog: &Catalog,
            wf: &Workflow,
            events: &[serde_json::Value],
            meta: &Meta,
        ) -> Result<Outcome, RenderError> {
            catalog.render_digest(wf, events, meta)
        }
    }
}
