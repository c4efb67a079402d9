#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): installs what is missing, then
# runs `cargo fmt --check`, `cargo clippy --all-targets -D warnings` and the whole test suite,
# then the shipping checks (scripts/check-shipping.sh, scripts/compose-smoke.sh).
#
# It starts a throwaway PostgreSQL, Redis, Kafka-protocol broker (tansu) and authoritative DNS
# servers (BIND and Knot DNS, zones example.test. and other.test. taking TSIG-signed updates, the
# rfc2136 battery running against both; PowerDNS, zone example.test. behind its HTTP API) on
# 127.0.0.1 (free ports; each test makes its own database, stream, topic and names in them) and
# stops them by PID when the script ends, also when the tests fail; tests that stop or restart a
# server start private instances of their own (for BIND: scripts/bind-instance.sh, passed as
# TEST_BIND_INSTANCE; for PowerDNS: scripts/powerdns-instance.sh, passed as
# TEST_POWERDNS_INSTANCE). Playbook tests run the pinned ansible-core from TOOLS_DIR
# (TEST_ANSIBLE_PLAYBOOK) with the ANSIBLE_* environment of scripts/lib/ansible.sh, inside the
# run's temporary directory. Tests of the app use a temporary SQLite file each. Extra arguments
# go to the test runner, e.g.
# `scripts/test.sh lifecycle` runs only the tests whose names contain "lifecycle".
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/redis.sh
. scripts/lib/redis.sh
# shellcheck source=scripts/lib/tansu.sh
. scripts/lib/tansu.sh
# shellcheck source=scripts/lib/bind.sh
. scripts/lib/bind.sh
# shellcheck source=scripts/lib/knot.sh
. scripts/lib/knot.sh
# shellcheck source=scripts/lib/ansible.sh
. scripts/lib/ansible.sh
# shellcheck source=scripts/lib/powerdns.sh
. scripts/lib/powerdns.sh

install_missing() {
    # A C compiler for the bundled SQLite; cargo and rustup components come with the toolchain.
    if ! command -v cc >/dev/null 2>&1; then
        log "installing a C compiler"
        apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
    fi
    if ! command -v ss >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
    fi
    # OpenSSL's headers and pkg-config for librdkafka's TLS and SASL (rdkafka's `ssl` feature
    # links Debian's libssl); openssl makes the TLS tests' certificates.
    if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null 2>&1; then
        log "installing libssl-dev, pkg-config and openssl"
        apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config openssl >/dev/null
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            log "installing $component"
            rustup component add "$component"
        fi
    done
}

install_missing
postgres_install
redis_install
# The Kafka-protocol broker for the Kafka tests: built once into TOOLS_DIR (about 17 minutes on
# 2 cores), before anything else builds, so the two builds do not share the cores.
tansu_install
# --- DNS provisioning: BIND (named, nsupdate, dig), Knot DNS (knotd, knotc) and a venv with the
# pinned ansible-core ---
bind_install
knot_install
ansible_install
powerdns_install
# --- end DNS provisioning ---

work="$(mktemp -d -t dnsorch-test.XXXXXX)"
cleanup() {
    powerdns_stop
    knot_stop
    bind_stop
    tansu_stop
    redis_stop
    postgres_stop
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "starting PostgreSQL"
postgres_start "$work/postgres" "$(free_port)"
export TEST_POSTGRES_URL="$POSTGRES_URL"
echo "PostgreSQL (pid $POSTGRES_PID) at $TEST_POSTGRES_URL"

log "starting Redis"
redis_start "$work/redis" "$(free_port)"
export TEST_REDIS_URL="$REDIS_URL"
echo "Redis (pid $REDIS_PID) at $TEST_REDIS_URL"

log "starting tansu (Kafka protocol)"
tansu_port="$(free_port)"
tansu_start "$work/tansu" "$tansu_port"
export TEST_KAFKA_URL="$KAFKA_URL" TEST_TANSU="$TANSU"
echo "tansu (pid $TANSU_PID) at $TEST_KAFKA_URL"

# --- DNS provisioning: a BIND for the playbook tests, and ansible-playbook's environment ---
log "starting BIND (named)"
bind_start "$work/bind" "$(free_port)"
export TEST_BIND_PORT="$BIND_PORT" TEST_BIND_DIR="$BIND_DIR" \
    TEST_BIND_KEY_NAME="$BIND_KEY_NAME" TEST_BIND_KEY_ALGORITHM="$BIND_KEY_ALGORITHM" \
    TEST_BIND_SECRET_FILE="$BIND_SECRET_FILE" TEST_BIND_KEY_FILE="$BIND_KEY_FILE" \
    TEST_BIND_INSTANCE="$PWD/scripts/bind-instance.sh" \
    TEST_ANSIBLE_PLAYBOOK="$ANSIBLE_PLAYBOOK"
ansible_env "$work/ansible"
echo "BIND (pid $BIND_PID) at 127.0.0.1:$TEST_BIND_PORT, zones example.test. and other.test., key $TEST_BIND_KEY_NAME in $TEST_BIND_KEY_FILE"

log "starting PowerDNS (pdns_server)"
powerdns_start "$work/powerdns" "$(free_port)" "$(free_port)"
export TEST_POWERDNS_PORT="$POWERDNS_PORT" TEST_POWERDNS_API_URL="$POWERDNS_API_URL" \
    TEST_POWERDNS_API_KEY_FILE="$POWERDNS_API_KEY_FILE" \
    TEST_POWERDNS_INSTANCE="$PWD/scripts/powerdns-instance.sh"
echo "PowerDNS (pid $POWERDNS_PID) at 127.0.0.1:$TEST_POWERDNS_PORT, API $TEST_POWERDNS_API_URL, zone example.test., key in $TEST_POWERDNS_API_KEY_FILE"
# The rfc2136 battery again, against a second implementation (tests/dns/knot.rs).
log "starting Knot DNS (knotd)"
knot_start "$work/knot" "$(free_port)"
export TEST_KNOT_PORT="$KNOT_PORT" TEST_KNOT_DIR="$KNOT_DIR" \
    TEST_KNOT_KEY_NAME="$KNOT_KEY_NAME" TEST_KNOT_KEY_ALGORITHM="$KNOT_KEY_ALGORITHM" \
    TEST_KNOT_SECRET_FILE="$KNOT_SECRET_FILE" TEST_KNOT_KEY_FILE="$KNOT_KEY_FILE"
echo "Knot DNS (pid $KNOT_PID) at 127.0.0.1:$TEST_KNOT_PORT, zones example.test., other.test. and readonly.test. (no updates), key $TEST_KNOT_KEY_NAME in $TEST_KNOT_KEY_FILE"
# --- end DNS provisioning ---

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
else
    cargo test --locked --no-fail-fast "$@"
fi

# --- Shipping ------------------------------------------------------------------------------------
# No Docker engine here: the Dockerfile, docker-compose.yml and the CI workflow are checked by
# linters and schemas, and the compose topology runs as local processes, with the debug binary
# the tests just built (a few seconds each once scripts/check-shipping.sh has its venv).
shipping_bin="${CARGO_TARGET_DIR:-target}/debug/dnsorch"
log "shipping checks: scripts/check-shipping.sh"
DNSORCH_BIN="$shipping_bin" scripts/check-shipping.sh
log "compose topology as local processes: scripts/compose-smoke.sh"
DNSORCH_BIN="$shipping_bin" scripts/compose-smoke.sh
