#!/usr/bin/env bash
# The soak (docs/operations.md, "Soak"): relays and workers as separate
# processes on PostgreSQL and a 3-node JetStream cluster, under a seeded chaos
# loop, then the invariant checker. Defaults to 10,000 events over 500
# aggregates with 3 relays and 3 workers; the test suite runs 1,000.
#
#   scripts/soak.sh                        # a new seed (printed)
#   HERALD_TEST_SEED=42 scripts/soak.sh    # replay a run
#   HERALD_SOAK_EVENTS=50000 HERALD_SOAK_WORKERS=4 scripts/soak.sh
#   scripts/soak.sh partitions             # the network-partition soak
#                                          # (needs root for ip netns)
set -euo pipefail
cd "$(dirname "$0")/.."

HERALD_NATS_SERVER_BIN="$(bash scripts/setup.sh | tail -n 1)"
export HERALD_NATS_SERVER_BIN
export HERALD_SOAK_EVENTS="${HERALD_SOAK_EVENTS:-10000}"
export HERALD_SOAK_AGGREGATES="${HERALD_SOAK_AGGREGATES:-500}"
export HERALD_SOAK_RELAYS="${HERALD_SOAK_RELAYS:-3}"
export HERALD_SOAK_WORKERS="${HERALD_SOAK_WORKERS:-3}"

which="soak_with_chaos_keeps_every_invariant"
[ "${1:-}" = "partitions" ] && which="soak_with_partitions_keeps_every_invariant"

cargo build --bin herald --features failpoints
# --nocapture: the seed, every fault and the report are the point.
cargo test -p herald-tests --test it -- --exact "soak::$which" --nocapture
