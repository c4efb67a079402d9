#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): installs what is missing, then
# runs `cargo fmt --check`, `cargo clippy --all-targets -D warnings` and the whole test suite.
#
# It starts a throwaway PostgreSQL and Redis on 127.0.0.1 (free ports; each test makes its
# own database and stream in them) and stops them by PID when the script ends, also when the
# tests fail; tests that stop or restart a server start private instances of their own. Tests
# of the app use a temporary SQLite file each. Extra arguments go to the test runner, e.g.
# `scripts/test.sh lifecycle` runs only the tests whose names contain "lifecycle".
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/redis.sh
. scripts/lib/redis.sh

install_missing() {
    # A C compiler for the bundled SQLite; cargo and rustup components come with the toolchain.
    if ! command -v cc >/dev/null 2>&1; then
        log "installing a C compiler"
        apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
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

work="$(mktemp -d -t dnsorch-test.XXXXXX)"
cleanup() {
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

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
else
    cargo test --locked --no-fail-fast "$@"
fi
