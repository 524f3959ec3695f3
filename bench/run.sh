#!/usr/bin/env bash
# Benchmarks dstreamd against the Node reference server with ds-loadgen (bench/loadgen.cc).
#
#   bench/run.sh           the full run (~21 min): dstreamd embedded, dstreamd on S2 over the
#                          repo's S2 emulator, the reference server in memory and file-backed,
#                          and the machine's floors (below); writes bench/results/latest.jsonl
#                          and docs/benchmarks.md
#   bench/run.sh --smoke   tiny parameters, every scenario, dstreamd embedded and the reference
#                          in memory only (< 90 s); writes no docs. Fails only if ds-loadgen
#                          exits non-zero (a protocol error), never on speed.
#
# Floors, measured in the same run so that every figure can be read as a multiple of what this
# machine itself costs for the same work: "fsync-floor" (fdatasync of a 100-byte append),
# "nginx" as a server kind (Debian's nginx, one worker, answering the append cases' PUT/POST
# with a bare 201/204; installed with apt-get in a full run if missing, skipped with a log line
# if it cannot be had; the smoke run uses it only if installed, on append-saturated), and
# "fanout-floor-1k"/"fanout-floor-10k" (bench/floor_fanout.cc: one non-blocking 100-byte
# loopback write per reader per event, at the SSE fan-out cases' readers and rate).
#
# Storage targets (issue #11; docs/benchmarks.md "Storage engine targets"): catchup-1k-1/-4
# (128 MiB written as 1 KiB appends, 1 and 4 readers), append-100-streams/append-100k-streams
# (the same rate and writers over 100 and over 100k pre-created streams), and, in the full run
# only, streams-1m (1M streams with one append each: RSS, data dir size and files) and restart-1g
# (1 GiB of log: time to /ready after SIGTERM and after SIGKILL). These pin the server to CPU 0
# and ds-loadgen to CPU 1 (taskset), and read dstreamd_store_* from /metrics (--store-metrics).
# "catchup-floor" (bench/floor_sendfile.py, python3): bare sendfile of the same bytes on loopback.
#
# Options: --servers "embedded s2 ref-mem ref-file nginx" (a subset), --only "case ..." (a subset
# of the cases below; a fan-out floor runs if its own or its SSE case is chosen), --out FILE.jsonl
# (the JSON lines; the report then goes to FILE.md instead
# of docs/benchmarks.md; the full run's default is bench/results/latest.jsonl), --with-s2-scale
# (afterwards run bench/s2-scale.sh, with --smoke in a smoke run: the S2 engine at 10 ms and
# 1 ms S2 round trips, docs/benchmarks-s2.md; its failure fails this run).
# Env: BUILD_DIR (default build).
# Each server is started fresh for every case; its PID is handed to ds-loadgen (--server-pid)
# for /proc CPU and RSS sampling. ds-loadgen and the servers share the machine's cores.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO" || exit 2
BUILD_DIR="${BUILD_DIR:-build}"

SMOKE=0
S2_SCALE=0
S2_FAILED=0
SERVERS=""
ONLY=""
OUT=""
DOC="$REPO/docs/benchmarks.md"
ARGS_TEXT="bench/run.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --servers) SERVERS="${2:?}"; shift 2 ;;
    --only) ONLY="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; DOC="${OUT%.jsonl}.md"; shift 2 ;;
    --with-s2-scale) S2_SCALE=1; shift ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
if ((SMOKE)); then
  SERVERS="${SERVERS:-embedded ref-mem nginx}"
else
  SERVERS="${SERVERS:-embedded embedded-nofsync s2 ref-mem ref-file nginx}"
fi

# Both ds-loadgen and the servers need one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { echo "bench: $*" >&2; }

# ------------------------------------------------------------------ build and dependencies
T_START=$SECONDS
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring a release build in $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSTREAMD_TESTS=OFF >/dev/null ||
    { log "cmake failed"; exit 2; }
fi
ninja -C "$BUILD_DIR" ds-loadgen ds-floor-fanout >/dev/null || { log "building ds-loadgen failed"; exit 2; }
if ! ninja -C "$BUILD_DIR" dstreamd >"$BUILD_DIR/bench-dstreamd-build.log" 2>&1; then
  # The tree may be mid-change (another engineer's work in progress): bench the last good
  # binary rather than nothing, and say so loudly.
  [[ -x "$BUILD_DIR/dstreamd" ]] || { log "building dstreamd failed (see $BUILD_DIR/bench-dstreamd-build.log)"; exit 2; }
  log "WARNING: building dstreamd failed (see $BUILD_DIR/bench-dstreamd-build.log); using the existing $BUILD_DIR/dstreamd"
fi

need_npm() {  # need_npm DIR: npm ci unless node_modules is there
  [[ -d "$1/node_modules" ]] && return 0
  log "npm ci in $1"
  (cd "$1" && npm ci --no-audit --no-fund --loglevel=error) || { log "npm ci failed in $1"; exit 2; }
}
[[ " $SERVERS " == *" ref-"* ]] && need_npm "$REPO/test/conformance"
[[ " $SERVERS " == *" s2 "* ]] && need_npm "$REPO/s2emu"

# The nginx floor: Debian's package. A full run installs it if missing; the smoke run (CI's
# time budget) only uses an nginx that is already there. Without it the floor is "n/a".
if [[ " $SERVERS " == *" nginx "* ]] && ! command -v nginx >/dev/null; then
  if ((!SMOKE)) || [[ -n "${BENCH_INSTALL_NGINX:-}" ]]; then
    log "installing nginx (apt-get) for the nginx floor"
    { timeout 300 apt-get update && { timeout 300 apt-get install -y nginx-light || timeout 300 apt-get install -y nginx; }; } \
      >"$BUILD_DIR/bench-nginx-install.log" 2>&1
  fi
  if ! command -v nginx >/dev/null; then
    log "nginx is not installed (or could not be): skipping the nginx floor"
    SERVERS=" $SERVERS "
    SERVERS="${SERVERS/ nginx / }"
  fi
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dstreamd-bench.XXXXXX")"
PIDS=()
stop_servers() {
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
  stop_servers
  if [[ -n "${KEEP_TMP:-}" ]]; then log "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copies of the binaries: a rebuild in $BUILD_DIR during the run does not mix versions.
if ! cp "$BUILD_DIR/dstreamd" "$BUILD_DIR/bench/ds-loadgen" "$BUILD_DIR/bench/ds-floor-fanout" "$TMP/"; then
  log "cannot copy the binaries"
  exit 2
fi
DSTREAMD="$TMP/dstreamd"
LOADGEN="$TMP/ds-loadgen"
FLOOR_FANOUT="$TMP/ds-floor-fanout"
BUILD_DESC="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
log "dstreamd from $BUILD_DESC"

if [[ -z "$OUT" ]]; then
  if ((SMOKE)); then OUT="$TMP/results.jsonl"; else OUT="$REPO/bench/results/latest.jsonl"; fi
fi
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Long enough that parked long-polls of the idle case never time out during a case.
LONG_POLL_MS=300000
if ((SMOKE)); then SSE_MAX=2s; else SSE_MAX=60s; fi

# nginx_conf DIR PORT: one worker answering PUT with 201 and everything else under /v1/stream/
# with 204, no access log, everything it writes under DIR. `return` answers at once and
# discards the request body: nginx still reads it off the socket (it must, for keep-alive; a
# 100-byte body arrives with the headers and is skipped in the header buffer) but does not
# buffer or parse it. So this is the floor of answering an HTTP request, not of storing it.
nginx_conf() {
  local dir="$1" port="$2" user=""
  ((EUID == 0)) && user="user root;"  # else its worker would run as nobody
  cat <<EOF
worker_processes 1;
daemon off;
$user
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$port;
    location /v1/stream/ {
      client_max_body_size 16m;
      client_body_buffer_size 64k;
      if (\$request_method = PUT) { return 201; }
      return 204;
    }
  }
}
EOF
}

# PIN=1 (set by pinned_case): the server's threads on CPU 0, ds-loadgen on CPU 1, so that neither
# steals the other's core and a ratio measured side by side compares like with like.
# DS_ARGS: extra arguments for dstreamd (every storage) in the case being run.
DS_ARGS=()
PIN=0
PIN_SERVER_CPU=0
PIN_LOADGEN_CPU=1
pinned_case() {
  local rc
  PIN=1
  bench_case "$@"
  rc=$?
  PIN=0
  return $rc
}
# POST_CASE: a function run after ds-loadgen, before the server stops; it may set EXTRA_JSON
# (',"key":value,...') that record() appends to the case's line.
POST_CASE=""
EXTRA_JSON=""
SERVER_DIR=""
# start_server KIND → SERVER_PID, PROBE_PID (the process whose CPU counts: nginx's worker, else
# SERVER_PID), SERVER_URL, STATS_URL ("" unless s2). Returns non-zero on failure.
start_server() {
  local kind="$1" dir port
  dir="$(mktemp -d "$TMP/$kind.XXXX")"
  SERVER_DIR="$dir"
  port="$(free_port)"
  SERVER_URL="http://127.0.0.1:$port"
  STATS_URL=""
  case "$kind" in
    embedded)
      "$DSTREAMD" --listen "127.0.0.1:$port" --data-dir "$dir/data" --log-level warn \
        --long-poll-timeout "${LONG_POLL_MS}ms" --sse-max-duration "$SSE_MAX" "${DS_ARGS[@]}" >"$dir/server.log" 2>&1 &
      ;;
    embedded-nofsync)  # the server's own latency, without the disk's fsync
      "$DSTREAMD" --listen "127.0.0.1:$port" --data-dir "$dir/data" --log-level warn --fsync=false \
        --long-poll-timeout "${LONG_POLL_MS}ms" --sse-max-duration "$SSE_MAX" "${DS_ARGS[@]}" >"$dir/server.log" 2>&1 &
      ;;
    s2)
      node "$REPO/s2emu/src/main.js" --port 0 --basin bench-basin >"$dir/emu.out" 2>&1 &
      PIDS+=($!)
      local emu_url=""
      for _ in $(seq 1 100); do
        emu_url="$(sed -n 's/^S2EMU_URL=//p' "$dir/emu.out")"
        [[ -n "$emu_url" ]] && break
        sleep 0.1
      done
      [[ -z "$emu_url" ]] && { log "the S2 emulator did not start"; cat "$dir/emu.out" >&2; return 1; }
      STATS_URL="$emu_url/_emu/stats"
      "$DSTREAMD" --storage s2 --s2-endpoint "$emu_url" --s2-basin bench-basin \
        --listen "127.0.0.1:$port" --log-level warn --long-poll-timeout "${LONG_POLL_MS}ms" \
        --sse-max-duration "$SSE_MAX" "${DS_ARGS[@]}" >"$dir/server.log" 2>&1 &
      ;;
    ref-mem)
      node "$REPO/test/conformance/reference-server.mjs" --port "$port" \
        --long-poll-timeout-ms "$LONG_POLL_MS" >"$dir/server.log" 2>&1 &
      ;;
    ref-file)
      node "$REPO/test/conformance/reference-server.mjs" --port "$port" --data-dir "$dir/data" \
        --long-poll-timeout-ms "$LONG_POLL_MS" >"$dir/server.log" 2>&1 &
      ;;
    nginx)
      nginx_conf "$dir" "$port" >"$dir/nginx.conf"
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/server.log" 2>&1 &
      ;;
    *) log "unknown server $kind"; return 1 ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  if ! node "$REPO/test/conformance/wait-ready.mjs" "$SERVER_URL/v1/stream/__bench_probe__" 20000 \
    "$SERVER_PID" >/dev/null 2>&1; then
    log "$kind did not become ready:"
    tail -n 20 "$dir/server.log" >&2
    [[ -f "$dir/error.log" ]] && tail -n 20 "$dir/error.log" >&2
    return 1
  fi
  PROBE_PID="$SERVER_PID"
  if [[ "$kind" == nginx ]]; then
    PROBE_PID="$(pgrep -P "$SERVER_PID" | head -n 1)"
    [[ -n "$PROBE_PID" ]] || { log "nginx has no worker process"; return 1; }
  fi
  # Every thread it has now; threads it starts later inherit the mask.
  ((PIN)) && taskset -a -p -c "$PIN_SERVER_CPU" "$PROBE_PID" >/dev/null
  return 0
}

FAILED=0
# The disk's own floor for a durable append: fdatasync of a 100-byte append, in the directory
# the servers' data dirs live in.
fsync_floor() {
  local n=500
  ((SMOKE)) && n=50
  node -e '
    const fs = require("fs"), path = require("path");
    const f = path.join(process.argv[1], "fsync-floor"), fd = fs.openSync(f, "a"), t = [];
    const b = Buffer.alloc(100, 120);
    for (let i = 0; i < Number(process.argv[2]); i++) {
      fs.writeSync(fd, b);
      const s = process.hrtime.bigint();
      fs.fdatasyncSync(fd);
      t.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    fs.closeSync(fd);
    fs.unlinkSync(f);
    t.sort((a, b) => a - b);
    const q = (p) => t[Math.min(t.length - 1, Math.floor(p * t.length))].toFixed(0);
    console.log(`{"case":"fsync-floor","server":"disk","fdatasync_p50_us":${q(0.5)},"fdatasync_p99_us":${q(0.99)}}`);
  ' "$TMP" "$n"
}
fsync_floor >>"$OUT" || log "could not measure the fsync floor"
# record CASE SERVER NOTE JSON-or-empty ERROR
record() {
  local case="$1" server="$2" note="$3" json="$4" err="$5" head
  head="\"case\":\"$case\",\"server\":\"$server\""
  # How busy the machine was (others build on it): the 1-minute load average when recorded.
  head="$head,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  [[ -n "$note" ]] && head="$head,\"note\":\"$note\""
  if [[ -n "$json" ]]; then
    json="${json%\}}$EXTRA_JSON}"
    EXTRA_JSON=""
    echo "{$head,${json#\{}" >>"$OUT"
  else
    err="${err//\\/\\\\}"
    err="${err//\"/\\\"}"
    echo "{$head,\"error\":\"$err\"}" >>"$OUT"
  fi
}

# run_case CASE SERVER NOTE TIMEOUT_S LOADGEN-ARGS... → 0 if ds-loadgen succeeded
run_case() {
  local case="$1" server="$2" note="$3" limit="$4"
  shift 4
  if ! start_server "$server"; then
    record "$case" "$server" "$note" "" "server did not start"
    FAILED=$((FAILED + 1))
    stop_servers
    return 1
  fi
  local extra=()
  [[ -n "$STATS_URL" ]] && extra=(--s2-stats "$STATS_URL")
  local t0=$SECONDS out rc pin=()
  ((PIN)) && pin=(taskset -c "$PIN_LOADGEN_CPU")
  EXTRA_JSON=""
  out="$(timeout --kill-after=5 "$limit" "${pin[@]}" "$LOADGEN" --url "$SERVER_URL" --server-pid "$PROBE_PID" \
    --label "$server" --json "${extra[@]}" "$@" 2>"$TMP/loadgen.err")"
  rc=$?
  [[ $rc -eq 0 && -n "$POST_CASE" ]] && "$POST_CASE"
  stop_servers
  if [[ $rc -eq 0 && "$out" == \{* ]]; then
    record "$case" "$server" "$note" "$out" ""
    log "$case on $server: ok ($((SECONDS - t0)) s)"
    return 0
  fi
  local err
  err="$(tail -n 3 "$TMP/loadgen.err" | tr '\n' ' ')"
  [[ $rc -eq 124 ]] && err="timed out after ${limit}s; $err"
  record "$case" "$server" "$note" "" "exit $rc: $err"
  log "$case on $server: FAILED (exit $rc): $err"
  return 1
}

want_case() { [[ -z "$ONLY" || " $ONLY " == *" $1 "* ]]; }

# fanout_floor CASE FOR-CASE ARGS...: the machine's floor for an SSE fan-out case (same readers,
# rate and body), recorded as CASE on server "floor". Never fails the run: a missing floor is
# "n/a" in the report.
fanout_floor() {
  local case="$1" for_case="$2" out t0=$SECONDS
  shift 2
  want_case "$case" || want_case "$for_case" || return 0
  if out="$(timeout --kill-after=5 120 "$FLOOR_FANOUT" --json "$@" 2>"$TMP/floor.err")" && [[ "$out" == \{* ]]; then
    record "$case" floor "" "$out" ""
    log "$case: ok ($((SECONDS - t0)) s)"
  else
    log "$case: could not measure: $(tail -n 2 "$TMP/floor.err" | tr '\n' ' ')"
  fi
}
if ((SMOKE)); then
  fanout_floor fanout-floor-1k sse-fanout-1k --readers 50 --rate 20 --body-bytes 100 --duration 1
  fanout_floor fanout-floor-10k sse-fanout-10k --readers 200 --rate 10 --body-bytes 100 --duration 1
else
  fanout_floor fanout-floor-1k sse-fanout-1k --readers 1000 --rate 50 --body-bytes 100 --duration 10
  fanout_floor fanout-floor-10k sse-fanout-10k --readers 10000 --rate 10 --body-bytes 100 --duration 10
fi

# case CASE SERVER [NOTE] -- LOADGEN-ARGS...: a failure counts against the smoke run; in the
# full run it is recorded in the results (and the table) and the run goes on.
bench_case() {
  local case="$1" server="$2" note="" limit
  shift 2
  if [[ "$1" != "--" ]]; then note="$1"; shift; fi
  shift
  want_case "$case" || return 0
  if ((SMOKE)); then limit=60; else limit="${CASE_LIMIT:-300}"; fi
  if ! run_case "$case" "$server" "$note" "$limit" "$@"; then
    ((SMOKE)) && FAILED=$((FAILED + 1))
    return 1
  fi
}

for server in $SERVERS; do
  log "=== $server"
  if [[ "$server" == nginx ]]; then
    # A floor, not a Durable Streams server: only the append cases, with the same arguments.
    nv="$(nginx -v 2>&1 | sed -n 's/^nginx version: //p')"
    if ((SMOKE)); then
      bench_case append-saturated "$server" "${nv:-nginx}" -- --scenario append --writers 8 --streams 10 --body-bytes 100 --duration 1
    else
      bench_case append-saturated "$server" "${nv:-nginx}" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --duration 10
      bench_case append-rate "$server" "${nv:-nginx}" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --rate 2000 --duration 10
    fi
    continue
  fi
  if ((SMOKE)); then
    bench_case append-saturated "$server" -- --scenario append --writers 8 --streams 10 --body-bytes 100 --duration 1
    bench_case append-rate "$server" -- --scenario append --writers 8 --streams 10 --body-bytes 100 --rate 200 --duration 1
    bench_case sse-fanout-1k "$server" -- --scenario sse-fanout --readers 50 --rate 20 --body-bytes 100 --duration 3 --grace 5
    bench_case sse-fanout-10k "$server" -- --scenario sse-fanout --readers 200 --rate 10 --body-bytes 100 --duration 1 --grace 5
    bench_case longpoll-fanout "$server" -- --scenario longpoll-fanout --readers 50 --rate 20 --body-bytes 100 --duration 2 --grace 5
    bench_case roundtrip-sse "$server" -- --scenario roundtrip --mode sse --count 100
    bench_case roundtrip-longpoll "$server" -- --scenario roundtrip --mode long-poll --count 100
    bench_case catchup-1 "$server" -- --scenario catchup --size-mb 4 --readers 1 --duration 1
    bench_case catchup-4 "$server" -- --scenario catchup --size-mb 4 --readers 4 --duration 1
    bench_case idle-sse "$server" -- --scenario idle --mode sse --connections 200 --streams 10 --duration 0.5
    bench_case idle-longpoll "$server" -- --scenario idle --mode long-poll --connections 200 --streams 10 --duration 0.5
    bench_case many-streams "$server" -- --scenario many-streams --streams 500 --body-bytes 100
    continue
  fi
  D=10
  if [[ "$server" == embedded-nofsync ]]; then
    # Only where the disk's fsync dominates: appends, fan-out latency, round trips.
    bench_case append-saturated "$server" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --duration $D
    bench_case append-rate "$server" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --rate 2000 --duration $D
    bench_case sse-fanout-1k "$server" -- --scenario sse-fanout --readers 1000 --rate 50 --body-bytes 100 --duration $D
    bench_case roundtrip-sse "$server" -- --scenario roundtrip --mode sse --count 2000
    bench_case roundtrip-longpoll "$server" -- --scenario roundtrip --mode long-poll --count 2000
    continue
  fi
  bench_case append-saturated "$server" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --duration $D
  bench_case append-rate "$server" -- --scenario append --writers 64 --streams 100 --body-bytes 100 --rate 2000 --duration $D
  if [[ "$server" == s2 ]]; then
    # Emulator requests per node should not grow with readers: 10 vs 1000 readers, same writer.
    bench_case sse-fanout-10 "$server" -- --scenario sse-fanout --readers 10 --rate 50 --body-bytes 100 --duration $D
  fi
  bench_case sse-fanout-1k "$server" -- --scenario sse-fanout --readers 1000 --rate 50 --body-bytes 100 --duration $D
  if [[ "$server" == embedded || "$server" == ref-mem ]]; then
    # Issue #12's latency target: the server and ds-loadgen on different CPUs.
    pinned_case sse-fanout-1k-pinned "$server" -- --scenario sse-fanout --readers 1000 --rate 50 --body-bytes 100 --duration $D
  fi
  bench_case sse-fanout-10k "$server" -- --scenario sse-fanout --readers 10000 --rate 10 --body-bytes 100 --duration $D
  bench_case longpoll-fanout "$server" -- --scenario longpoll-fanout --readers 1000 --rate 50 --body-bytes 100 --duration $D
  bench_case roundtrip-sse "$server" -- --scenario roundtrip --mode sse --count 2000
  bench_case roundtrip-longpoll "$server" -- --scenario roundtrip --mode long-poll --count 2000
  bench_case catchup-1 "$server" -- --scenario catchup --size-mb 64 --readers 1 --duration $D
  bench_case catchup-4 "$server" -- --scenario catchup --size-mb 64 --readers 4 --duration $D
  for mode in sse long-poll; do
    c="idle-${mode/-/}"
    # dstreamd's default --max-connections keeps an eighth of the fd limit in reserve (17,500
    # of this machine's 20,000), which would answer the last readers 503.
    DS_ARGS=(--max-connections 19500)
    if ! bench_case "$c" "$server" -- --scenario idle --mode $mode --connections 19000 --streams 100 --duration 3; then
      bench_case "$c" "$server" "19000 failed; 2000 connections" -- \
        --scenario idle --mode $mode --connections 2000 --streams 100 --duration 3
    fi
    DS_ARGS=()
  done
  if [[ "$server" == embedded || "$server" == ref-mem ]]; then
    bench_case many-streams "$server" -- --scenario many-streams --streams 100000 --body-bytes 100
  else  # S2 streams cost emulator round trips; the file-backed reference is slow to create
    bench_case many-streams "$server" "20000 streams (100000 would take minutes)" -- \
      --scenario many-streams --streams 20000 --body-bytes 100
  fi
done

# ------------------------------------------------------------------ storage targets (issue #11)
# Server on CPU 0, ds-loadgen on CPU 1; dstreamd_store_* from /metrics with every result.
# POST_CASE of streams-1m: the data dir's size and files, and VmRSS, while the server still runs.
data_dir_stats() {
  local d="$SERVER_DIR/data"
  EXTRA_JSON=",\"data_dir_bytes\":$(du -sb "$d" | cut -f1),\"data_dir_files\":$(find "$d" -type f | wc -l)"
  EXTRA_JSON+=",\"server_vmrss_kb\":$(awk '/^VmRSS:/{print $2}' "/proc/$PROBE_PID/status")"
}
metric() {  # metric URL NAME → the sample's value ("null" if absent)
  local v
  v="$(curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2; exit }')"
  echo "${v:-null}"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# start_dstreamd DIR PORT [FLAGS...]: dstreamd on DIR/data, pinned to CPU 0, started at START_MS;
# sets SERVER_PID and READY_MS (ms from the exec to the first /ready 200; polled every 5 ms).
start_dstreamd() {
  local dir="$1" port="$2" code
  shift 2
  START_MS="$(now_ms)"
  taskset -c "$PIN_SERVER_CPU" "$DSTREAMD" --listen "127.0.0.1:$port" --data-dir "$dir/data" \
    --log-level warn "$@" >>"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  READY_MS=""
  for _ in $(seq 1 24000); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready" 2>/dev/null)"
    [[ "$code" == 200 ]] && { READY_MS=$(($(now_ms) - START_MS)); return 0; }
    kill -0 "$SERVER_PID" 2>/dev/null || { log "dstreamd exited during start"; tail -n 5 "$dir/server.log" >&2; return 1; }
    sleep 0.005
  done
  log "dstreamd not ready after 120 s"
  return 1
}
stop_dstreamd() {  # stop_dstreamd SIGNAL: sets STOP_MS
  local t0
  t0="$(now_ms)"
  kill -"$1" "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  STOP_MS=$(($(now_ms) - t0))
  PIDS=()
}
# restart-1g: fill ~1 GiB of log (FILL_APPENDS appends of 1 KiB over 1000 streams, 64 writers,
# --fsync=false: what is measured is the restart, not durability), SIGTERM, time to /ready; then
# durable appends up to ~95 % of a checkpoint interval of WAL (64 MiB), SIGKILL, time to /ready
# again (recovery replays the WAL since the last checkpoint). Then the bound itself: the same
# with --checkpoint-wal-bytes 4GiB (no checkpoint) and BIG_APPENDS more appends, SIGKILL, restart
# with the default, so the replay is that whole WAL. Also a fresh start's time.
restart_case() {
  local case=restart-1g fill_appends="$1" big_appends="$2" t0=$SECONDS
  want_case "$case" || return 0
  local dir port url fill tail big j
  dir="$(mktemp -d "$TMP/restart.XXXX")"
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  fail() { record "$case" embedded "" "" "$1"; log "$case: FAILED: $1"; stop_servers; FAILED=$((FAILED + 1)); }
  appends() {  # appends N [more loadgen flags]: 1 KiB appends over 1000 streams, pinned
    local n="$1"
    shift
    taskset -c "$PIN_LOADGEN_CPU" "$LOADGEN" --url "$url" --server-pid "$SERVER_PID" --json --store-metrics \
      --scenario append --writers 64 --streams 1000 --body-bytes 1024 --appends "$n" "$@" 2>"$TMP/loadgen.err"
  }
  start_dstreamd "$dir" "$port" || { fail "empty start failed"; return 1; }
  local ready_empty=$READY_MS
  stop_dstreamd TERM
  start_dstreamd "$dir" "$port" --fsync=false || { fail "start failed"; return 1; }
  fill="$(appends "$fill_appends")" || { fail "fill: $(tail -n 2 "$TMP/loadgen.err" | tr '\n' ' ')"; return 1; }
  local wal_term log_bytes files ckpt
  wal_term="$(metric "$url" dstreamd_store_wal_bytes)"
  ckpt="$(metric "$url" dstreamd_store_checkpoints_total)"
  log_bytes="$(du -sb "$dir/data" | cut -f1)"
  files="$(find "$dir/data" -type f | wc -l)"
  stop_dstreamd TERM
  local stop_term=$STOP_MS
  start_dstreamd "$dir" "$port" || { fail "restart after SIGTERM failed"; return 1; }
  local ready_term=$READY_MS rec_term rss_term wal_after per tail_appends
  rec_term="$(metric "$url" dstreamd_store_recovery_duration_seconds)"
  rss_term="$(awk '/^VmRSS:/{print $2}' "/proc/$SERVER_PID/status")"
  wal_after="$(metric "$url" dstreamd_store_wal_bytes)"
  [[ "$wal_after" == null ]] && wal_after=0
  # WAL bytes per 1 KiB append, from the fill; enough appends to reach ~95 % of 64 MiB.
  per="$(node -e 'const f=JSON.parse(process.argv[1]);console.log(Math.ceil(f.store_delta.written_bytes_total/f.appends))' "$fill")"
  tail_appends=$(((67108864 * 95 / 100 - ${wal_after%.*}) / per))
  ((tail_appends < 1)) && tail_appends=1
  tail="$(appends "$tail_appends")" || { fail "tail appends: $(tail -n 2 "$TMP/loadgen.err" | tr '\n' ' ')"; return 1; }
  local wal_kill
  wal_kill="$(metric "$url" dstreamd_store_wal_bytes)"
  stop_dstreamd KILL
  start_dstreamd "$dir" "$port" || { fail "restart after SIGKILL failed"; return 1; }
  local ready_kill=$READY_MS rec_kill rss_kill
  rec_kill="$(metric "$url" dstreamd_store_recovery_duration_seconds)"
  rss_kill="$(awk '/^VmRSS:/{print $2}' "/proc/$SERVER_PID/status")"
  stop_dstreamd TERM
  # Without checkpoints: what the interval bounds.
  start_dstreamd "$dir" "$port" --fsync=false --checkpoint-wal-bytes 4294967296 || { fail "start without checkpoints failed"; return 1; }
  big="$(appends "$big_appends")" || { fail "appends without checkpoints: $(tail -n 2 "$TMP/loadgen.err" | tr '\n' ' ')"; return 1; }
  local wal_big
  wal_big="$(metric "$url" dstreamd_store_wal_bytes)"
  stop_dstreamd KILL
  start_dstreamd "$dir" "$port" || { fail "restart after SIGKILL without checkpoints failed"; return 1; }
  local ready_big=$READY_MS rec_big rss_big
  rec_big="$(metric "$url" dstreamd_store_recovery_duration_seconds)"
  rss_big="$(awk '/^VmRSS:/{print $2}' "/proc/$SERVER_PID/status")"
  stop_dstreamd TERM
  j="{\"fill_appends\":$fill_appends,\"body_bytes\":1024,\"streams\":1000,\"log_bytes\":$log_bytes,\"data_dir_files\":$files"
  j+=",\"checkpoints_after_fill\":$ckpt,\"ready_ms_empty\":$ready_empty"
  j+=",\"wal_bytes_at_sigterm\":$wal_term,\"stop_ms_sigterm\":$stop_term,\"ready_ms_after_sigterm\":$ready_term"
  j+=",\"recovery_s_after_sigterm\":$rec_term,\"rss_kb_after_sigterm\":$rss_term,\"wal_bytes_after_restart\":$wal_after"
  j+=",\"tail_appends\":$tail_appends,\"wal_bytes_at_sigkill\":$wal_kill,\"ready_ms_after_sigkill\":$ready_kill"
  j+=",\"recovery_s_after_sigkill\":$rec_kill,\"rss_kb_after_sigkill\":$rss_kill"
  j+=",\"big_appends\":$big_appends,\"wal_bytes_at_sigkill_nockpt\":$wal_big,\"ready_ms_after_sigkill_nockpt\":$ready_big"
  j+=",\"recovery_s_after_sigkill_nockpt\":$rec_big,\"rss_kb_after_sigkill_nockpt\":$rss_big"
  j+=",\"fill\":$fill,\"tail\":$tail,\"big\":$big}"
  record "$case" embedded "" "$j" ""
  log "$case: ok ($((SECONDS - t0)) s)"
}

if [[ " $SERVERS " == *" embedded "* || " $SERVERS " == *" ref-mem "* ]]; then
  log "=== storage targets (issue #11)"
  if ((SMOKE)); then CU=(--size-mb 4 --duration 1); else CU=(--size-mb 128 --duration 10); fi
  # The machine's floor for catch-up: bare sendfile of the same bytes over loopback, 1 MiB at a
  # time (dstreamd's response size), streamed and one chunk per request (bench/floor_sendfile.py).
  if { want_case catchup-floor || want_case catchup-1k-1 || want_case catchup-1k-4; } && command -v python3 >/dev/null; then
    t0=$SECONDS
    if fl="$(timeout 120 python3 "$HERE/floor_sendfile.py" "${CU[@]}" --chunk-mb 1 --dir "$TMP" \
      --sender-cpu "$PIN_SERVER_CPU" --reader-cpu "$PIN_LOADGEN_CPU" 2>"$TMP/floor.err")"; then
      while read -r line; do
        m="$(sed -n 's/.*"mode": "\([a-z]*\)".*/\1/p' <<<"$line")"
        record "catchup-floor-$m" floor "" "$line" ""
      done <<<"$fl"
      log "catchup-floor: ok ($((SECONDS - t0)) s)"
    else
      log "catchup-floor: could not measure: $(tail -n 2 "$TMP/floor.err" | tr '\n' ' ')"
    fi
  fi
  for server in embedded ref-mem; do
    [[ " $SERVERS " == *" $server "* ]] || continue
    for k in 1 4; do
      pinned_case "catchup-1k-$k" "$server" -- --scenario catchup "${CU[@]}" --append-bytes 1024 \
        --fill-concurrency 64 --readers "$k" --store-metrics
    done
  done
  if [[ " $SERVERS " == *" embedded "* ]]; then
    if ((SMOKE)); then
      AP=(--writers 16 --body-bytes 1024 --rate 1000 --duration 1)
      pinned_case append-100-streams embedded -- --scenario append --streams 100 "${AP[@]}" --store-metrics
      pinned_case append-100k-streams embedded "10000 streams (smoke)" -- --scenario append --streams 10000 "${AP[@]}" --store-metrics
    else
      # Same writers, rate, body and duration; the streams are created before the measured phase.
      AP=(--writers 64 --body-bytes 1024 --rate 5000 --warmup 2 --duration 30)
      pinned_case append-100-streams embedded -- --scenario append --streams 100 "${AP[@]}" --store-metrics
      pinned_case append-100k-streams embedded -- --scenario append --streams 100000 "${AP[@]}" --store-metrics
      # --fsync=false: what is measured is memory and files, not durability.
      POST_CASE=data_dir_stats CASE_LIMIT=900 pinned_case streams-1m embedded-nofsync -- \
        --scenario many-streams --streams 1000000 --body-bytes 100 --concurrency 256 --store-metrics
      POST_CASE=""
      restart_case 1048576 524288
    fi
  fi
fi

log "results: $OUT ($(wc -l <"$OUT") lines), $((SECONDS - T_START)) s"
if ((S2_SCALE)); then
  s2_args=()
  ((SMOKE)) && s2_args=(--smoke)
  BUILD_DIR="$BUILD_DIR" "$HERE/s2-scale.sh" "${s2_args[@]}" || { log "bench/s2-scale.sh failed"; S2_FAILED=1; FAILED=$((FAILED + 1)); }
fi
if ((SMOKE)); then
  node "$HERE/report.mjs" --summary "$OUT" || FAILED=$((FAILED + 1))
  if ((FAILED)); then log "smoke: $FAILED case(s) failed"; exit 1; fi
  log "smoke: ok"
  exit 0
fi
# Other work on the machine moves every figure (the floors too, which is why they are measured
# in the same run): say how busy it was.
node "$HERE/report.mjs" --out "$DOC" --command "$ARGS_TEXT" --build "$BUILD_DESC" \
  --note "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
  --seconds "$((SECONDS - T_START))" "$OUT" || exit 1
log "wrote $DOC"
((S2_FAILED)) && exit 1
exit 0
