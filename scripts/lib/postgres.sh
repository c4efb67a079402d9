# Sourced by scripts/test.sh: a throwaway PostgreSQL 15 on 127.0.0.1, stopped by PID.
#
#   postgres_start DIR PORT   starts it with its data, socket and log under DIR and sets
#                             POSTGRES_PID and POSTGRES_URL (postgres://postgres@127.0.0.1:PORT/postgres);
#                             fsync is off unless POSTGRES_DURABLE=1 (scripts/bench.sh)
#   postgres_stop             fast shutdown of the postmaster we started

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"

postgres_install() {
    if [ ! -x "$PGBIN/postgres" ]; then
        echo "==> installing postgresql-15"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    fi
}

postgres_start() {
    local dir="$1" port="$2"
    local as=()
    mkdir -p "$dir"
    # The server refuses to run as root: drop to the package's postgres user. setpriv execs,
    # so $! is the postmaster itself.
    if [ "$(id -u)" = 0 ]; then
        # mktemp makes 0700 directories: the postgres user must be able to pass through.
        chmod o+x "$(dirname "$dir")"
        chown postgres: "$dir"
        as=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
    "${as[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-locale -N >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    # fsync off: a throwaway test cluster, where crash safety does not matter. POSTGRES_DURABLE=1
    # keeps the server's defaults (fsync, synchronous_commit, full_page_writes on): real commits.
    local durability=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
    if [ "${POSTGRES_DURABLE:-}" = 1 ]; then
        durability=()
    fi
    "${as[@]}" "$PGBIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -p "$port" -k "$dir" \
        "${durability[@]}" -c max_connections=400 \
        >"$dir/postgres.log" 2>&1 &
    POSTGRES_PID=$!
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        if ! kill -0 "$POSTGRES_PID" 2>/dev/null; then
            echo "postgres exited during start:"; cat "$dir/postgres.log"; return 1
        fi
        sleep 0.05
    done
    POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

postgres_stop() {
    [ -n "${POSTGRES_PID:-}" ] || return 0
    kill -INT "$POSTGRES_PID" 2>/dev/null || true
    wait "$POSTGRES_PID" 2>/dev/null || true
    POSTGRES_PID=""
}
