#!/usr/bin/env bash
# Runs the official Durable Streams conformance suite (@durable-streams/server-conformance-tests)
# against dstreamd, the Node reference server, or an already-running server.
#
# Usage: test/conformance/run.sh [--server dstreamd|reference] [--base-url URL] [extra server args...]
#   --server dstreamd   (default) start $DSTREAMD_BIN (default: build/dstreamd) on a free port
#                       with a fresh temp --data-dir and --long-poll-timeout 500ms
#   --server reference  start the Node reference server (in memory; pass --data-dir PATH
#                       as an extra arg for its file-backed mode)
#   --base-url URL      start nothing; test the server at URL (set CONFORMANCE_LONG_POLL_MS
#                       to that server's long-poll timeout in ms, default 500)
# Extra args (anything else; everything after `--`) are appended to the server's command line.
# Env: DSTREAMD_BIN, CONFORMANCE_LONG_POLL_MS, CONFORMANCE_SUBSCRIPTIONS (0: skip the 6
#      subscription tests; default 1, 0 for --server reference), READY_TIMEOUT_MS (default 20000),
#      CONFORMANCE_TIMEOUT_S (hard cap on the vitest run, default 480).
# Exit code: vitest's (124 if the hard cap hit, 3 if the server never became ready).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

SERVER=dstreamd
BASE_URL=""
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --server) SERVER="${2:?--server needs a value}"; shift 2 ;;
    --server=*) SERVER="${1#*=}"; shift ;;
    --base-url) BASE_URL="${2:?--base-url needs a value}"; shift 2 ;;
    --base-url=*) BASE_URL="${1#*=}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
case "$SERVER" in dstreamd|reference) ;; *) echo "run.sh: unknown --server '$SERVER'" >&2; exit 2 ;; esac

LONG_POLL_MS="${CONFORMANCE_LONG_POLL_MS:-500}"
READY_TIMEOUT_MS="${READY_TIMEOUT_MS:-20000}"
TIMEOUT_S="${CONFORMANCE_TIMEOUT_S:-480}"

# Install the pinned toolchain on first use (CI clones are fresh).
if [[ ! -x "$HERE/node_modules/.bin/vitest" || ! -d "$HERE/node_modules/@durable-streams/server" ]]; then
  echo "run.sh: installing test dependencies (npm ci) in $HERE"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || { echo "run.sh: npm ci failed" >&2; exit 2; }
fi

SERVER_PID=""
TMP=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  [[ -n "$TMP" ]] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dstreamd-conformance.XXXXXX")"
if [[ -z "$BASE_URL" ]]; then
  PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  BASE_URL="http://127.0.0.1:$PORT"
  LOG="$TMP/server.log"
  if [[ "$SERVER" == dstreamd ]]; then
    BIN="${DSTREAMD_BIN:-$REPO/build/dstreamd}"
    if [[ ! -x "$BIN" ]]; then
      echo "run.sh: dstreamd binary not found or not executable: $BIN (build it, or set DSTREAMD_BIN)" >&2
      exit 2
    fi
    CMD=("$BIN" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --long-poll-timeout "${LONG_POLL_MS}ms"
         --webhook-allow-localhost true "${EXTRA[@]}")
  else
    # The reference server is run without its subscription routes.
    export CONFORMANCE_SUBSCRIPTIONS="${CONFORMANCE_SUBSCRIPTIONS:-0}"
    CMD=(node "$HERE/reference-server.mjs" --port "$PORT" --long-poll-timeout-ms "$LONG_POLL_MS" "${EXTRA[@]}")
  fi
  echo "run.sh: starting: ${CMD[*]}"
  "${CMD[@]}" >"$LOG" 2>&1 &
  SERVER_PID=$!
  if ! node "$HERE/wait-ready.mjs" "$BASE_URL/v1/stream/__conformance_readiness_probe__" "$READY_TIMEOUT_MS" "$SERVER_PID"; then
    echo "run.sh: server did not become ready; its log:" >&2
    tail -n 50 "$LOG" >&2
    exit 3
  fi
  echo "run.sh: server ready at $BASE_URL (pid $SERVER_PID)"
else
  echo "run.sh: testing already-running server at $BASE_URL (long-poll timeout ${LONG_POLL_MS} ms)"
fi

cd "$HERE"
CONFORMANCE_TEST_URL="$BASE_URL" CONFORMANCE_LONG_POLL_MS="$LONG_POLL_MS" NO_COLOR=1 \
  timeout --kill-after=10 "$TIMEOUT_S" "$HERE/node_modules/.bin/vitest" run --config "$HERE/vitest.config.mjs" 2>&1 \
  | tee "$TMP/vitest.out"
RC=${PIPESTATUS[0]}
# Restate vitest's "Tests  6 failed | 326 passed | 6 skipped (338)" as a plain closing line.
SUMMARY="$(grep -E '^ +Tests +' "$TMP/vitest.out" | tail -n 1)"
count() { grep -oE "[0-9]+ $1" <<<"$SUMMARY" | grep -oE '^[0-9]+' || echo 0; }
if [[ $RC -eq 124 ]]; then echo "run.sh: vitest hit the ${TIMEOUT_S}s cap" >&2; fi
if [[ $RC -ne 0 && -n "$SERVER_PID" ]]; then
  echo "run.sh: last lines of the server log:" >&2
  tail -n 30 "$LOG" >&2
fi
echo "conformance: $(count passed) passed, $(count failed) failed, $(count skipped) skipped"
exit $RC
