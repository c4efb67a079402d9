#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): installs what is missing, then
# runs `cargo fmt --check`, `cargo clippy --all-targets -D warnings` and the whole test suite.
#
# Every test starts what it needs itself (the app on port 0 with a temporary SQLite file), so
# nothing is left running when this script ends. Extra arguments go to the test runner,
# e.g. `scripts/test.sh lifecycle` runs only the tests whose names contain "lifecycle".
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

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

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
else
    cargo test --locked --no-fail-fast "$@"
fi
