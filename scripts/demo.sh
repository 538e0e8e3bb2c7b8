#!/usr/bin/env bash
# The embedded default, end to end, on a fresh machine: SQLite (./herald.db),
# a nats-server that `herald demo` starts itself with nats.conf, the file://
# mail capture (./outbox-mail). Emits workflows/samples/SUBJECT.json, waits for
# the emails, says where they are, stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

HERALD_NATS_SERVER_BIN="$(bash scripts/setup.sh --nats-only | tail -n 1)"
export HERALD_NATS_SERVER_BIN
# A release build: the first one takes several minutes (about 20 on 2 busy cores).
cargo build --release --bin herald

if [ -z "${HERALD_NATS_URL:-}" ]; then
  # A free port, so that whatever listens on 4222 (possibly a nats-server
  # older than 2.10) is left alone; herald demo starts its own server there.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export HERALD_NATS_URL="nats://127.0.0.1:$port"
fi
exec "${CARGO_TARGET_DIR:-target}/release/herald" demo "$@"
