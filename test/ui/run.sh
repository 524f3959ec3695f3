#!/usr/bin/env bash
# The inspector page (ui/) in headless Chromium: see inspector.test.mjs.
#
# Usage: test/ui/run.sh [extra node --test args]
# Env:   DSTREAMD_BIN (default: build/dstreamd), CHROMIUM_BIN (default: /usr/bin/chromium),
#        UI_ARTIFACTS (screenshots; default test/ui/artifacts), UI_TIMEOUT_S (hard cap, default 120).
# Chromium comes from Debian (package chromium); installed here when missing and running as
# root (CI), otherwise the suite is skipped with a message (exit 0). No npm packages: the test
# talks to Chromium over --remote-debugging-pipe with Node's standard library.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export DSTREAMD_BIN="${DSTREAMD_BIN:-$REPO/build/dstreamd}"
TIMEOUT_S="${UI_TIMEOUT_S:-120}"

if [[ ! -x "$DSTREAMD_BIN" ]]; then
  echo "run.sh: dstreamd binary not found or not executable: $DSTREAMD_BIN (build it, or set DSTREAMD_BIN)" >&2
  exit 2
fi
CHROMIUM="${CHROMIUM_BIN:-}"
if [[ -z "$CHROMIUM" ]]; then
  for c in /usr/bin/chromium /usr/bin/chromium-browser; do [[ -x "$c" ]] && CHROMIUM="$c" && break; done
fi
if [[ -z "$CHROMIUM" ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "run.sh: installing chromium (Debian package)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
      { echo "run.sh: could not install chromium" >&2; exit 2; }
    CHROMIUM=/usr/bin/chromium
  else
    echo "run.sh: SKIPPED: chromium is not installed and this is not root (apt-get install chromium, or set CHROMIUM_BIN)"
    exit 0
  fi
fi
export CHROMIUM_BIN="$CHROMIUM"
echo "run.sh: testing $DSTREAMD_BIN with $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"

cd "$HERE"
OUT="$(mktemp "${TMPDIR:-/tmp}/dstreamd-ui.XXXXXX")"
trap 'rm -f "$OUT"' EXIT
timeout --kill-after=10 "$TIMEOUT_S" node --test --test-reporter=spec --test-concurrency=1 "$@" inspector.test.mjs 2>&1 | tee "$OUT"
RC=${PIPESTATUS[0]}
if [[ $RC -eq 124 ]]; then echo "run.sh: the run hit the ${TIMEOUT_S}s cap" >&2; fi
count() { grep -E "^ℹ $1 [0-9]+" "$OUT" | tail -n 1 | grep -oE '[0-9]+' || echo "?"; }
echo "ui: $(count pass) passed, $(count fail) failed, $(count skipped) skipped (node exit $RC); screenshots in ${UI_ARTIFACTS:-$HERE/artifacts}"
exit $RC
