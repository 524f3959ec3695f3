#!/usr/bin/env bash
# Checks dstreamd's packaging without Docker or a cluster:
#   - Kubernetes manifests (deploy/): YAML, Kubernetes schemas, deployment rules
#     (check-manifests.js), and that the checker does reject broken manifests;
#   - the systemd unit (systemd-analyze verify, when present) and its settings;
#   - the example environment files: dstreamd starts with their values;
#   - the Dockerfile and .dockerignore (static assertions; the runtime packages
#     cover what `ldd dstreamd` needs);
#   - the container entrypoint and health check, run directly against a local
#     build: the entrypoint execs dstreamd (same PID), /health and /ready answer,
#     SIGTERM to that PID stops it.
#
#   test/packaging/run.sh            (DSTREAMD_BIN=path/to/dstreamd to pick the binary)
#
# Loopback only; every wait is bounded; only processes started here are killed.
# Ends with `N passed, N failed`; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
HERE=$ROOT/test/packaging
BIN=${DSTREAMD_BIN:-$ROOT/build/dstreamd}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # check "what" command...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

have_bin=false
if [[ -x $BIN ]] && "$BIN" --help >"$TMP/help.txt" 2>&1; then
  have_bin=true
  pass "dstreamd binary runs ($BIN)"
else
  fail "dstreamd binary at $BIN (build it first: ninja -C build dstreamd)"
fi

# A free loopback port, from the kernel.
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Polls a command until it succeeds, at most $1 seconds.
wait_for() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Waits at most $2 seconds for PID $1 (a child of this shell) to exit; its status in $exit_status.
wait_exit() {
  local pid=$1 limit=$2
  local deadline=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null; do
    # A zombie child counts as exited: `wait` reaps it below.
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  wait "$pid"
  exit_status=$?
  return 0
}

http_status() { # http_status URL -> prints the status code
  curl -s -o /dev/null -m 3 -w '%{http_code}' "$1"
}

# ---------------------------------------------------------------- manifests
echo "== Kubernetes manifests"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  fail "node and npm are needed for the manifest checks"
else
  # Pinned by package.json + package-lock.json; reinstalled only when the lockfile changes.
  stamp=$HERE/node_modules/.lock-stamp
  if [[ ! -f $stamp ]] || ! cmp -s "$HERE/package-lock.json" "$stamp"; then
    if (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$TMP/npm.log" 2>&1; then
      cp "$HERE/package-lock.json" "$stamp"
    else
      cat "$TMP/npm.log"
    fi
  fi
  help_arg=()
  $have_bin && help_arg=("$TMP/help.txt")
  if node "$HERE/check-manifests.js" "$ROOT/deploy" "${help_arg[@]}" >"$TMP/manifests.log" 2>&1; then
    :
  fi
  grep -v '^PASS: ' "$TMP/manifests.log" | grep -v '^manifests: ' || true
  n_pass=$(grep -c '^PASS: ' "$TMP/manifests.log")
  n_fail=$(grep -c '^FAIL: ' "$TMP/manifests.log")
  passed=$((passed + n_pass))
  failed=$((failed + n_fail))
  echo "manifest checks: $n_pass passed, $n_fail failed (details: node test/packaging/check-manifests.js deploy)"
  if ((n_pass == 0)); then fail "manifest checker ran no check"; fi

  # The checker must reject broken manifests (a check that cannot fail proves nothing).
  mutate() { # mutate NAME FILE SED-EXPR
    local name=$1 file=$2 expr=$3
    rm -rf "$TMP/deploy" && cp -r "$ROOT/deploy" "$TMP/deploy"
    sed -i "$expr" "$TMP/deploy/$file"
    if cmp -s "$ROOT/deploy/$file" "$TMP/deploy/$file"; then
      fail "mutation '$name' changed nothing"
    elif node "$HERE/check-manifests.js" "$TMP/deploy" "${help_arg[@]}" >/dev/null 2>&1; then
      fail "checker accepts a manifest with $name"
    else
      pass "checker rejects a manifest with $name"
    fi
  }
  mutate "readiness on /health" s2/deployment.yaml 's#path: /ready#path: /health#'
  mutate "a non-integer containerPort" embedded/statefulset.yaml 's#containerPort: 4437#containerPort: "4437x"#'
  mutate "unquoted 'off' (a YAML 1.1 boolean)" s2/ingress.yaml 's#proxy-buffering: "off"#proxy-buffering: off#'
  mutate "a short grace period" embedded/statefulset.yaml 's#terminationGracePeriodSeconds: 30#terminationGracePeriodSeconds: 12#'
  mutate "runAsNonRoot false" s2/deployment.yaml '0,/runAsNonRoot: true/s//runAsNonRoot: false/'
  mutate "a body limit unlike the ingress" s2/configmap.yaml 's#DSTREAMD_MAX_BODY_BYTES: "67108864"#DSTREAMD_MAX_BODY_BYTES: "1048576"#'
  mutate "a bad YAML indent" embedded/service.yaml 's#^  type: ClusterIP#   type: ClusterIP#'
  mutate "an unlisted resource" embedded/kustomization.yaml '/- ingress.yaml/d'
  # Flag names are checked against `dstreamd --help`, so only with a binary.
  $have_bin && mutate "a misspelt flag variable" embedded/configmap.yaml 's#DSTREAMD_LONG_POLL_TIMEOUT#DSTREAMD_LONG_POLL_TIMOUT#'
fi

# ---------------------------------------------------------------- systemd
echo "== systemd unit"
UNIT=$ROOT/packaging/dstreamd.service
if command -v systemd-analyze >/dev/null; then
  # verify needs ExecStart to exist: point it at the local build (or /bin/true).
  exe=/bin/true
  $have_bin && exe=$(realpath "$BIN")
  mkdir -p "$TMP/unit"
  sed "s#^ExecStart=/usr/local/bin/dstreamd#ExecStart=$exe#" "$UNIT" >"$TMP/unit/dstreamd.service"
  if systemd-analyze verify "$TMP/unit/dstreamd.service" >"$TMP/verify.log" 2>&1 && ! [[ -s $TMP/verify.log ]]; then
    pass "systemd-analyze verify dstreamd.service"
  else
    cat "$TMP/verify.log"
    fail "systemd-analyze verify dstreamd.service"
  fi
  if systemd-analyze security --help >/dev/null 2>&1 && systemd-analyze security --offline=yes --help >/dev/null 2>&1; then
    score=$(systemd-analyze security --offline=yes "$TMP/unit/dstreamd.service" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-1)}')
    [[ -n $score ]] && echo "note: systemd-analyze security exposure: $score"
  fi
else
  echo "SKIP: systemd-analyze not installed; unit not verified"
fi
for setting in Type=exec User=dstreamd Group=dstreamd StateDirectory=dstreamd \
  EnvironmentFile=-/etc/default/dstreamd NoNewPrivileges=yes ProtectSystem=strict \
  ProtectHome=yes PrivateTmp=yes ReadWritePaths=/var/lib/dstreamd Restart=on-failure \
  KillSignal=SIGTERM ExecStart=/usr/local/bin/dstreamd; do
  check "dstreamd.service sets $setting" grep -qx "$setting" "$UNIT"
done
nofile=$(sed -n 's/^LimitNOFILE=//p' "$UNIT")
check "LimitNOFILE high ($nofile)" test "${nofile:-0}" -ge 65536
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$UNIT")
check "TimeoutStopSec (${stop}s) > shutdown timeout (10s) " test "${stop:-0}" -gt 10

# ---------------------------------------------------------------- example environments
echo "== example configuration starts dstreamd"
# dstreamd must accept every value the examples set (durations, sizes, flags).
run_with_env() { # run_with_env NAME ENVFILE
  local name=$1 envfile=$2 port pid
  port=$(free_port)
  mkdir -p "$TMP/$name-data"
  (
    set -a
    # shellcheck disable=SC1090
    . "$envfile"
    export DSTREAMD_LISTEN=127.0.0.1:$port DSTREAMD_DATA_DIR=$TMP/$name-data
    exec "$BIN"
  ) >"$TMP/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if wait_for 10 curl -sf -m 2 "http://127.0.0.1:$port/health"; then
    pass "dstreamd serves with $name's settings"
  else
    cat "$TMP/$name.log"
    fail "dstreamd serves with $name's settings"
  fi
  kill -TERM "$pid" 2>/dev/null
  wait_exit "$pid" 15 || { kill -KILL "$pid"; wait "$pid"; }
}
if $have_bin; then
  check "dstreamd.default is valid shell (as EnvironmentFile reads it)" bash -n "$ROOT/packaging/dstreamd.default"
  run_with_env dstreamd.default "$ROOT/packaging/dstreamd.default"
  if [[ -f $HERE/node_modules/yaml/package.json ]]; then
    # shellcheck disable=SC2016 # JavaScript, not shell
    node -e '
      const YAML = require(process.argv[1] + "/node_modules/yaml");
      const cm = YAML.parse(require("fs").readFileSync(process.argv[2], "utf8"), { version: "1.1" });
      for (const [k, v] of Object.entries(cm.data)) console.log(`${k}=${JSON.stringify(String(v))}`);
    ' "$HERE" "$ROOT/deploy/embedded/configmap.yaml" >"$TMP/embedded-configmap.env"
    run_with_env embedded-configmap "$TMP/embedded-configmap.env"
  fi
  # Unset flags must stay unknown to dstreamd if it would choke on them; report variables it lacks.
  for v in $(grep -ohE '^#?DSTREAMD_[A-Z0-9_]+' "$ROOT/packaging/dstreamd.default" | tr -d '#' | sort -u); do
    flag=$(echo "${v#DSTREAMD_}" | tr 'A-Z_' 'a-z-')
    if ! grep -qE -- "--$flag( |$)" "$TMP/help.txt"; then
      case $flag in
        log-format | log-level | shutdown-timeout) echo "note: --$flag not in this build's --help yet" ;;
        *) fail "dstreamd.default names $v, which is no dstreamd flag" ;;
      esac
    fi
  done
fi

# ---------------------------------------------------------------- Dockerfile
echo "== Dockerfile (static; no Docker engine here)"
DF=$ROOT/Dockerfile
check "Dockerfile: base debian:bookworm-slim" grep -qE '^ARG DEBIAN_IMAGE=debian:bookworm-slim$' "$DF"
check "Dockerfile: multi-stage (FROM ... AS build, FROM ... AS runtime)" \
  bash -c "grep -qE '^FROM \S+ AS build$' '$DF' && grep -qE '^FROM \S+ AS runtime$' '$DF'"
check "Dockerfile: last stage is the runtime" bash -c "grep -E '^FROM ' '$DF' | tail -1 | grep -q 'AS runtime'"
check "Dockerfile: copies the binary from the build stage" grep -qE '^COPY --from=build /out/dstreamd /usr/local/bin/dstreamd$' "$DF"
check "Dockerfile: Release build, tests off, CMake + Ninja" \
  bash -c "grep -q -- '-G Ninja -DCMAKE_BUILD_TYPE=Release' '$DF' && grep -q -- '-DDSTREAMD_TESTS=OFF' '$DF'"
user=$(sed -n 's/^USER //p' "$DF" | tail -1)
check "Dockerfile: USER is set and not root ($user)" bash -c "[[ -n '$user' && '$user' != root && '$user' != 0 && '$user' != 0:* && '$user' != root:* ]]"
check "Dockerfile: fixed uid/gid 10001" bash -c "grep -qx 'ARG DSTREAMD_UID=10001' '$DF' && grep -qx 'ARG DSTREAMD_GID=10001' '$DF'"
check "Dockerfile: /data owned by the user" grep -q 'chown dstreamd:dstreamd /data' "$DF"
check "Dockerfile: VOLUME /data" grep -qx 'VOLUME \["/data"\]' "$DF"
check "Dockerfile: EXPOSE 4437" grep -qx 'EXPOSE 4437' "$DF"
check "Dockerfile: DSTREAMD_LISTEN=0.0.0.0:4437" grep -q 'DSTREAMD_LISTEN=0.0.0.0:4437' "$DF"
check "Dockerfile: DSTREAMD_DATA_DIR=/data" grep -q 'DSTREAMD_DATA_DIR=/data' "$DF"
check "Dockerfile: HEALTHCHECK (exec form)" grep -qE '^\s*CMD \["/usr/local/bin/docker-healthcheck.sh"\]' "$DF"
check "Dockerfile: HEALTHCHECK instruction" grep -qE '^HEALTHCHECK ' "$DF"
check "Dockerfile: STOPSIGNAL SIGTERM" grep -qx 'STOPSIGNAL SIGTERM' "$DF"
check "Dockerfile: ENTRYPOINT exec form (no shell between)" grep -qx 'ENTRYPOINT \["/usr/local/bin/docker-entrypoint.sh"\]' "$DF"
# The packages a stage's `apt-get install` names (the lines after it, up to `rm -rf`).
stage_packages() { # stage_packages STAGE
  awk -v stage="AS $1" '$0 ~ stage"$" {in_stage=1; next} /^FROM / {in_stage=0}
    in_stage && /apt-get install/ {grab=1; next}
    grab {if (/rm -rf/) {grab=0; next} print}' "$DF" |
    tr -d '\\&' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u
}
build_pkgs=$(stage_packages build)
# Build dependencies: those scripts/setup.sh installs for building (not tests/tools).
for p in g++ cmake ninja-build pkg-config libboost1.81-dev libboost-program-options1.81-dev \
  librocksdb-dev libsimdjson-dev libssl-dev zlib1g-dev; do
  check "Dockerfile build stage installs $p" grep -qxF -- "$p" <<<"$build_pkgs"
done
runtime_pkgs=$(stage_packages runtime)
mapfile -t runtime_list <<<"$runtime_pkgs"
echo "runtime packages: ${runtime_list[*]}"
for p in librocksdb7.8 libsimdjson14 libssl3 libboost-program-options1.81.0 zlib1g ca-certificates; do
  check "Dockerfile runtime stage installs $p" grep -qx "$p" <<<"$runtime_pkgs"
done
check "Dockerfile runtime stage installs no -dev package" bash -c "! grep -q -- '-dev$' <<<'$runtime_pkgs'"
if command -v apt-cache >/dev/null && apt-cache show librocksdb7.8 >/dev/null 2>&1; then
  missing=()
  if ! apt-cache show "${runtime_list[@]}" >/dev/null 2>&1; then
    for p in "${runtime_list[@]}"; do apt-cache show "$p" >/dev/null 2>&1 || missing+=("$p"); done
  fi
  check "runtime packages exist in Debian 12 (${missing[*]:-all found})" test ${#missing[@]} -eq 0
  if $have_bin && command -v dpkg >/dev/null; then
    # Every library `ldd dstreamd` resolves must come from a runtime package, a package
    # they depend on, or the base image's essentials.
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${runtime_list[@]}" 2>/dev/null | sed -n 's/^ *\(Pre\)\{0,1\}Depends: <\{0,1\}\([^>:]*\).*/\2/p;s/^\([a-z0-9][^ :]*\)$/\1/p' |
      sort -u)
    # "arch-dir/soname" of each library, e.g. x86_64-linux-gnu/libz.so.1.
    mapfile -t libs < <(ldd "$BIN" | awk '/=> \// {n = split($3, p, "/"); print p[n - 1] "/" p[n]}')
    # Their owners, from dpkg's file lists in one pass: "package key" lines.
    owners=$(awk -v keys="${libs[*]}" '
      BEGIN {split(keys, k, " "); for (i in k) want[k[i]] = 1}
      {n = split($0, p, "/"); key = p[n - 1] "/" p[n]
       if (key in want) {f = FILENAME; sub(/.*\//, "", f); sub(/(:[a-z0-9]+)?\.list$/, "", f); print f, key}}
    ' /var/lib/dpkg/info/*.list 2>/dev/null)
    uncovered=()
    for lib in "${libs[@]}"; do
      pkg=$(awk -v lib="$lib" '$2 == lib {print $1; exit}' <<<"$owners")
      case $pkg in libc6 | libgcc-s1 | libstdc++6) continue ;; esac
      grep -qxF -- "$pkg" <<<"$closure"$'\n'"$runtime_pkgs" || uncovered+=("$lib(${pkg:-?})")
    done
    check "ldd dstreamd finds ${#libs[@]} libraries" test ${#libs[@]} -gt 5
    check "runtime packages cover every library ldd dstreamd needs (${uncovered[*]:-all covered})" test ${#uncovered[@]} -eq 0
  fi
else
  echo "SKIP: apt-cache has no package lists (apt-get update); runtime package names not looked up"
fi
# .dockerignore must let through every file the Dockerfile COPYs from the context.
while read -r src; do
  src=${src%/}
  check ".dockerignore lets $src into the build context" grep -qx "!$src/\{0,1\}" "$ROOT/.dockerignore"
  check "Dockerfile COPY source $src exists" test -e "$ROOT/$src"
done < <(awk '/^COPY / && !/--from/ {for (i = 2; i < NF; i++) print $i}' "$DF")

# ---------------------------------------------------------------- entrypoint and health check
echo "== container entrypoint and health check (run directly)"
EP=$ROOT/packaging/docker-entrypoint.sh
HC=$ROOT/packaging/docker-healthcheck.sh
check "docker-entrypoint.sh is executable" test -x "$EP"
check "docker-healthcheck.sh is executable" test -x "$HC"
check "docker-entrypoint.sh parses (sh -n)" sh -n "$EP"
check "docker-healthcheck.sh parses (bash -n)" bash -n "$HC"
if command -v shellcheck >/dev/null; then
  check "shellcheck packaging/*.sh test/packaging/run.sh" shellcheck "$EP" "$HC" "$HERE/run.sh"
else
  echo "SKIP: shellcheck not installed"
fi
if $have_bin; then
  check "entrypoint 'dstreamd --help' runs the binary" bash -c "DSTREAMD_BIN='$BIN' '$EP' dstreamd --help | grep -q -- '--listen'"
  check "entrypoint '--help' (flags only) runs the binary" bash -c "DSTREAMD_BIN='$BIN' '$EP' --help | grep -q -- '--listen'"
  check "entrypoint runs another command instead" bash -c "DSTREAMD_BIN=/nonexistent '$EP' sh -c 'echo other' | grep -qx other"

  port=$(free_port)
  mkdir -p "$TMP/ep-data"
  DSTREAMD_BIN=$BIN DSTREAMD_LISTEN=127.0.0.1:$port DSTREAMD_DATA_DIR=$TMP/ep-data \
    "$EP" --long-poll-timeout 2s >"$TMP/ep.log" 2>&1 &
  ep_pid=$!
  PIDS+=("$ep_pid")
  if wait_for 10 curl -sf -m 2 "http://127.0.0.1:$port/health"; then
    pass "entrypoint: /health answers 200"
    check "entrypoint: /ready answers 200" test "$(http_status "http://127.0.0.1:$port/ready")" = 200
    # exec: the entrypoint's PID is now dstreamd itself, with the arguments passed on.
    exe=$(readlink "/proc/$ep_pid/exe" 2>/dev/null)
    check "entrypoint exec'd dstreamd (PID $ep_pid is $(basename "${exe:-?}"))" test "$exe" = "$(realpath "$BIN")"
    check "entrypoint passed its arguments on" \
      bash -c "tr '\0' ' ' </proc/$ep_pid/cmdline | grep -q -- '--long-poll-timeout 2s'"
    check "docker-healthcheck.sh passes (DSTREAMD_LISTEN=0.0.0.0:$port)" env DSTREAMD_LISTEN="0.0.0.0:$port" "$HC"
    check "docker-healthcheck.sh passes for /ready" env DSTREAMD_LISTEN="127.0.0.1:$port" DSTREAMD_HEALTH_PATH=/ready "$HC"
    check "docker-healthcheck.sh fails on a 404 path" bash -c "! DSTREAMD_LISTEN=127.0.0.1:$port DSTREAMD_HEALTH_PATH=/nope '$HC'"
    # A stream round trip, so the image's defaults serve real requests.
    check "entrypoint: create, append and read a stream" bash -c "
      curl -sf -m 3 -X PUT -H 'Content-Type: text/plain' http://127.0.0.1:$port/v1/stream/pkg &&
      curl -sf -m 3 -X POST -H 'Content-Type: text/plain' --data hello http://127.0.0.1:$port/v1/stream/pkg &&
      curl -sf -m 3 'http://127.0.0.1:$port/v1/stream/pkg?offset=-1' | grep -qx hello"
  else
    cat "$TMP/ep.log"
    fail "entrypoint: /health answers 200"
  fi
  kill -TERM "$ep_pid" 2>/dev/null
  if wait_exit "$ep_pid" 15; then
    check "SIGTERM to the entrypoint's PID stops dstreamd (exit $exit_status)" test "$exit_status" -eq 0
    check "dstreamd logged a clean stop" grep -q 'dstreamd stopped' "$TMP/ep.log"
  else
    fail "SIGTERM to the entrypoint's PID stops dstreamd within 15s"
    kill -KILL "$ep_pid" 2>/dev/null
  fi
  check "docker-healthcheck.sh fails when nothing listens" bash -c "! DSTREAMD_LISTEN=127.0.0.1:$port '$HC'"
fi

# ---------------------------------------------------------------- README
check "README.md has a deployment section" grep -qE '^## Deploying' "$ROOT/README.md"

echo "$passed passed, $failed failed"
((failed == 0))
