#!/bin/bash
# Container health check for dstreamd: GET /health on the port dstreamd listens
# on (from DSTREAMD_LISTEN, default 4437), with bash's /dev/tcp, so the runtime
# image needs no curl. Exit 0 on `200`, 1 otherwise; bounded by a 3 s timeout.
#   DSTREAMD_HEALTH_PATH   the path to ask (default /health)
set -u

listen="${DSTREAMD_LISTEN:-127.0.0.1:4437}"
port="${listen##*:}"
host="${listen%:*}"
host="${host#[}"
host="${host%]}"
# A wildcard address is reached through loopback.
case "$host" in
  "" | 0.0.0.0 | ::) host=127.0.0.1 ;;
esac
path="${DSTREAMD_HEALTH_PATH:-/health}"

# shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
exec timeout 3 bash -c '
  exec 3<>"/dev/tcp/$1/$2" || exit 1
  printf "GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$3" >&3
  IFS= read -r status <&3 || exit 1
  case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *) echo "dstreamd health: ${status:-no answer}" >&2; exit 1 ;;
  esac
' healthcheck "$host" "$port" "$path"
