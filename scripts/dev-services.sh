#!/usr/bin/env bash
# Local development services on fixed loopback ports, matching .env.dev:
#
#   PostgreSQL 15  127.0.0.1:55432  postgres://postgres@127.0.0.1:55432/dns_orchestrator  (trust auth)
#   Redis          127.0.0.1:56379  redis://127.0.0.1:56379/0                             (no password)
#
# Usage: scripts/dev-services.sh start|stop|status
#
#   start   installs what is missing, starts both detached (they outlive this script) and creates
#           the dns_orchestrator database if missing; does nothing for a service already running
#   stop    stops both by the PIDs in .dev-services/*.pid and waits until they have exited
#   status  says what runs; exits 0 only if both answer
#
# Everything lives under .dev-services/ in the repo root (git-ignored). The PostgreSQL data
# directory persists across stop/start: initdb runs only when .dev-services/postgres/data is
# missing; delete .dev-services/ to start from scratch. Redis keeps nothing on disk (save "",
# appendonly no): the database is the source of truth and the reconciler re-queues lost tasks.
# The ports are not configurable on purpose: .env.dev names them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
# shellcheck source=lib/redis.sh
source "$ROOT/scripts/lib/redis.sh"

STATE="$ROOT/.dev-services"
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_PORT=55432
PG_DB=dns_orchestrator
PG_PIDFILE="$STATE/postgres.pid"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
REDIS_DIR="$STATE/redis"
REDIS_PORT=56379
REDIS_PIDFILE="$STATE/redis.pid"
DEV_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# The server refuses to run as root: drop to the package's postgres user. setpriv execs, so
# the PID stays the postmaster's.
AS=()
if [ "$(id -u)" = 0 ]; then
    AS=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi

# --- process helpers ----------------------------------------------------------------------------

# True if PID is a live (not zombie) process. Once this script has exited, a stopped server is
# reaped by whoever adopted it, and until then kill -0 still succeeds on the zombie.
alive() {
    local pid="$1" stat
    kill -0 "$pid" 2>/dev/null || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    # The state is the field after the parenthesised command name.
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# Prints the PID in FILE if it is a live process whose command line contains WORD.
pid_from_file() {
    local file="$1" word="$2" pid
    [ -f "$file" ] || return 1
    pid="$(head -n1 "$file" 2>/dev/null | tr -dc 0-9)"
    [ -n "$pid" ] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word" || return 1
    echo "$pid"
}

# Sends SIG to PID and waits up to about 30 s for it to exit.
stop_pid() {
    local name="$1" pid="$2" sig="$3" i
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        alive "$pid" || { echo "$name stopped (pid $pid)"; return 0; }
        sleep 0.05
    done
    echo "$name (pid $pid) did not exit within 30 s" >&2
    return 1
}

# --- PostgreSQL ---------------------------------------------------------------------------------

# The PID in postgres.pid, if it is a live postgres that is also the one in our postmaster.pid
# (not, after a reboot, some other process or another cluster that got the same PID).
pg_running_pid() {
    local pid
    pid="$(pid_from_file "$PG_PIDFILE" postgres)" || return 1
    [ "$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc 0-9)" = "$pid" ] || return 1
    echo "$pid"
}

pg_start() {
    local pid
    if pid="$(pg_running_pid)"; then
        echo "postgres already running (pid $pid)"
        return 0
    fi
    rm -f "$PG_PIDFILE"
    mkdir -p "$PG_DIR"
    if [ "${#AS[@]}" -gt 0 ]; then
        # The postgres user must reach PG_DIR: let it pass through .dev-services/ (and own PG_DIR).
        chmod o+x "$STATE"
        chown postgres: "$PG_DIR"
        if ! "${AS[@]}" test -x "$PG_DIR" -a -w "$PG_DIR"; then
            echo "the postgres user cannot enter $PG_DIR: a parent directory is not" \
                "traversable by others (chmod o+x it)" >&2
            return 1
        fi
    fi
    if [ -f "$PG_DATA/PG_VERSION" ]; then
        echo "postgres: reusing $PG_DATA"
    else
        if [ -e "$PG_DATA" ]; then
            echo "$PG_DATA exists but holds no cluster (no PG_VERSION); remove it and retry" >&2
            return 1
        fi
        echo "postgres: initdb $PG_DATA"
        # No -N: this cluster keeps data across restarts, so let initdb sync it to disk.
        "${AS[@]}" "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --no-locale \
            >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    fi
    # Detached: setsid (new session, no controlling terminal) and nohup, stdin from /dev/null.
    # setsid and nohup exec when they need not fork (a background job of a non-interactive shell
    # is not a process group leader), so $! is normally the postmaster; the PID written comes
    # from postmaster.pid anyway. TCP only: a unix socket's path length is limited. fsync stays
    # on (the data persists); synchronous_commit=off may lose the last moments of commits on a
    # crash but never corrupts.
    setsid nohup "${AS[@]}" "$PGBIN/postgres" -D "$PG_DATA" \
        -c listen_addresses=127.0.0.1 -p "$PG_PORT" -c unix_socket_directories= \
        -c synchronous_commit=off -c max_connections=200 \
        </dev/null >>"$PG_DIR/postgres.log" 2>&1 &
    pid=$!
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; do
        if ! alive "$pid"; then
            echo "postgres exited during start; end of $PG_DIR/postgres.log:" >&2
            tail -n 20 "$PG_DIR/postgres.log" >&2
            return 1
        fi
        sleep 0.05
    done
    # pg_isready may answer for another server on the port only if ours died: recheck.
    local postmaster
    postmaster="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc 0-9)"
    if [ -z "$postmaster" ] || ! alive "$postmaster"; then
        echo "postgres: no live postmaster in $PG_DATA/postmaster.pid" >&2
        return 1
    fi
    echo "$postmaster" >"$PG_PIDFILE"
    echo "postgres started (pid $postmaster)"
    if [ "$("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtq \
        -c "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]; then
        "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Xq \
            -c "create database $PG_DB"
        echo "postgres: created database $PG_DB"
    fi
}

pg_stop() {
    local pid
    if pid="$(pg_running_pid)"; then
        # SIGINT: fast shutdown (disconnects clients, rolls back open transactions).
        stop_pid postgres "$pid" INT || return 1
    else
        echo "postgres not running"
    fi
    rm -f "$PG_PIDFILE"
}

pg_status() {
    local pid
    if pid="$(pg_running_pid)" && "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; then
        echo "postgres running (pid $pid): $PG_URL"
    else
        echo "postgres not running"
        return 1
    fi
}

# --- Redis --------------------------------------------------------------------------------------

redis_running_pid() { pid_from_file "$REDIS_PIDFILE" redis-server; }

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

dev_redis_start() {
    local pid
    if pid="$(redis_running_pid)"; then
        echo "redis already running (pid $pid)"
        return 0
    fi
    rm -f "$REDIS_PIDFILE"
    redis_write_conf "$REDIS_DIR" "$REDIS_PORT"
    setsid nohup redis-server "$REDIS_DIR/redis.conf" </dev/null >/dev/null 2>&1 &
    pid=$!
    redis_wait_ready "$REDIS_DIR" "$REDIS_PORT" "$pid" >&2 || return 1
    # The PID of the server that answers, in case setsid had to fork.
    local served
    served="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null \
        | sed -n 's/^process_id:\([0-9]*\).*/\1/p')"
    if [ -z "$served" ] || ! alive "$served"; then
        echo "redis: could not read the server's process_id" >&2
        return 1
    fi
    echo "$served" >"$REDIS_PIDFILE"
    echo "redis started (pid $served)"
}

dev_redis_stop() {
    local pid
    if pid="$(redis_running_pid)"; then
        # SIGTERM: clean shutdown; with save "" it writes nothing.
        stop_pid redis "$pid" TERM || return 1
    else
        echo "redis not running"
    fi
    rm -f "$REDIS_PIDFILE"
}

dev_redis_status() {
    local pid
    if pid="$(redis_running_pid)" && redis_ping; then
        echo "redis running (pid $pid): $DEV_REDIS_URL"
    else
        echo "redis not running"
        return 1
    fi
}

# --- commands -----------------------------------------------------------------------------------

cmd="${1:-}"
case "$cmd" in
start)
    postgres_install
    redis_install
    mkdir -p "$STATE"
    pg_start
    dev_redis_start
    echo
    echo "DATABASE_URL=$PG_URL"
    echo "CELERY_BROKER_URL=$DEV_REDIS_URL"
    echo "(these are the values in .env.dev: use APP_ENV=dev)"
    ;;
stop)
    rc=0
    dev_redis_stop || rc=1
    pg_stop || rc=1
    exit "$rc"
    ;;
status)
    rc=0
    pg_status || rc=1
    dev_redis_status || rc=1
    exit "$rc"
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
