#!/usr/bin/env bash
# Black-box integration tests for dstreamd (see README.md in this directory).
#
# Usage: test/integration/run.sh [extra node --test args, e.g. a file or --test-name-pattern=...]
# Env:   DSTREAMD_BIN (default: build/dstreamd), READY_TIMEOUT_MS (default 20000),
#        INTEGRATION_TIMEOUT_S (hard cap on the whole run, default 300).
# Each test file starts its own dstreamd on a free 127.0.0.1 port with a temp --data-dir.
# Exit code: node's (124 if the hard cap hit).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export DSTREAMD_BIN="${DSTREAMD_BIN:-$REPO/build/dstreamd}"
TIMEOUT_S="${INTEGRATION_TIMEOUT_S:-300}"

if [[ ! -x "$DSTREAMD_BIN" ]]; then
  echo "run.sh: dstreamd binary not found or not executable: $DSTREAMD_BIN (build it, or set DSTREAMD_BIN)" >&2
  exit 2
fi
echo "run.sh: testing $DSTREAMD_BIN"

cd "$HERE"
FILES=()
[[ $# -eq 0 || "$*" != *.mjs* ]] && FILES=(*.test.mjs)
OUT="$(mktemp "${TMPDIR:-/tmp}/dstreamd-integration.XXXXXX")"
trap 'rm -f "$OUT"' EXIT
# The spec reporter prints each test and a closing summary (tests/pass/fail/skipped/duration).
timeout --kill-after=10 "$TIMEOUT_S" node --test --test-reporter=spec "$@" "${FILES[@]}" 2>&1 | tee "$OUT"
RC=${PIPESTATUS[0]}
if [[ $RC -eq 124 ]]; then echo "run.sh: the run hit the ${TIMEOUT_S}s cap" >&2; fi
count() { grep -E "^ℹ $1 [0-9]+" "$OUT" | tail -n 1 | grep -oE '[0-9]+' || echo "?"; }
echo "integration: $(count pass) passed, $(count fail) failed, $(count skipped) skipped, $(count cancelled) cancelled (node exit $RC)"
exit $RC
