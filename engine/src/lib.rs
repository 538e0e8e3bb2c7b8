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
mod event_id;
pub mod health;
pub mod jetstream;
pub mod ledger;
pub mod metrics;
pub mod outbox;
pub mod relay;
pub mod replay;
pub mod retry;
pub mod secret;
pub mod smtp;
pub mod status;
pub mod subject;
pub mod trace;
pub mod worker;
pub mod workflow;

pub use event_id::EventId;
