#!/usr/bin/env bash
# The test command (README, .ci/run): set up servers, build the binary the
# integration tests drive, run every test on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

HERALD_NATS_SERVER_BIN="$(bash scripts/setup.sh | tail -n 1)"
export HERALD_NATS_SERVER_BIN

# PostgreSQL tests are never skipped: without a server they fail, loudly.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "test: PostgreSQL is not reachable on 127.0.0.1:5432; the PostgreSQL tests will fail" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi

# The suite proves crash windows and contained panics with failpoints.
cargo build --bin herald --features failpoints
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# nextest skips doctests: compile every example of the API docs (the ones
# that need no server also run), with every feature so that `testing` and
# the other optional modules' examples are checked too.
cargo test --doc --workspace --all-features
