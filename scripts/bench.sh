#!/usr/bin/env bash
# Benchmarks (BENCHMARKS.md): release build, own nats-server, PostgreSQL and
# SQLite, the harness's Rust SMTP sink. Sizes via HERALD_BENCH_* (see the
# bench sources). Prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
HERALD_NATS_SERVER_BIN="$(bash scripts/setup.sh | tail -n 1)"
export HERALD_NATS_SERVER_BIN
cargo build --release --bin herald
export HERALD_BIN="$PWD/target/release/herald"
cargo bench -p herald-tests --bench relay
cargo bench -p herald-tests --bench worker
# Scale-out, memory and outbox size: about 20 minutes (HERALD_BENCH_ONLY picks a part).
cargo bench -p herald-tests --bench scale
