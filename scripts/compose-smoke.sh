#!/usr/bin/env bash
# docker-compose.yml's topology as local processes, for machines without a Docker engine:
# the same dnsorch commands, env files (.env.${APP_ENV:-dev}), `environment:` blocks and start
# order, with the compose hosts (postgres, redis, kafka) pointed at local servers on loopback.
#
#   scripts/compose-smoke.sh               # uses target/release/dnsorch (cargo build --release)
#   DNSORCH_BIN=target/debug/dnsorch scripts/compose-smoke.sh
#
# It sets fresh POSTGRES_PASSWORD and REDIS_PASSWORD (the compose file has no defaults), starts
# PostgreSQL (with the compose file's user and database), Redis (requiring that password) and tansu (a
# Kafka-protocol broker) with the scripts/lib helpers on free ports, then hands over to
# scripts/lib/compose.py, which runs migrate, then serve (2 replicas), worker (2 replicas) and
# consume as the compose file orders them (each listen address, BIND_ADDR or OPS_ADDR, on a free
# loopback port), waits for each dependency's condition, creates the first admin token as the
# compose file's header says (`docker compose run --rm -T migrate token create ...`) and a token
# for its own account, posts a request with that token and produces one to Kafka with an
# `authorization: Bearer` header, and waits for both to be COMPLETED; then it stops every
# process with SIGTERM and requires a clean exit. Everything it started is stopped by PID when
# it ends, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/redis.sh
. scripts/lib/redis.sh
# shellcheck source=scripts/lib/tansu.sh
. scripts/lib/tansu.sh

log() { printf '\n==> %s\n' "$*"; }

bin="${DNSORCH_BIN:-target/release/dnsorch}"
if [ ! -x "$bin" ]; then
    echo "no dnsorch binary at $bin: run 'cargo build --release' or set DNSORCH_BIN" >&2
    exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/dnsorch-tools}"
python="$TOOLS_DIR/shipping-venv/bin/python"
if ! "$python" -c 'import yaml' 2>/dev/null; then
    # The venv scripts/check-shipping.sh makes; system Python will do if it has PyYAML.
    python=python3
    "$python" -c 'import yaml' 2>/dev/null || {
        echo "PyYAML is missing: run scripts/check-shipping.sh once (it makes $TOOLS_DIR/shipping-venv)" >&2
        exit 1
    }
fi

postgres_install
redis_install
tansu_install

work="$(mktemp -d -t dnsorch-smoke.XXXXXX)"
cleanup() {
    # The dnsorch processes are stopped by compose.py; this is the backstop if it was killed.
    if [ -f "$work/dnsorch.pids" ]; then
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$work/dnsorch.pids"
    fi
    tansu_stop
    redis_stop
    postgres_stop
    if [ "${keep_work:-0}" = 1 ]; then
        echo "logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The compose file has no default passwords (${VAR:?...}): the smoke sets fresh ones, as an
# operator must. Redis requires its password here too, so the services' URLs must carry it.
POSTGRES_PASSWORD="$("$python" -c 'import secrets; print(secrets.token_hex(24))')"
REDIS_PASSWORD="$("$python" -c 'import secrets; print(secrets.token_hex(24))')"
export POSTGRES_PASSWORD REDIS_PASSWORD

log "starting PostgreSQL, Redis and tansu for the compose services postgres, redis, kafka"
pg_port="$(free_port)"
postgres_start "$work/postgres" "$pg_port"
# The compose postgres service's user and database (POSTGRES_USER, POSTGRES_DB); the local
# server trusts loopback, so the password in DATABASE_URL is not checked.
read -r pg_user pg_db < <("$python" - <<'PY'
import yaml
env = yaml.safe_load(open("docker-compose.yml"))["services"]["postgres"]["environment"]
print(env["POSTGRES_USER"], env["POSTGRES_DB"])
PY
)
"$PGBIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
    -c "create role $pg_user login" -c "create database $pg_db owner $pg_user"
echo "PostgreSQL (pid $POSTGRES_PID) on 127.0.0.1:$pg_port, database $pg_db owned by $pg_user"

redis_port="$(free_port)"
redis_start "$work/redis" "$redis_port" "$REDIS_PASSWORD"
if [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>&1)" = PONG ]; then
    echo "Redis answered without its password" >&2
    exit 1
fi
echo "Redis (pid $REDIS_PID) on 127.0.0.1:$redis_port, requiring REDIS_PASSWORD"

kafka_port="$(free_port)"
tansu_start "$work/tansu" "$kafka_port"
echo "tansu (pid $TANSU_PID) on 127.0.0.1:$kafka_port"

log "the compose services as local processes ($bin)"
keep_work=1
"$python" scripts/lib/compose.py smoke --bin "$bin" --work "$work" \
    --postgres "127.0.0.1:$pg_port" --redis "127.0.0.1:$redis_port" \
    --kafka "127.0.0.1:$kafka_port" --tansu "$TANSU"
keep_work=0
