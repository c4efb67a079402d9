# Sourced helper: a throwaway Redis on 127.0.0.1, stopped by PID.
#
#   redis_install          installs Debian's redis-server (which pulls in redis-tools) if missing
#   redis_start DIR PORT [PASSWORD]
#                          starts it with its config, log and working dir under DIR (no persistence;
#                          no password unless PASSWORD is given: then it requires it) and sets
#                          REDIS_PID and REDIS_URL (redis://[:PASSWORD@]127.0.0.1:PORT/0)
#   redis_stop             clean shutdown (SIGTERM) of the server we started

redis_install() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "==> installing redis-server"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
}

# Writes DIR/redis.conf. Split out so that callers starting Redis detached can reuse it.
redis_write_conf() {
    local dir="$1" port="$2" password="${3:-}"
    mkdir -p "$dir"
    # Keep bind explicit: the packaged /etc/redis/redis.conf is not used when a config path is given.
    # save "" and appendonly no: nothing is written to disk, not even on shutdown.
    cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $dir
logfile $dir/redis.log
save ""
appendonly no
CONF
    if [ -n "$password" ]; then
        (umask 077; printf 'requirepass "%s"\n' "$password" >>"$dir/redis.conf")
    fi
}

# Waits until PID's Redis on PORT answers PONG; prints DIR/redis.log and fails if it exits first.
redis_wait_ready() {
    local dir="$1" port="$2" pid="$3" password="${4:-}"
    # Compare the output with PONG: redis-cli exits 0 on error replies such as NOAUTH.
    until [ "$(REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "redis exited during start; end of $dir/redis.log:"; tail -n 30 "$dir/redis.log" 2>/dev/null; return 1
        fi
        sleep 0.05
    done
}

redis_start() {
    local dir="$1" port="$2" password="${3:-}"
    redis_write_conf "$dir" "$port" "$password"
    # daemonize no: $! is the server itself.
    redis-server "$dir/redis.conf" >/dev/null 2>&1 &
    REDIS_PID=$!
    if ! redis_wait_ready "$dir" "$port" "$REDIS_PID" "$password"; then
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
        return 1
    fi
    REDIS_URL="redis://${password:+:$password@}127.0.0.1:$port/0"
}

redis_stop() {
    [ -n "${REDIS_PID:-}" ] || return 0
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}
