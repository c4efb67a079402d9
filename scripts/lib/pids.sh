# Sourced helper: a server process by PID, for the helpers that start one (bind.sh, powerdns.sh).
#
#   pid_alive PID          true while PID exists and is not a zombie (kill -0 succeeds on zombies)
#   pid_stop NAME PID      SIGTERM to PID, SIGKILL after 5 s (saying so, with NAME, on stderr);
#                          reaps it when it is the caller's child
#   pid_stop_file NAME FILE MARK
#                          the same for the PID in FILE (a server another shell started), if that
#                          process is still alive and its command line holds MARK (not a reused
#                          PID); FILE is removed

pid_alive() {
    local state
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)"
    [ -n "$state" ] && [ "$state" != Z ]
}

pid_stop() {
    local name="$1" pid="$2"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        pid_alive "$pid" || break
        sleep 0.05
    done
    if pid_alive "$pid"; then
        echo "$name (pid $pid) still running 5 s after SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

pid_stop_file() {
    local name="$1" file="$2" mark="$3" pid
    pid="$(cat "$file" 2>/dev/null)" || { echo "no $file: nothing to stop" >&2; return 0; }
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$mark"; then
        pid_stop "$name" "$pid"
    else
        echo "$name (pid $pid) from $file is not running" >&2
    fi
    rm -f "$file"
}
