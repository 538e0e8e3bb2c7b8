#!/usr/bin/env bash
# The embedded default, end to end, in about a minute on a fresh machine:
# SQLite (./herald.db), a nats-server started here with nats.conf, the file://
# mail capture (./outbox-mail). Emits the sample events of workflows/samples,
# waits for their emails, prints where they are, stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_BIN="$(bash scripts/setup.sh | tail -n 1)"
cargo build --release --bin herald
HERALD=./target/release/herald
export HERALD_DATABASE_URL="${HERALD_DATABASE_URL:-sqlite://herald.db?mode=rwc}"
export HERALD_SMTP_URL="${HERALD_SMTP_URL:-file://./outbox-mail}"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [ -z "${HERALD_NATS_URL:-}" ]; then
  # Our own server on free ports: whatever listens on 4222 may be too old.
  port=$(free_port); mport=$(free_port)
  mkdir -p .herald
  "$NATS_BIN" -c nats.conf -p "$port" -m "$mport" > .herald/nats.log 2>&1 & pids+=($!)
  export HERALD_NATS_URL="nats://127.0.0.1:$port"
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
fi

$HERALD migrate
$HERALD workflows validate
$HERALD relay & pids+=($!)
$HERALD worker & pids+=($!)

before=$(ls outbox-mail/*.eml 2>/dev/null | wc -l || true)
$HERALD emit --subject events.contract.signed --payload @workflows/samples/contract-signed.json --aggregate 42
$HERALD emit --subject events.vault.archived --payload @workflows/samples/vault-archived.json --aggregate v-17
$HERALD emit --subject events.campaign.wave_sent --payload @workflows/samples/campaign-wave.json
want=$((before + 4))
for _ in $(seq 1 300); do
  [ "$(ls outbox-mail/*.eml 2>/dev/null | wc -l)" -ge "$want" ] && break
  sleep 0.1
done
echo
echo "demo: emails written to $(pwd)/outbox-mail:"
ls -1t outbox-mail/*.eml | head -n 4
