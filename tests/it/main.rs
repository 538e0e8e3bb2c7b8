//! Herald's integration tests: one target, real servers (see `harness/`).
//! Every database test runs on SQLite and on PostgreSQL (`both_backends!`).

mod architecture;
mod authoring;
mod cli;
mod cluster;
mod config;
mod console;
mod conventions;
mod deliverability;
mod deploy;
mod fuzz;
mod harness_selftest;
mod ledger;
mod ops;
mod outbox;
mod poison_header;
mod producers;
mod relay;
mod relay_locks;
mod reload;
mod replay;
mod robustness;
mod soak;
mod telemetry;
mod up;
mod worker;
