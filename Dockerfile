# syntax=docker/dockerfile:1
#
# The dnsorch image: the release binary on Debian 12 slim, run as a non-root user.
#
#   docker build -t dnsorch .
#   docker run --rm -p 8000:8000 dnsorch                # `dnsorch run`: all in one, SQLite in the
#                                                       # working directory /var/lib/dnsorch
#   docker exec CONTAINER cat dnsorch-admin.token       # the admin token its first start wrote
#                                                       # there (mode 0600) for the API's Bearer
#   docker run --rm dnsorch --help                      # every setting (environment variables)
#
# Stages:
#   chef     the Rust toolchain with cargo-chef
#   planner  `cargo chef prepare`: a recipe of what decides the dependencies (manifest, lock file)
#   builder  `cargo chef cook` builds the dependencies alone, in a layer that is reused until the
#            recipe changes; then the crate itself is built on top of it
#   runtime  Debian slim, curl for the health check, libssl3 and the CA certificates for the
#            Kafka client's TLS, the binary, an unprivileged user
#
# The builder and the runtime are the same Debian release, so the binary's glibc and OpenSSL
# match. The crate builds its C parts itself (SQLite, librdkafka with make); the full rust image
# has the compiler, make and zlib headers they need, and the builder adds OpenSSL's headers and
# pkg-config: librdkafka links Debian's libssl (TLS, SASL SCRAM), never a vendored copy.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin dnsorch
COPY . .
RUN cargo build --release --locked --bin dnsorch \
    && install -m 0755 target/release/dnsorch /usr/local/bin/dnsorch

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# curl for HEALTHCHECK only; libssl3 for the Kafka client (librdkafka links it), and
# ca-certificates for brokers whose certificates a public CA signed (ssl.ca.location unset).
# Versions are not pinned: a pin breaks the build whenever Debian ships a security update, and
# the base image tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 dnsorch \
    && useradd --system --uid 10001 --gid dnsorch --home-dir /var/lib/dnsorch --create-home \
        --shell /usr/sbin/nologin dnsorch
COPY --from=builder /usr/local/bin/dnsorch /usr/local/bin/dnsorch
USER 10001:10001
# The working directory holds the default SQLite file of `dnsorch run`; no .env file is baked in
# (settings come from the environment: see docker-compose.yml and docs/operations.md). No zones
# file is baked in either: `run` then uses the simulated backend (with a warning), and `serve`,
# `worker` and `consume` refuse to start until DNSORCH_CONFIG names a mounted zones file or
# ALLOW_SIMULATED=true is set.
WORKDIR /var/lib/dnsorch
# Listen on every interface of the container, on port 8000 (the binary's own defaults are
# loopback only, and for OPS_ADDR any free port), and log JSON lines. `run` and `serve` serve
# the API on BIND_ADDR; `worker` and `consume` serve /healthz, /readyz and /metrics on OPS_ADDR
# and never bind BIND_ADDR, so both can name the same port.
ENV BIND_ADDR=0.0.0.0:8000 \
    OPS_ADDR=0.0.0.0:8000 \
    LOG_FORMAT=json
EXPOSE 8000
# /healthz answers 200 while the process serves HTTP: every role but `migrate` and `token` (run
# those with --no-healthcheck; docker-compose.yml disables the check for migrate). The check
# asks BIND_ADDR's port, then OPS_ADDR's: one of them is the role's.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${BIND_ADDR##*:}/healthz\" || curl -fsS -o /dev/null \"http://127.0.0.1:${OPS_ADDR##*:}/healthz\" || exit 1"]
ENTRYPOINT ["/usr/local/bin/dnsorch"]
CMD ["run"]
