#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs every test suite:
#   1. unit + store contract tests (GoogleTest via ctest), release build
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. the official conformance suite against dstreamd (embedded store), release
#   4. the conformance suite against the sanitizer build
#   5. the SIGKILL crash test (20 cycles)
#   6. integration tests: live readers joining behind the hub buffer, bad input
#   7. the S2 emulator's own tests and its fidelity proof with S2's TypeScript SDK
#   8. the S2 engine: conformance on one node and on three nodes behind nginx,
#      exactly-once across nodes, live hubs, S2 failures (test/s2-cluster)
#   9. packaging checks (Kubernetes manifests, systemd unit, container entrypoint)
#      and the benchmark smoke run (bench/run.sh --smoke --with-s2-scale: every scenario, tiny)
#  10. a clang++ build (g++ 12 miscompiles some coroutine code; clang 14 does not),
#      which also checks the locking annotations (-Wthread-safety), and the
#      libFuzzer targets (fuzz/), 30 s each (scripts/fuzz.sh)
#  11. ThreadSanitizer: the unit and contract tests, and a multi-threaded
#      server smoke (scripts/tsan.sh)
#  12. clang-tidy on the bug-prone checks, and formatting (clang-format)
#  13. the inspector page (ui/) in headless Chromium (test/ui)
# Ends with one line "N passed, N failed" counting suites.
#
#   scripts/test.sh            everything
#   SUITES="unit conformance" scripts/test.sh   a subset
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SUITES="${SUITES:-unit asan conformance conformance-asan crash integration s2emu s2-cluster packaging bench-smoke clang fuzz tsan lint format ui}"
JOBS="${JOBS:-$(nproc)}"

passed=0
failed=0
failures=()
# Each suite's output also goes to a log here; the last lines of every failed suite's log are
# repeated at the end, where a CI page that keeps only the tail of the output still shows them.
LOGS="$ROOT/build/test-logs"
failure_logs=()
step() {  # step NAME COMMAND...
  local name=$1
  shift
  echo
  echo "=== $name"
  local start=$SECONDS
  mkdir -p "$LOGS"
  local log
  log="$LOGS/$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '-' | cut -c1-48).log"
  if "$@" 2>&1 | tee "$log"; then  # pipefail: the suite's status, not tee's
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    failure_logs+=("$log")
    echo "=== $name: FAILED ($((SECONDS - start))s)"
  fi
}
want() { [[ " $SUITES " == *" $1 "* ]]; }

scripts/setup.sh build || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

if want asan || want conformance-asan; then
  CMAKE_BUILD_TYPE=Debug scripts/setup.sh build-asan -DDSTREAMD_SANITIZE=ON -DCMAKE_CXX_FLAGS=-O1 ||
    { echo "sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

want unit && step "unit and contract tests" ctest --test-dir build --output-on-failure -j "$JOBS"
want asan && step "unit and contract tests (ASan+UBSan)" ctest --test-dir build-asan --output-on-failure -j "$JOBS"
want conformance && step "conformance (embedded)" test/conformance/run.sh
want conformance-asan && step "conformance (embedded, ASan+UBSan)" env DSTREAMD_BIN="$ROOT/build-asan/dstreamd" test/conformance/run.sh
want crash && step "crash test (SIGKILL x20)" test/crash/run.sh --cycles 20
want integration && step "integration (live catch-up, bad input)" test/integration/run.sh
want s2emu && step "S2 emulator" s2emu/run-tests.sh
want s2-cluster && step "S2 engine: conformance on one node and on 3 nodes behind nginx; exactly-once, live hub, failures" test/s2-cluster/run.sh
want packaging && step "packaging (manifests, systemd unit, entrypoint)" test/packaging/run.sh
want bench-smoke && step "benchmark smoke (every ds-loadgen scenario and the S2 scale cases, tiny; fails on lost or duplicated appends, never on speed)" bench/run.sh --smoke --with-s2-scale
want clang && step "clang++ build (with -Wthread-safety)" bash -c 'CXX=clang++ cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDSTREAMD_TESTS=OFF >/dev/null && ninja -C build-clang dstreamd'
want fuzz && step "fuzzing (libFuzzer, 30 s per target)" scripts/fuzz.sh 30
want tsan && step "ThreadSanitizer (unit and contract tests, dstreamd --threads 4 under load)" scripts/tsan.sh
want lint && step "clang-tidy (bug-prone checks)" scripts/lint.sh build
want format && step "clang-format" bash -c 'git ls-files "*.cc" "*.h" | xargs clang-format --dry-run --Werror'
want ui && step "inspector page in headless Chromium (screenshots in test/ui/artifacts)" test/ui/run.sh

echo
for log in "${failure_logs[@]}"; do
  echo "--- the last 40 lines of $log"
  tail -n 40 "$log"
done
((failed)) && echo "failed suites: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
