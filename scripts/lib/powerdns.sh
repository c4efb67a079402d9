# Sourced helper: a throwaway PowerDNS Authoritative server (pdns_server, SQLite backend, HTTP
# API) on 127.0.0.1, stopped by PID. Used by scripts/test.sh.
#
#   powerdns_install       installs Debian's pdns-server, pdns-backend-sqlite3 and sqlite3 if
#                          missing, with service starts denied during the install, and stops the
#                          packaged pdns service if one runs all the same: tests start their own
#                          pdns_server
#   powerdns_start DIR DNS_PORT API_PORT
#                          creates DIR/pdns.sqlite3 from the package's schema (kept when it exists,
#                          so a restart on the same DIR keeps the zone), a random API key in
#                          DIR/api.key (mode 0600) and a private DIR/pdns.conf: DNS on
#                          127.0.0.1:DNS_PORT (UDP and TCP), the API on 127.0.0.1:API_PORT, every
#                          cache TTL 0, daemon=no, guardian=no, no security poll. Waits
#                          (POWERDNS_START_TIMEOUT, 10 s) until the API answers, then creates the
#                          zone example.test. through the API unless it is there. Sets and exports
#                          POWERDNS_PID, POWERDNS_PORT, POWERDNS_API_PORT, POWERDNS_API_URL
#                          (http://127.0.0.1:API_PORT), POWERDNS_API_KEY_FILE and POWERDNS_DIR;
#                          writes the PID to DIR/pdns.pid. The log is DIR/pdns.log. Diagnostics
#                          go to stderr, never the key.
#                          With POWERDNS_DETACH=1 pdns_server runs in a session of its own with
#                          no inherited stdio, so it outlives the calling script.
#   powerdns_stop          SIGTERM to the pdns_server we started, SIGKILL after 5 s
#   powerdns_stop_dir DIR  the same for the pdns_server whose PID is in DIR/pdns.pid (another
#                          shell's), after checking that PID is still that server
#
# PowerDNS does not share ports: a second instance on a port in use exits at once, which the
# readiness loop reports with the end of the log.

# shellcheck source=scripts/lib/pids.sh
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

# Not inherited from the environment: powerdns_stop only stops a pdns_server started here.
POWERDNS_PID=""
POWERDNS_ZONES=(example.test)
POWERDNS_SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql

# pdns_server lives in /usr/sbin, which a non-root PATH may lack.
_powerdns_bin() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }
}

# PIDs of pdns_server processes that are not ours (the packaged service), if any.
_powerdns_service_pids() {
    local proc
    for proc in /proc/[0-9]*; do
        [ "$(cat "$proc/comm" 2>/dev/null)" = pdns_server ] || continue
        # Ours run with --config-dir=<their directory>; the service reads /etc/powerdns.
        if ! tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -q -- '--config-dir='; then
            echo "${proc#/proc/}"
        fi
    done
}

powerdns_install() {
    if _powerdns_bin pdns_server >/dev/null && [ -f "$POWERDNS_SCHEMA" ] \
        && command -v sqlite3 >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing pdns-server, pdns-backend-sqlite3, sqlite3 and curl" >&2
    # A policy-rc.d that denies service starts, for the install only (unless one exists).
    local policy=/usr/sbin/policy-rc.d made=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made=1
    fi
    local status=0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        pdns-server pdns-backend-sqlite3 sqlite3 curl >/dev/null || status=$?
    if [ -n "$made" ]; then rm -f "$policy"; fi
    [ "$status" = 0 ] || return "$status"
    # Where the packaged service was started all the same (systemd ignores policy-rc.d), stop
    # it: tests run their own pdns_server on free ports.
    if [ -n "$(_powerdns_service_pids)" ]; then
        echo "==> the pdns-server package's service is running; stopping it" >&2
        if [ -d /run/systemd/system ]; then
            systemctl stop pdns.service
        else
            service pdns stop
        fi
    fi
}


# curl against the API with the key from the key file (read by curl, never on a command line).
_powerdns_api() {
    local dir="$1"
    shift
    curl -sS --max-time 5 -H @"$dir/api.headers" "$@"
}

powerdns_start() {
    local dir="$1" port="$2" api_port="$3"
    local server
    if ! server="$(_powerdns_bin pdns_server)" || [ ! -f "$POWERDNS_SCHEMA" ]; then
        echo "powerdns_start: pdns_server or the SQLite schema is missing (powerdns_install)" >&2; return 1
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ ! -s "$dir/pdns.sqlite3" ]; then
        sqlite3 "$dir/pdns.sqlite3" <"$POWERDNS_SCHEMA" || return 1
    fi
    # The key: random, written straight to 0600 files (the bare key, and curl's header file), kept
    # across a restart on the same DIR.
    if [ ! -s "$dir/api.key" ]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/api.key" && echo >>"$dir/api.key") || return 1
    fi
    (umask 077 && printf 'X-API-Key: %s\nContent-Type: application/json\n' "$(cat "$dir/api.key")" >"$dir/api.headers") || return 1
    (umask 077 && cat >"$dir/pdns.conf" <<CONF
launch=gsqlite3
gsqlite3-database=$dir/pdns.sqlite3
local-address=127.0.0.1
local-port=$port
socket-dir=$dir
daemon=no
guardian=no
write-pid=no
disable-syslog=yes
loglevel=4
security-poll-suffix=
default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 3600
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
api=yes
api-key=$(cat "$dir/api.key")
webserver=yes
webserver-address=127.0.0.1
webserver-port=$api_port
webserver-allow-from=127.0.0.1/32
CONF
    ) || return 1

    # --config-dir: reads DIR/pdns.conf only, not the packaged /etc/powerdns (and its includes).
    if [ "${POWERDNS_DETACH:-}" = 1 ]; then
        # A session of its own, no inherited stdio: it outlives the calling script (see
        # bind.sh's BIND_DETACH; setsid execs without forking, so $! is pdns_server).
        setsid "$server" --config-dir="$dir" </dev/null >>"$dir/pdns.log" 2>&1 &
    else
        "$server" --config-dir="$dir" </dev/null >>"$dir/pdns.log" 2>&1 &
    fi
    local pid=$!
    echo "$pid" >"$dir/pdns.pid"
    local api="http://127.0.0.1:$api_port/api/v1/servers/localhost"

    local fail="" deadline
    deadline=$(( ${EPOCHREALTIME//[!0-9]/} + ${POWERDNS_START_TIMEOUT:-10} * 1000000 ))
    until _powerdns_api "$dir" -f -o /dev/null "$api" 2>/dev/null; do
        if ! pid_alive "$pid"; then
            fail="pdns_server exited during start"; break
        fi
        if [ "${EPOCHREALTIME//[!0-9]/}" -gt "$deadline" ]; then
            fail="the API did not answer on 127.0.0.1:$api_port within ${POWERDNS_START_TIMEOUT:-10} s"; break
        fi
        sleep 0.05
    done
    local zone code
    if [ -z "$fail" ]; then
        for zone in "${POWERDNS_ZONES[@]}"; do
            code="$(_powerdns_api "$dir" -o /dev/null -w '%{http_code}' "$api/zones/$zone.")" || code=000
            [ "$code" = 200 ] && continue
            code="$(_powerdns_api "$dir" -o "$dir/zone-create.out" -w '%{http_code}' -X POST "$api/zones" \
                -d '{"name":"'"$zone"'.","kind":"Native","nameservers":["ns1.'"$zone"'."]}')" || code=000
            if [ "$code" != 201 ]; then
                fail="creating zone $zone. answered HTTP $code: $(cat "$dir/zone-create.out" 2>/dev/null)"; break
            fi
        done
    fi
    # The API being up means DNS is (pdns binds its listeners first); the zone must answer.
    if [ -z "$fail" ] && ! dig @127.0.0.1 -p "$port" example.test SOA +norecurse +short +time=1 +tries=2 | grep -q .; then
        fail="example.test. does not answer SOA on 127.0.0.1:$port"
    fi
    if [ -n "$fail" ]; then
        echo "powerdns_start: $fail; end of $dir/pdns.log:" >&2
        tail -n 40 "$dir/pdns.log" >&2
        pid_stop pdns_server "$pid"
        rm -f "$dir/pdns.pid"
        return 1
    fi
    export POWERDNS_PID="$pid" POWERDNS_PORT="$port" POWERDNS_API_PORT="$api_port" \
        POWERDNS_API_URL="http://127.0.0.1:$api_port" POWERDNS_API_KEY_FILE="$dir/api.key" \
        POWERDNS_DIR="$dir"
}

powerdns_stop() {
    [ -n "${POWERDNS_PID:-}" ] || return 0
    pid_stop pdns_server "$POWERDNS_PID"
    if [ -n "${POWERDNS_DIR:-}" ]; then rm -f "$POWERDNS_DIR/pdns.pid"; fi
    POWERDNS_PID=""
}

# Stops the pdns_server started by powerdns_start DIR in another shell
# (scripts/powerdns-instance.sh stop), after checking that the PID in DIR/pdns.pid is still it.
powerdns_stop_dir() {
    local dir="$1"
    if [ -d "$dir" ]; then dir="$(cd "$dir" && pwd)"; fi
    pid_stop_file pdns_server "$dir/pdns.pid" "--config-dir=$dir"
}
