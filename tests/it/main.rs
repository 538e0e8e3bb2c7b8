//! Herald's integration tests: one target, real servers (see `harness/`).
//! Every database test runs on SQLite and on PostgreSQL (`both_backends!`).

mod cli;
mod console;
mod deliverability;
mod fuzz;
mod harness_selftest;
mod ledger;
mod ops;
mod outbox;
mod poison_header;
mod producers;
mod relay;
mod reload;
mod replay;
mod robustness;
mod up;
mod worker;
