#!/bin/sh
# Container entrypoint for dstreamd.
#
# Configuration comes from DSTREAMD_* environment variables (every flag has one,
# e.g. DSTREAMD_STORAGE=s2) and from the container's arguments:
#
#   docker run IMAGE                          -> dstreamd
#   docker run IMAGE --long-poll-timeout 20s  -> dstreamd --long-poll-timeout 20s
#   docker run IMAGE dstreamd --help          -> dstreamd --help
#   docker run IMAGE bash                     -> bash (debugging)
#
# The script `exec`s, so dstreamd replaces this shell and is the process that
# receives SIGTERM from `docker stop` / the kubelet; nothing sits in between to
# swallow or delay the signal. DSTREAMD_BIN overrides the binary (tests use it to
# run this script against a local build); dstreamd ignores that variable.
set -eu

bin="${DSTREAMD_BIN:-/usr/local/bin/dstreamd}"

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  # No arguments, or only flags: run the server with them.
  exec "$bin" "$@"
fi
if [ "$1" = "dstreamd" ]; then
  shift
  exec "$bin" "$@"
fi
# Anything else is a command to run instead (a shell, a one-off tool).
exec "$@"
