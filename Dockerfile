# dstreamd container image: Debian 12, built from source, run as a non-root user.
#
#   docker build -t dstreamd .
#   docker run -p 4437:4437 -v dstreamd-data:/data dstreamd            # embedded RocksDB in /data
#   docker run -p 4437:4437 -e DSTREAMD_STORAGE=s2 \
#     -e DSTREAMD_S2_ENDPOINT=https://BASIN.b.s2.dev -e DSTREAMD_S2_BASIN=BASIN \
#     -e S2_ACCESS_TOKEN=... dstreamd                                  # stateless, S2-backed
#
# Stop with a grace period longer than dstreamd's --shutdown-timeout (10s by
# default): `docker stop -t 15`, or `stop_grace_period: 15s` in Compose.
# See README.md ("Deploying") and deploy/README.md.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- build: compilers and -dev packages, all from Debian 12 (as scripts/setup.sh) ----
FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libboost1.81-dev libboost-program-options1.81-dev \
      librocksdb-dev libsimdjson-dev libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the server build reads (tests are off, so test/ is not needed; ui/ is embedded).
COPY CMakeLists.txt ./
COPY src ./src
COPY ui ./ui
# Release at -O2, the optimisation level CI tests (RelWithDebInfo without -g): at -O3,
# g++ 12 reports a false -Wmismatched-new-delete inside Asio's coroutine frame
# allocator, which -Werror turns into a failed build.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" -DDSTREAMD_TESTS=OFF \
 && cmake --build build --target dstreamd \
 && install -D -m 0755 -s build/dstreamd /out/dstreamd \
 && /out/dstreamd --help >/dev/null

# ---- runtime: the shared libraries dstreamd links (see `ldd dstreamd`) and nothing else ----
FROM ${DEBIAN_IMAGE} AS runtime
# librocksdb7.8 brings its own compression libraries (snappy, lz4, zstd, bz2, gflags);
# ca-certificates lets --storage s2 verify https endpoints.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librocksdb7.8 libsimdjson14 libssl3 libboost-program-options1.81.0 zlib1g \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Fixed ids, so volumes and Kubernetes securityContext (runAsUser/fsGroup) can name them.
ARG DSTREAMD_UID=10001
ARG DSTREAMD_GID=10001
RUN groupadd --system --gid "${DSTREAMD_GID}" dstreamd \
 && useradd --system --uid "${DSTREAMD_UID}" --gid dstreamd --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin dstreamd \
 && mkdir -p /data \
 && chown dstreamd:dstreamd /data \
 && chmod 0750 /data

COPY --from=build /out/dstreamd /usr/local/bin/dstreamd
COPY packaging/docker-entrypoint.sh packaging/docker-healthcheck.sh /usr/local/bin/
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh /usr/local/bin/docker-healthcheck.sh

ENV DSTREAMD_LISTEN=0.0.0.0:4437 \
    DSTREAMD_DATA_DIR=/data
VOLUME ["/data"]
WORKDIR /data
EXPOSE 4437
# Numeric, so `runAsNonRoot` can be verified by Kubernetes without a passwd lookup.
USER ${DSTREAMD_UID}:${DSTREAMD_GID}

# dstreamd drains connections on SIGTERM (up to --shutdown-timeout) and then exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/docker-healthcheck.sh"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD []
