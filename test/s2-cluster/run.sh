#!/usr/bin/env bash
# Integration tests of dstreamd's S2 storage engine (see README.md in this directory).
#
#   1. conformance on S2: the emulator + one dstreamd --storage s2, test/conformance/run.sh --base-url
#   2. scale-out: three dstreamd over ONE emulator basin behind nginx (round-robin per request),
#      the same conformance suite through nginx
#   3-8. node:test files (*.test.mjs): exactly-once, live hub, failures, scale, kill -9, start-up,
#      and start-up (startup.test.mjs: bad S2 flags exit, /ready waits for the basin), retention
#
# Usage: test/s2-cluster/run.sh [--only conformance|nginx|node] [extra node --test args]
# Env:   DSTREAMD_BIN (default build/dstreamd), NGINX_BIN (default /usr/sbin/nginx),
#        S2_CLUSTER_TIMEOUT_S (hard cap per part, default 240).
# Prints a closing line `N passed, N failed` (conformance tests + node tests); exits non-zero on
# any failure.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export DSTREAMD_BIN="${DSTREAMD_BIN:-$REPO/build/dstreamd}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
PART_TIMEOUT_S="${S2_CLUSTER_TIMEOUT_S:-240}"
BASIN="s2cluster-basin"
LONG_POLL_MS=500

ONLY=""
NODE_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) ONLY="${2:?--only needs a value}"; shift 2 ;;
    --only=*) ONLY="${1#*=}"; shift ;;
    *) NODE_ARGS+=("$1"); shift ;;
  esac
done
want() { [[ -z "$ONLY" || "$ONLY" == "$1" ]]; }

if [[ ! -x "$DSTREAMD_BIN" ]]; then
  echo "s2-cluster: dstreamd binary not found or not executable: $DSTREAMD_BIN" >&2
  exit 2
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dstreamd-s2-cluster.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "s2-cluster: logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops the processes started so far (between parts); PIDS is emptied.
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_emulator DIR → sets EMU_URL
start_emulator() {
  local dir="$1"
  mkdir -p "$dir"
  node "$REPO/s2emu/src/main.js" --port 0 --basin "$BASIN" --ping-interval-ms 1000 >"$dir/emu.out" 2>&1 &
  PIDS+=($!)
  local pid=$!
  EMU_URL=""
  for _ in $(seq 1 100); do
    EMU_URL="$(sed -n 's/^S2EMU_URL=//p' "$dir/emu.out")"
    [[ -n "$EMU_URL" ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "s2-cluster: the emulator did not start:" >&2
  cat "$dir/emu.out" >&2
  return 1
}

# Subscriptions on S2 need one signing key on every node.
SIGNING_KEY="$TMP/webhook-signing-key.pem"
openssl genpkey -algorithm ed25519 -out "$SIGNING_KEY" 2>/dev/null || {
  echo "s2-cluster: openssl could not make an Ed25519 key" >&2
  exit 2
}

# start_node DIR NAME → sets NODE_URL
start_node() {
  local dir="$1" name="$2" port
  port="$(free_port)"
  "$DSTREAMD_BIN" --storage s2 --s2-endpoint "$EMU_URL" --s2-basin "$BASIN" \
    --listen "127.0.0.1:$port" --long-poll-timeout "${LONG_POLL_MS}ms" \
    --webhook-signing-key "$SIGNING_KEY" --webhook-allow-localhost true >"$dir/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  NODE_URL="http://127.0.0.1:$port"
  if ! node "$REPO/test/conformance/wait-ready.mjs" "$NODE_URL/v1/stream/__s2_cluster_probe__" 20000 "$pid"; then
    echo "s2-cluster: dstreamd $name did not become ready; its log:" >&2
    tail -n 30 "$dir/$name.log" >&2
    return 1
  fi
}

TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()
record() { # part pass fail
  TOTAL_PASS=$((TOTAL_PASS + $2))
  TOTAL_FAIL=$((TOTAL_FAIL + $3))
  SUMMARY+=("$1: $2 passed, $3 failed")
}

# run_conformance LABEL URL OUTFILE [SUBSCRIPTIONS(1|0)]
run_conformance() {
  local label="$1" url="$2" out="$3" subs="${4:-1}" rc p f
  CONFORMANCE_LONG_POLL_MS="$LONG_POLL_MS" CONFORMANCE_TIMEOUT_S="$PART_TIMEOUT_S" \
    CONFORMANCE_SUBSCRIPTIONS="$subs" \
    "$REPO/test/conformance/run.sh" --base-url "$url" >"$out" 2>&1
  rc=$?
  p="$(sed -n 's/^conformance: \([0-9]*\) passed.*/\1/p' "$out" | tail -n 1)"
  f="$(sed -n 's/^conformance: [0-9]* passed, \([0-9]*\) failed.*/\1/p' "$out" | tail -n 1)"
  p="${p:-0}"
  f="${f:-0}"
  if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi # no test result (setup failure, cap hit): one failure
  echo "s2-cluster: $label: $(grep -E '^ +Tests +' "$out" | tail -n 1 | sed 's/^ *//') (exit $rc)"
  if [[ $rc -ne 0 ]]; then
    echo "s2-cluster: $label: failing tests:"
    grep -E '^ +(×|FAIL) ' "$out" | sed 's/^ */    /' | sort -u | head -n 60
  fi
  record "$label" "$p" "$f"
}

T0=$(date +%s)

# ---------------------------------------------------------------- 1. conformance on S2, one node
if want conformance; then
  echo "s2-cluster: part 1: conformance on S2 (one node)"
  D="$TMP/part1"
  mkdir -p "$D"
  if start_emulator "$D" && start_node "$D" node1; then
    echo "s2-cluster: emulator $EMU_URL, node $NODE_URL"
    run_conformance "conformance (one node on S2)" "$NODE_URL" "$D/conformance.out"
  else
    record "conformance (one node on S2)" 0 1
  fi
  [[ -n "${VERBOSE:-}" ]] && cat "$D/conformance.out"
  stop_all
fi

# ---------------------------------------------------------------- 2. three nodes behind nginx
if want nginx; then
  echo "s2-cluster: part 2: conformance through nginx over three nodes on one basin"
  D="$TMP/part2"
  mkdir -p "$D/nginx/logs" "$D/nginx/tmp"
  NODES=()
  ok=1
  if start_emulator "$D"; then
    for n in 1 2 3; do
      if start_node "$D" "node$n"; then NODES+=("${NODE_URL#http://}"); else ok=0; break; fi
    done
  else
    ok=0
  fi
  if [[ $ok -eq 1 && ! -x "$NGINX_BIN" ]]; then
    echo "s2-cluster: nginx not found at $NGINX_BIN (apt-get install nginx-light)" >&2
    ok=0
  fi
  if [[ $ok -eq 1 ]]; then
    NGX_PORT="$(free_port)"
    NX="$D/nginx"
    {
      echo "worker_processes 1;"
      echo "pid $NX/nginx.pid;"
      echo "error_log $NX/logs/error.log warn;"
      echo "events { worker_connections 4096; }"
      echo "http {"
      echo "  log_format up '\$request_method \$request_uri \$status -> \$upstream_addr \$upstream_status';"
      echo "  access_log $NX/logs/access.log up;"
      echo "  client_body_temp_path $NX/tmp/body;"
      echo "  proxy_temp_path $NX/tmp/proxy;"
      echo "  fastcgi_temp_path $NX/tmp/fastcgi;"
      echo "  uwsgi_temp_path $NX/tmp/uwsgi;"
      echo "  scgi_temp_path $NX/tmp/scgi;"
      echo "  upstream dstreamd {"
      for a in "${NODES[@]}"; do echo "    server $a;"; done
      echo "    keepalive 64;"
      echo "  }"
      echo "  server {"
      echo "    listen 127.0.0.1:$NGX_PORT;"
      echo "    client_max_body_size 0;"
      echo "    location / {"
      echo "      proxy_pass http://dstreamd;"
      echo "      proxy_http_version 1.1;"
      echo "      proxy_set_header Connection \"\";"
      echo "      proxy_set_header Host \$http_host;"
      echo "      proxy_buffering off;"
      echo "      proxy_request_buffering off;"
      echo "      proxy_cache off;"
      echo "      proxy_read_timeout 600s;"
      echo "      proxy_send_timeout 600s;"
      echo "    }"
      echo "  }"
      echo "}"
    } >"$NX/nginx.conf"
    "$NGINX_BIN" -p "$NX" -c "$NX/nginx.conf" -g 'daemon off;' >"$NX/logs/stdout.log" 2>&1 &
    PIDS+=($!)
    if ! node "$REPO/test/conformance/wait-ready.mjs" "http://127.0.0.1:$NGX_PORT/v1/stream/__s2_cluster_probe__" 10000 "$!"; then
      echo "s2-cluster: nginx did not start:" >&2
      cat "$NX/logs/error.log" "$NX/logs/stdout.log" >&2
      ok=0
    fi
  fi
  if [[ $ok -eq 1 ]]; then
    echo "s2-cluster: emulator $EMU_URL, nodes ${NODES[*]}, nginx 127.0.0.1:$NGX_PORT"
    # Subscriptions included: a subscription made through one node wakes on
    # writes through the others (each node's sweep, once a second).
    run_conformance "conformance (3 nodes behind nginx)" "http://127.0.0.1:$NGX_PORT" "$D/conformance.out" 1
    # Evidence that requests were spread over the three nodes.
    for a in "${NODES[@]}"; do
      echo "s2-cluster:   requests proxied to $a: $(grep -c -- "-> $a" "$NX/logs/access.log")"
    done
  else
    record "conformance (3 nodes behind nginx)" 0 1
  fi
  [[ -n "${VERBOSE:-}" ]] && cat "$D/conformance.out"
  stop_all
fi

# ---------------------------------------------------------------- 3-5. node:test files
if want node; then
  echo "s2-cluster: parts 3-5: node:test files"
  OUT="$TMP/node-tests.out"
  FILES=()
  [[ ${#NODE_ARGS[@]} -eq 0 || "${NODE_ARGS[*]}" != *.mjs* ]] && FILES=("$HERE"/*.test.mjs)
  (cd "$HERE" && timeout --kill-after=10 "$PART_TIMEOUT_S" node --test --test-concurrency=1 \
    --test-reporter=spec "${NODE_ARGS[@]}" "${FILES[@]}") 2>&1 | tee "$OUT"
  rc=${PIPESTATUS[0]}
  [[ $rc -eq 124 ]] && echo "s2-cluster: node tests hit the ${PART_TIMEOUT_S}s cap" >&2
  count() { grep -E "^ℹ $1 [0-9]+" "$OUT" | tail -n 1 | grep -oE '[0-9]+' || echo 0; }
  p="$(count pass)"
  f=$(($(count fail) + $(count cancelled)))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
  record "node tests (exactly-once, live hub, failures, start-up)" "$p" "$f"
fi

echo
echo "s2-cluster: summary ($(($(date +%s) - T0)) s)"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[[ $TOTAL_FAIL -eq 0 && ${#SUMMARY[@]} -gt 0 ]]
