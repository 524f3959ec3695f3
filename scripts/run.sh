#!/usr/bin/env bash
# Set up (install what is missing, build) and run dstreamd on the embedded
# store: http://127.0.0.1:4437, data in ./data. Extra arguments go to dstreamd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/dstreamd "$@"
