#!/usr/bin/env bash
# Installs what dstreamd needs on Debian 12 (only what is missing), then
# configures and builds it. Idempotent; run as root (or with sudo available).
#
#   scripts/setup.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR="${1:-build}"
shift || true

# Build and test dependencies, all from Debian 12's archive.
PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libboost-program-options1.81-dev
  librocksdb-dev libsimdjson-dev libssl-dev zlib1g-dev libgtest-dev
  clang libclang-rt-14-dev clang-tidy clang-format
  nginx-light curl ca-certificates
  chromium
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the test harnesses; keep a newer one if the machine has it.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
ninja -C "$BUILD_DIR"
