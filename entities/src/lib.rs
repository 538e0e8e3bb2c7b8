//! SeaORM entity models of Herald's tables. Models only: every rule about how
//! rows move between states lives in the `herald` engine crate.
//!
//! Timestamps are written by the application (never by column defaults) so that
//! SQLite's text encoding stays uniform and comparable.

pub mod dead_letter;
pub mod delivery;
pub mod outbox;
