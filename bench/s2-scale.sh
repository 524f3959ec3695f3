#!/usr/bin/env bash
# The S2 engine at realistic S2 round trips (issue 10, item 6): dstreamd --storage s2 over the
# repo's S2 emulator with --latency-ms L for each L in --latencies (default "10 1"), against the
# embedded engine in the same run. Cases (each with a fresh emulator and fresh nodes):
#   one-stream    a. 64 writers, 100 B appends, ONE stream, one node
#   many-streams  b. 64 writers over 100 streams, one node
#   three-nodes   c. three nodes on one emulator basin, 3 x 22 writers on ONE stream, each
#                    connection pinned to one node; the stream is then read back from every node
#                    and lost / duplicated appends are counted (ds-loadgen --verify)
#   embedded      e. one-stream and many-streams on dstreamd with a temp --data-dir
# Every S2 case also reports (d) emulator requests per append (all kinds, and appends alone),
# server CPU per append (summed over the nodes) and its ratio to embedded, and the S2 client's
# connections opened per 1000 S2 requests (dstreamd_s2_* on /metrics). Every case runs with
# --verify (unique bodies, read back after the measured phase).
#
#   bench/s2-scale.sh            full run (~2 min): writes bench/results/s2-scale.jsonl and
#                                docs/benchmarks-s2.md, prints the numbers beside the targets
#   bench/s2-scale.sh --smoke    tiny parameters (< 60 s), writes no docs; fails only on a
#                                protocol error or a lost / duplicated append, never on speed
#
# Options: --latencies "10 1", --duration SECS (measured phase per case; full 10, smoke 1.5;
# the full run first loads each case for WARMUP seconds, env, default 2, unmeasured),
# --only "one-stream many-streams three-nodes embedded" (a subset), --out FILE.jsonl (the report
# then goes to FILE.md), --emu-faults JSON (posted to every emulator's /_emu/faults before its
# case, e.g. '{"errorRate":0.05,"errorApplyAppend":true}': the lost/duplicated check under
# ambiguous S2 appends; the numbers are then not the engine's).
# Env: BUILD_DIR (default build), KEEP_TMP=1 keeps server logs.
# Exit status: 0 if every case ran and verified; 1 if a case failed (ds-loadgen error, lost or
# duplicated appends); 2 on a setup error. Speed never fails the run.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO" || exit 2
BUILD_DIR="${BUILD_DIR:-build}"

SMOKE=0
LATENCIES="10 1"
DURATION=""
ONLY=""
OUT=""
EMU_FAULTS=""
DOC="$REPO/docs/benchmarks-s2.md"
ARGS_TEXT="bench/s2-scale.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --latencies) LATENCIES="${2:?}"; shift 2 ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    --only) ONLY="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; DOC="${OUT%.jsonl}.md"; shift 2 ;;
    --emu-faults) EMU_FAULTS="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "s2-scale.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

if ((SMOKE)); then
  D="${DURATION:-1.5}"; WARMUP=0; W=8; W3=3; STREAMS=10; LIMIT=40
else
  D="${DURATION:-10}"; WARMUP="${WARMUP:-2}"; W=64; W3=22; STREAMS=100; LIMIT=240
fi
BASIN=bench-basin

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log() { echo "s2-scale: $*" >&2; }

# ------------------------------------------------------------------ build
T_START=$SECONDS
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring a release build in $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSTREAMD_TESTS=OFF >/dev/null ||
    { log "cmake failed"; exit 2; }
fi
ninja -C "$BUILD_DIR" -j2 ds-loadgen >/dev/null || { log "building ds-loadgen failed"; exit 2; }
if ! ninja -C "$BUILD_DIR" -j2 dstreamd >"$BUILD_DIR/s2-scale-dstreamd-build.log" 2>&1; then
  [[ -x "$BUILD_DIR/dstreamd" ]] || { log "building dstreamd failed (see $BUILD_DIR/s2-scale-dstreamd-build.log)"; exit 2; }
  log "WARNING: building dstreamd failed; using the existing $BUILD_DIR/dstreamd"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dstreamd-s2-scale.XXXXXX")"
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ -n "${KEEP_TMP:-}" ]]; then log "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copies: a rebuild during the run does not mix versions.
cp "$BUILD_DIR/dstreamd" "$BUILD_DIR/bench/ds-loadgen" "$TMP/" || { log "cannot copy the binaries"; exit 2; }
DSTREAMD="$TMP/dstreamd"
LOADGEN="$TMP/ds-loadgen"
BUILD_DESC="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
log "dstreamd from $BUILD_DESC; latencies: $LATENCIES ms; $D s per case"

if [[ -z "$OUT" ]]; then
  if ((SMOKE)); then OUT="$TMP/results.jsonl"; else OUT="$REPO/bench/results/s2-scale.jsonl"; fi
fi
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_emulator DIR LATENCY_MS → EMU_URL, EMU_PID
start_emulator() {
  local dir="$1" lat="$2"
  # S2's own per-stream limits (200 append batches/s per connection, 100 MiB/s), as in the cloud.
  node "$REPO/s2emu/src/main.js" --port 0 --basin "$BASIN" --latency-ms "$lat" \
    --max-append-batches-per-sec 200 --max-append-bytes-per-sec 104857600 >"$dir/emu.out" 2>&1 &
  EMU_PID=$!
  PIDS+=("$EMU_PID")
  EMU_URL=""
  for _ in $(seq 1 100); do
    EMU_URL="$(sed -n 's/^S2EMU_URL=//p' "$dir/emu.out" 2>/dev/null)"
    if [[ -n "$EMU_URL" ]]; then
      [[ -z "$EMU_FAULTS" ]] && return 0
      curl -fsS --max-time 5 -X POST -H 'content-type: application/json' --data "$EMU_FAULTS" \
        "$EMU_URL/_emu/faults" >"$dir/faults.json" && return 0
      log "the emulator refused --emu-faults $EMU_FAULTS"
      return 1
    fi
    kill -0 "$EMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "the S2 emulator did not start:"
  cat "$dir/emu.out" >&2
  return 1
}

# start_node DIR NAME KIND(s2|embedded) → appends to URLS / SPIDS
start_node() {
  local dir="$1" name="$2" kind="$3" port pid
  port="$(free_port)"
  if [[ "$kind" == s2 ]]; then
    "$DSTREAMD" --storage s2 --s2-endpoint "$EMU_URL" --s2-basin "$BASIN" \
      --listen "127.0.0.1:$port" --log-level warn >"$dir/$name.log" 2>&1 &
  else
    "$DSTREAMD" --listen "127.0.0.1:$port" --data-dir "$dir/$name-data" --log-level warn \
      >"$dir/$name.log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  if ! node "$REPO/test/conformance/wait-ready.mjs" "http://127.0.0.1:$port/v1/stream/__bench_probe__" \
    20000 "$pid" >/dev/null 2>&1; then
    log "dstreamd $name ($kind) did not become ready:"
    tail -n 20 "$dir/$name.log" >&2
    return 1
  fi
  URLS+=("http://127.0.0.1:$port")
  SPIDS+=("$pid")
}

FAILED=0
# record HEAD-JSON-FIELDS JSON-or-empty ERROR
record() {
  local head="$1" json="$2" err="$3"
  if [[ -n "$json" ]]; then
    echo "{$head,${json#\{}" >>"$OUT"
  else
    err="${err//\\/\\\\}"
    err="${err//\"/\\\"}"
    echo "{$head,\"error\":\"$err\"}" >>"$OUT"
  fi
}

want() { [[ -z "$ONLY" || " $ONLY " == *" $1 "* ]]; }

# run_case CASE KIND LATENCY NODES WRITERS STREAMS
run_case() {
  local case="$1" kind="$2" lat="$3" nodes="$4" writers="$5" streams="$6"
  local dir head t0=$SECONDS
  dir="$(mktemp -d "$TMP/$case-$kind-$lat.XXXX")"
  head="\"case\":\"$case\",\"server\":\"$kind\",\"nodes\":$nodes"
  [[ "$kind" == s2 ]] && head="$head,\"s2_latency_ms\":$lat"
  [[ "$kind" == s2 && -n "$EMU_FAULTS" ]] && head="$head,\"emu_faults\":$EMU_FAULTS"
  URLS=()
  SPIDS=()
  EMU_URL=""
  EMU_PID=""
  local ok=1 n
  if [[ "$kind" == s2 ]]; then start_emulator "$dir" "$lat" || ok=0; fi
  if ((ok)); then
    for n in $(seq 1 "$nodes"); do start_node "$dir" "node$n" "$kind" || { ok=0; break; }; done
  fi
  if ((!ok)); then
    record "$head" "" "a server did not start"
    FAILED=$((FAILED + 1))
    stop_all
    return 1
  fi
  local extra=()
  [[ "$kind" == s2 ]] && extra=(--s2-stats "$EMU_URL/_emu/stats" --emulator-pid "$EMU_PID" --s2-metrics)
  local out rc
  out="$(timeout --kill-after=5 "$LIMIT" "$LOADGEN" --scenario append \
    --url "$(IFS=,; echo "${URLS[*]}")" --server-pid "$(IFS=,; echo "${SPIDS[*]}")" \
    --label "$kind" --json --verify --writers "$writers" --streams "$streams" --body-bytes 100 \
    --duration "$D" --warmup "$WARMUP" "${extra[@]}" 2>"$dir/loadgen.err")"
  rc=$?
  stop_all
  local what="$case on $kind${lat:+ at ${lat} ms}"
  [[ "$kind" == s2 ]] || what="$case on $kind"
  if [[ "$out" == \{* ]]; then
    if [[ $rc -ne 0 ]]; then
      head="$head,\"error\":\"ds-loadgen exit $rc (verification failed)\""
    fi
    record "$head" "$out" ""
  else
    local err
    err="$(tail -n 3 "$dir/loadgen.err" | tr '\n' ' ')"
    [[ $rc -eq 124 ]] && err="timed out after ${LIMIT}s; $err"
    record "$head" "" "exit $rc: $err"
  fi
  if [[ $rc -eq 0 ]]; then
    log "$what: ok ($((SECONDS - t0)) s)"
    return 0
  fi
  FAILED=$((FAILED + 1))
  log "$what: FAILED (exit $rc): $(tail -n 3 "$dir/loadgen.err" | tr '\n' ' ')"
  return 1
}

if want embedded; then
  log "=== embedded (e)"
  run_case one-stream embedded 0 1 "$W" 1
  run_case many-streams embedded 0 1 "$W" "$STREAMS"
fi
for lat in $LATENCIES; do
  log "=== S2 emulator at $lat ms"
  want one-stream && run_case one-stream s2 "$lat" 1 "$W" 1
  want many-streams && run_case many-streams s2 "$lat" 1 "$W" "$STREAMS"
  want three-nodes && run_case three-nodes s2 "$lat" 3 "$((3 * W3))" 1
done

log "results: $OUT ($(wc -l <"$OUT") lines), $((SECONDS - T_START)) s"
node "$HERE/report-s2.mjs" --summary "$OUT" || FAILED=$((FAILED + 1))
if ((!SMOKE)); then
  node "$HERE/report-s2.mjs" --out "$DOC" --command "$ARGS_TEXT" --build "$BUILD_DESC" \
    --seconds "$((SECONDS - T_START))" "$OUT" && log "wrote $DOC" || FAILED=$((FAILED + 1))
fi
if ((FAILED)); then log "$FAILED case(s) failed (protocol error or lost/duplicated appends)"; exit 1; fi
log "ok"
exit 0
