#!/usr/bin/env bash
# clang-tidy (bug-prone checks, .clang-tidy) over the translation units that do not
# include Asio/Beast (those take minutes each under clang-tidy; they are covered by
# the sanitizer builds and the clang build instead). Needs build/compile_commands.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
files=$(git ls-files 'src/*.cc' | grep -v '^src/server/' | grep -v '^src/main.cc$')
# shellcheck disable=SC2086
clang-tidy -p "$BUILD_DIR" --quiet $files
