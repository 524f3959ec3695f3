#!/usr/bin/env bash
# What retention costs appends (issue #15): the saturated append case (64 writers, 100 streams,
# 100 B appends, --fsync=false so the disk does not hide the CPU cost) against dstreamd without
# retention and with every stream under retention that trims on every maintenance pass
# (--retention-max-bytes 4096 and --retention-max-age 2s: each stream takes more than 4 KiB a
# second), alternating runs, ROUNDS each. The retention run's
# dstreamd_store_retention_trimmed_bytes_total is printed, to show that trimming did happen.
# Prints appends/s per run and the median ratio; the target is a cost below 5%.
#
#   bench/retention.sh [ROUNDS]        (default 5)
# Env: BUILD_DIR (default build; needs dstreamd and bench/ds-loadgen), DURATION (s, default 10).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="${BUILD_DIR:-$HERE/../build}"
ROUNDS="${1:-5}"
DURATION="${DURATION:-10}"
TMP="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
PID=""

run() {  # run LABEL [DSTREAMD FLAGS...] -> appends/s
  local label="$1"; shift
  local port=$((20000 + RANDOM % 20000))
  rm -rf "$TMP/data"
  taskset -c 0 "$BUILD/dstreamd" --listen "127.0.0.1:$port" --data-dir "$TMP/data" --log-level warn \
    --fsync=false "$@" >"$TMP/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  local out
  out="$(taskset -c 1 "$BUILD/bench/ds-loadgen" --url "http://127.0.0.1:$port" --server-pid "$PID" \
    --label "$label" --json --scenario append --writers 64 --streams 100 --body-bytes 100 \
    --duration "$DURATION")"
  curl -fs "http://127.0.0.1:$port/metrics" | grep '^dstreamd_store_retention_trimmed_bytes_total' >&2 || true
  kill "$PID"; wait "$PID" 2>/dev/null || true
  python3 -c '
import json, sys
def find(o):
    if isinstance(o, dict):
        if "appends_per_s" in o: return o["appends_per_s"]
        for v in o.values():
            r = find(v)
            if r is not None: return r
    return None
print(find(json.loads(sys.argv[1])))' "$out"
}

declare -a base with
for r in $(seq "$ROUNDS"); do
  b="$(run none)"; w="$(run retention --retention-max-bytes 4096 --retention-max-age 2s)"
  base+=("$b"); with+=("$w")
  echo "round $r: without ${b} appends/s, with ${w} appends/s"
done
python3 - "${base[*]}" "${with[*]}" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]
w = [float(x) for x in sys.argv[2].split()]
mb, mw = statistics.median(b), statistics.median(w)
print(f"median without: {mb:.0f} appends/s, with retention: {mw:.0f} appends/s, cost {100*(1-mw/mb):.1f}%")
PY
