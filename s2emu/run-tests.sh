#!/usr/bin/env bash
# Installs the emulator's dev dependencies and runs all its tests
# (unit tests + the SDK fidelity test). Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
# Run test files one at a time: several of them measure timing (pings, waits).
exec node --test --test-concurrency=1 --test-reporter=spec test/*.test.js
