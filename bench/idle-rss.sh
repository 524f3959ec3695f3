#!/usr/bin/env bash
# Server RSS per idle live reader (issue #12): one dstreamd, N parked SSE readers or long-polls
# over 100 streams, as bench/run.sh's idle-sse / idle-longpoll cases, for one binary at a time so
# that two builds can be measured side by side at the same count.
#
#   bench/idle-rss.sh [--bin PATH] [--mode sse|long-poll] [--connections N] [--heaptrack FILE]
#                     [--max-connections M]
#
# Prints ds-loadgen's JSON line (server_rss_bytes_per_conn is (RSS parked - RSS before) / N).
# --heaptrack FILE: run the server under heaptrack (FILE.zst); its peak is the parked state.
# N is limited by the hard fd limit (ulimit -Hn) and the server's --max-connections (by default
# the fd limit less an eighth: 17,500 of 20,000); --max-connections M is passed to the server, so
# that e.g. 19,000 fit under a hard limit of 20,000 (each process needs N descriptors and a few).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build}"
BIN="$BUILD_DIR/dstreamd"
MODE=sse
N=15000
HEAP=""
MAXC=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    --connections) N="$2"; shift 2 ;;
    --heaptrack) HEAP="$2"; shift 2 ;;
    --max-connections) MAXC="$2"; shift 2 ;;
    *) echo "idle-rss.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
ulimit -n "$(ulimit -Hn)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/idle-rss.XXXXXX")"
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
ARGS=(--listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --log-level warn
  --long-poll-timeout 300000ms --sse-max-duration 60s)
if [[ -n "$MAXC" ]]; then ARGS+=(--max-connections "$MAXC"); fi
if [[ -n "$HEAP" ]]; then
  heaptrack -o "$HEAP" "$BIN" "${ARGS[@]}" >"$TMP/server.log" 2>&1 &
  sleep 2
  SPID="$(pgrep -n -f "$BIN --listen 127.0.0.1:$PORT")"
else
  "$BIN" "${ARGS[@]}" >"$TMP/server.log" 2>&1 &
  SPID=$!
fi
PID=$!
node "$REPO/test/conformance/wait-ready.mjs" "http://127.0.0.1:$PORT/v1/stream/__probe__" 20000 "$SPID" >/dev/null
"$BUILD_DIR/bench/ds-loadgen" --url "http://127.0.0.1:$PORT" --server-pid "$SPID" --label idle --json \
  --scenario idle --mode "$MODE" --connections "$N" --streams 100 --duration 3
