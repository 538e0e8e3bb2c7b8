#!/usr/bin/env bash
# Runs Herald's fuzz targets (fuzz/, cargo-fuzz + libFuzzer), each for a
# bounded time, and fails when one finds a crash, a hang or a stack overflow.
#
#   scripts/fuzz.sh                      # every target, 30 s each (CI)
#   scripts/fuzz.sh 600                  # every target, 10 minutes each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh render urls   # some targets, an hour each
#
# cargo-fuzz is installed when missing (pinned). libFuzzer needs nightly
# compiler flags; RUSTC_BOOTSTRAP=1 allows them on the stable toolchain.
# The corpus grows in fuzz/corpus/TARGET (not committed), starting from
# fuzz/seeds/TARGET and fuzz/regressions/TARGET. libFuzzer's output goes to
# fuzz/logs/TARGET.log; a finding is saved in fuzz/artifacts/TARGET/; docs/fuzzing.md says how to reproduce it and turn
# it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION="0.13.2"
ALL_TARGETS=(workflow_load render stream_message urls duration)

seconds="${FUZZ_SECONDS:-30}"
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL_TARGETS[@]}")

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Its own target directory: the instrumented build shares nothing with the
# normal one. No sanitizer: the code is safe Rust, and AddressSanitizer
# would double every frame (a stack overflow found only under it is not
# one the worker can have). Debug assertions stay on (overflow checks).
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
fuzz_opts=(--fuzz-dir fuzz --target-dir "$target_dir" --sanitizer none --debug-assertions)

max_len() {
  case "$1" in
    workflow_load|render|stream_message) echo 16384 ;;
    *) echo 1024 ;;
  esac
}

echo "fuzz: building ${targets[*]}" >&2
for t in "${targets[@]}"; do
  cargo fuzz build "${fuzz_opts[@]}" "$t"
done

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" fuzz/logs
  log="fuzz/logs/$t.log"
  inputs=("fuzz/corpus/$t" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && inputs+=("fuzz/regressions/$t")
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  echo "fuzz: $t for ${seconds}s" >&2
  # -timeout: one input taking longer is a hang; -rss_limit_mb: a leak or a
  # runaway allocation. The last lines are libFuzzer's final statistics.
  if ! cargo fuzz run "${fuzz_opts[@]}" "$t" "${inputs[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len="$(max_len "$t")" -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="fuzz/artifacts/$t/" > "$log" 2>&1; then
    failed+=("$t")
    # The finding: the panic (or libFuzzer's "deadly signal", "timeout")
    # and the file the input was saved to.
    grep -a -E -A3 "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -n 40 >&2
  fi
  grep -a -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done [0-9]+ runs" "$log" \
    | sed "s/^/fuzz: $t: /" >&2 || true
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FINDINGS in ${failed[*]}: see fuzz/artifacts/TARGET/ and docs/fuzzing.md" >&2
  exit 1
fi
echo "fuzz: no findings (${targets[*]}, ${seconds}s each)" >&2
