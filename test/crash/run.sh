#!/usr/bin/env bash
# Durability crash test: repeatedly SIGKILLs dstreamd mid-append and checks
# what survived on restart. See test/README.md.
#
# Usage: test/crash/run.sh [--cycles N] [--server dstreamd|reference] [--data-dir PATH]
#                          [--seed N] [--keep-going] [--max-seconds S] [-- extra server args]
# Env: DSTREAMD_BIN (default: build/dstreamd), READY_TIMEOUT_MS (default 20000).
# Prints "ok"/"not ok" per cycle and a final "N passed, N failed"; exits non-zero on failure.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="$HERE/../conformance"

# The reference server (for checking this harness itself) comes from the
# conformance harness's pinned dependencies.
for a in "$@"; do
  if [[ "$a" == reference && ! -d "$CONF/node_modules/@durable-streams/server" ]]; then
    echo "run.sh: installing the reference server (npm ci in test/conformance)"
    (cd "$CONF" && npm ci --no-audit --no-fund --loglevel=error) || exit 2
  fi
done

exec node "$HERE/crash.mjs" "$@"
