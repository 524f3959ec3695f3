#!/usr/bin/env bash
# S2 soak (issue 13, item 15; a bench, not CI): three dstreamd --storage s2 nodes over one S2
# emulator basin for a long run while the emulator injects random 5xx answers (some appends
# applied before the error), cuts and stalls a random share of read sessions and races the
# nodes' conditional appends; producer (exactly-once) and plain writers append to the same
# streams through random nodes, and an SSE and a long-poll reader per stream on every node
# count every message (unique writer id + sequence). See bench/s2-soak.mjs for the details.
#
#   bench/s2-soak.sh                 the full soak: 10 minutes of writes (+ drain and checks)
#   bench/s2-soak.sh --short         ~60 s, to try it
#   bench/s2-soak.sh --duration 1800 any length in seconds
# Other options are passed to s2-soak.mjs: --streams 4 --producers 2 --plain 1 --rate 240
# (appends/s over all writers) --phase-s 15 (fault mix changes) --sample-s 5 (RSS/fd samples)
# --drain-s 90 --seed N --keep-dir DIR (node logs; kept in a temp dir anyway on failure)
# --node-args "--hub-buffer-bytes 65536" (extra dstreamd flags for every node).
# Env: DSTREAMD_BIN (default build/dstreamd).
#
# Prints progress, then a summary: appends acknowledged, lost / duplicated / out of order /
# foreign (all must be 0), reader and append error counts, the emulator's injected faults,
# and each node's (and the emulator's) RSS and open fds at start / end / max. Appends JSON
# lines (start, sample, phase, summary, reader) to bench/results/s2-soak-<UTC time>.jsonl
# (or --out FILE). Exit 0 = PASS, 1 = FAIL (loss, duplication, disorder, a node died, or the
# readers did not catch up), 2 = setup error. Runs under nice.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export DSTREAMD_BIN="${DSTREAMD_BIN:-$REPO/build/dstreamd}"

ARGS=()
DURATION=600
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --short) DURATION=60; shift ;;
    --duration) DURATION="${2:?--duration needs seconds}"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --out) OUT="${2:?--out needs a file}"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --node-args) ARGS+=("--node-args=${2:?--node-args needs a value}"); shift 2 ;; # its value starts with a dash
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [[ ! -x "$DSTREAMD_BIN" ]]; then
  echo "s2-soak: dstreamd binary not found or not executable: $DSTREAMD_BIN (build it, or set DSTREAMD_BIN)" >&2
  exit 2
fi
if [[ -z "$OUT" ]]; then
  mkdir -p "$HERE/results"
  OUT="$HERE/results/s2-soak-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
fi
echo "s2-soak: dstreamd $DSTREAMD_BIN, ${DURATION}s, results $OUT"
exec nice -n 10 node "$HERE/s2-soak.mjs" --duration "$DURATION" --out "$OUT" "${ARGS[@]}"
