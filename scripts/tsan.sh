#!/usr/bin/env bash
# ThreadSanitizer: builds build-tsan (-DDSTREAMD_TSAN=ON, RelWithDebInfo at
# -O1 with asserts), runs the unit and contract tests (GoogleTest via ctest) under TSan,
# then a multi-threaded smoke: dstreamd --threads 4 on the embedded store
# under concurrent appends, SSE and long-poll readers, catch-up reads, HEADs,
# /metrics scrapes and a DELETE (test/tsan/smoke.mjs). Fails on any TSan
# report (halt_on_error), any failed test, or an unclean server exit.
#
# Not built here: the S2 client tests (ds_s2_client_tests: single-threaded
# against a node emulator, covered by the ASan suite) and the benchmark tools.
#
#   scripts/tsan.sh                 build, tests, smoke
#   JOBS=1 scripts/tsan.sh          fewer parallel jobs (default 2)
#   SMOKE_SECONDS=30 scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="$ROOT/build-tsan"
JOBS="${JOBS:-2}"
start=$SECONDS

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS= \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DDSTREAMD_TSAN=ON -DDSTREAMD_BENCH=OFF >/dev/null
nice ninja -C "$BUILD" -j "$JOBS" dstreamd ds_unit_tests ds_contract_tests
echo "tsan: built in $((SECONDS - start))s"

# second_deadlock_stack: lock-order reports show where both locks were taken.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/test/tsan/suppressions.txt${TSAN_EXTRA:+:$TSAN_EXTRA}"
t=$SECONDS
# The S2 client tests are not built (above): ctest lists them as *_NOT_BUILT.
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" -E '_NOT_BUILT$'
echo "tsan: tests in $((SECONDS - t))s"

t=$SECONDS
DSTREAMD_BIN="$BUILD/dstreamd" node test/tsan/smoke.mjs "${SMOKE_SECONDS:-20}"
echo "tsan: smoke in $((SECONDS - t))s; total $((SECONDS - start))s"
