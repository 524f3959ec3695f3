#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang++ with ASan + UBSan) in build-fuzz
# and runs each for SECONDS (default 30) on a scratch copy of its seed corpus
# (fuzz/corpus/NAME/, never written to). Exits non-zero if any target finds a
# crash, a leak, a UBSan report, a timeout or a broken property; the input is
# kept in build-fuzz/findings/NAME/ and the log in build-fuzz/logs/NAME.log.
#
#   scripts/fuzz.sh            every target, 30 s each
#   scripts/fuzz.sh 300        every target, 5 min each
#   FUZZ_TARGETS="json jwt" scripts/fuzz.sh 60
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
TARGETS="${FUZZ_TARGETS:-target offset headers json s2_sse s2_wire jwt jwks subs}"
BUILD=build-fuzz
JOBS="${JOBS:-2}"

start=$SECONDS
CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DDSTREAMD_FUZZ=ON -DDSTREAMD_TESTS=OFF \
  -DDSTREAMD_BENCH=OFF >/dev/null || { echo "fuzz: cmake failed"; exit 1; }
nice ninja -C "$BUILD" -j "$JOBS" fuzz_targets || { echo "fuzz: build failed"; exit 1; }
echo "fuzz: built in $((SECONDS - start)) s"

# Leaks are findings; UBSan stops at its first report (the code is built with
# -fno-sanitize-recover too), which libFuzzer reports as a crash.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rm -rf "$BUILD/findings" "$BUILD/logs"
mkdir -p "$BUILD/logs"
failed=()
for name in $TARGETS; do
  corpus="$scratch/$name"
  mkdir -p "$corpus" "$BUILD/findings/$name"
  cp fuzz/corpus/"$name"/* "$corpus"/
  dict=()
  [[ -f fuzz/corpus/$name.dict ]] && dict=("-dict=fuzz/corpus/$name.dict")
  log="$BUILD/logs/$name.log"
  nice "$BUILD/fuzz/${name}_fuzz" "$corpus" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
    -timeout=10 -rss_limit_mb=2048 -error_exitcode=77 -timeout_exitcode=78 \
    -artifact_prefix="$BUILD/findings/$name/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  # The last status line: executions, coverage (edges), features, exec/s.
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/^#([0-9]+)\s+\S+\s+/runs: \1 /')
  if ((rc == 0)); then
    echo "fuzz: $name ok ($stats)"
  else
    failed+=("$name")
    echo "fuzz: $name FAILED (exit $rc); input in $BUILD/findings/$name/, log $log:"
    grep -E -A 30 'ERROR: |runtime error|property does not hold' "$log" | head -60
    # The input itself, so that a finding on a machine we cannot reach can be replayed here:
    # base64 -d > x && build-fuzz/fuzz/NAME_fuzz x
    for input in "$BUILD/findings/$name"/*; do
      [[ -f $input ]] || continue
      echo "fuzz: $name input $(basename "$input") ($(stat -c %s "$input") bytes), base64:"
      head -c 3000 "$input" | base64 -w 0
      echo
    done
  fi
done
echo "fuzz: total $((SECONDS - start)) s"
if ((${#failed[@]})); then
  echo "fuzz: findings in: ${failed[*]}"
  exit 1
fi
