# Sourced helper: a throwaway Kafka-protocol broker (tansu 0.6.0) on 127.0.0.1, stopped by PID.
#
#   tansu_install          builds tansu into $TOOLS_DIR once (about 17 minutes on 2 cores; later
#                          runs reuse the binary). TOOLS_DIR defaults to ~/.cache/dnsorch-tools.
#   tansu_start DIR PORT   starts it with the sqlite:// engine in DIR (the memory:// engine cannot
#                          fetch from the middle of a batch), sets TANSU_PID and KAFKA_URL
#                          (127.0.0.1:PORT), waits until this PID listens on PORT (returns 1 with
#                          the log if it exits or does not within 30 s); callers that need topics
#                          wait for metadata with rdkafka
#   tansu_stop             SIGTERM to the broker we started (SIGKILL if it lingers)

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/dnsorch-tools}"
TANSU="$TOOLS_DIR/bin/tansu"
TANSU_VERSION=0.6.0

tansu_install() {
    if [ -x "$TANSU" ] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        return 0
    fi
    echo "==> building tansu $TANSU_VERSION into $TOOLS_DIR (once; about 17 minutes on 2 cores)"
    mkdir -p "$TOOLS_DIR"
    cargo install tansu --version "$TANSU_VERSION" --features dynostore,libsql --locked \
        --root "$TOOLS_DIR" --quiet
}

tansu_start() {
    local dir="$1" port="$2"
    mkdir -p "$dir"
    # tansu reads .env and LISTENER_URL/STORAGE_ENGINE/... from its working directory and
    # environment, and sqlite:// paths are relative to it: an empty directory, every option given.
    (
        cd "$dir" || exit 1
        exec env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
            "$TANSU" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$port" \
            --storage-engine sqlite://tansu.db
    ) >"$dir/tansu.log" 2>&1 &
    TANSU_PID=$!
    KAFKA_URL="127.0.0.1:$port"
    # Wait for the port (callers that need topics wait for metadata with rdkafka: Debian's
    # kcat is too old to talk to tansu), at most 30 s.
    local tries=300
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$TANSU_PID" 2>/dev/null || [ "$tries" -eq 0 ]; then
            echo "tansu did not start on 127.0.0.1:$port:" >&2
            cat "$dir/tansu.log" >&2
            return 1
        fi
        tries=$((tries - 1))
        sleep 0.1
    done
    # tansu exits 0 with a port already in use: make sure the listener is ours.
    if ! ss -Hltnp "sport = :$port" | grep -q "pid=$TANSU_PID,"; then
        echo "port $port is not held by tansu (pid $TANSU_PID)" >&2
        cat "$dir/tansu.log" >&2
        return 1
    fi
}

tansu_stop() {
    [ -n "${TANSU_PID:-}" ] || return 0
    kill -TERM "$TANSU_PID" 2>/dev/null || true
    # tansu may not exit on SIGTERM while clients are still connected: SIGKILL after 5 s.
    for _ in $(seq 1 50); do
        kill -0 "$TANSU_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
    TANSU_PID=""
}
