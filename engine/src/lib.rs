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
        pub use crate::outbox::store::{Claimed, claim, release};
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
    }
}
