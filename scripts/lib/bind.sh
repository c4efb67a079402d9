# Sourced helper: a throwaway authoritative BIND 9 (named) on 127.0.0.1 that takes TSIG-signed
# RFC 2136 updates, stopped by PID. Used by scripts/test.sh and scripts/bind-instance.sh.
#
#   bind_install           installs Debian's bind9 (named, tsig-keygen) and bind9-dnsutils (nsupdate,
#                          dig) if missing; stops the system named service if the install started one
#   bind_start DIR PORT    writes a fresh hmac-sha256 TSIG key "dnsorch-test" (random secret) and
#                          named.conf, zone files, journals and named.log under DIR, serving the
#                          primary zones example.test. and other.test. (updates allowed with that key;
#                          with BIND_UPDATE_POLICY set, its rules in an update-policy { } instead)
#                          on 127.0.0.1:PORT (UDP and TCP) only; waits (BIND_START_TIMEOUT, 10 s) until
#                          both zones answer with this instance's nonce, then checks that the port
#                          is held by this named alone. Sets and exports BIND_PID, BIND_PORT, BIND_DIR,
#                          BIND_KEY_NAME, BIND_KEY_ALGORITHM, BIND_SECRET_FILE (the base64 secret
#                          alone on one line, mode 0600) and BIND_KEY_FILE (a key { } clause, as
#                          `nsupdate -k` and named.conf read it, mode 0600); writes the PID to
#                          DIR/bind.pid. With BIND_DETACH=1 named runs in its own session with no
#                          terminal or inherited stdio, so it outlives the calling script.
#                          Diagnostics go to stderr, never the secret.
#   bind_stop              SIGTERM to the named we started, SIGKILL after 5 s
#   bind_stop_dir DIR      the same for the named whose PID is in DIR/bind.pid (another shell's)
#
# BIND does not fail when its port is taken (SO_REUSEPORT, or UDP still bound with
# `reuseport no;`), so readiness is this instance's own nonce, and the log and `ss` are checked.

# shellcheck source=scripts/lib/daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

# Not inherited from the environment: bind_stop only stops a named that bind_start started here.
BIND_PID=""
BIND_KEY_NAME=dnsorch-test
BIND_KEY_ALGORITHM=hmac-sha256
BIND_ZONES=(example.test other.test)

# named, named-checkconf and tsig-keygen live in /usr/sbin, which a non-root PATH may lack.
_bind_bin() { _daemon_bin "$1"; }

# PID of the Debian system named service (its pid file), if one runs.
_bind_service_pid() { _daemon_service_pid /run/named/named.pid named; }

bind_install() {
    if _bind_bin named >/dev/null && _bind_bin named-checkconf >/dev/null && _bind_bin tsig-keygen >/dev/null \
        && command -v nsupdate >/dev/null 2>&1 && command -v dig >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing bind9 and bind9-dnsutils" >&2
    local before after
    before="$(_bind_service_pid)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9 bind9-dnsutils >/dev/null
    after="$(_bind_service_pid)"
    _daemon_stop_new_service bind9 named "$before" "$after"
}


bind_start() {
    local dir="$1" port="$2"
    local named checkconf keygen
    if ! named="$(_bind_bin named)" || ! checkconf="$(_bind_bin named-checkconf)" \
        || ! keygen="$(_bind_bin tsig-keygen)"; then
        echo "bind_start: named, named-checkconf or tsig-keygen missing (bind_install)" >&2; return 1
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    # The key clause is written by tsig-keygen straight to a 0600 file and the secret copied from
    # it by sed: the secret is never in a variable, an argument or on stdout. named.conf includes
    # the key file rather than a copy of it.
    rm -f "$dir/tsig.key" "$dir/tsig.secret"
    (umask 077 && "$keygen" -a "$BIND_KEY_ALGORITHM" "$BIND_KEY_NAME" >"$dir/tsig.key") || return 1
    (umask 077 && sed -n 's/^[[:space:]]*secret "\([^"]*\)";.*/\1/p' "$dir/tsig.key" >"$dir/tsig.secret") || return 1
    if [ "$(wc -l <"$dir/tsig.secret")" != 1 ]; then
        echo "bind_start: could not read the secret from $dir/tsig.key" >&2; return 1
    fi

    local nonce zone
    nonce="dnsorch-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    {
        cat <<CONF
include "$dir/tsig.key";
options {
    directory "$dir";
    pid-file "$dir/named.pid";
    session-keyfile "$dir/session.key";
    managed-keys-directory "$dir";
    listen-on port $port { 127.0.0.1; };
    listen-on-v6 { none; };
    reuseport no;
    recursion no;
    notify no;
    dnssec-validation no;
    // Refusing an MX whose in-zone target has no A/AAAA (REFUSED, logged as "has no address
    // records") is BIND policy, not DNS: tests exercise dnsorch's checks, not BIND's.
    check-integrity no;
};
// No rndc channel: otherwise named reads /etc/bind/rndc.key and binds 127.0.0.1:953 and [::1]:953.
controls { };
CONF
        local updates="allow-update { key \"$BIND_KEY_NAME\"; };"
        if [ -n "${BIND_UPDATE_POLICY:-}" ]; then
            updates="update-policy { $BIND_UPDATE_POLICY };"
        fi
        for zone in "${BIND_ZONES[@]}"; do
            cat <<CONF
zone "$zone" {
    type primary;
    file "$dir/$zone.zone";
    $updates
};
CONF
        done
    } >"$dir/named.conf"
    for zone in "${BIND_ZONES[@]}"; do
        cat >"$dir/$zone.zone" <<ZONE
\$TTL 300
@      IN SOA ns1.$zone. hostmaster.$zone. ( 1 3600 600 86400 300 )
       IN NS  ns1.$zone.
ns1    IN A   127.0.0.1
_ready IN TXT "$nonce"
ZONE
    done
    # A fresh start: no journal from an earlier instance in the same directory.
    rm -f "$dir"/*.jnl
    "$checkconf" "$dir/named.conf" >&2 || return 1

    # -g: foreground, all logging to stderr (the logging { } block is ignored); -n 1: one worker.
    local pid
    if [ "${BIND_DETACH:-}" = 1 ]; then
        # setsid: a session of its own (no SIGHUP or terminal signals from the caller's session);
        # stdin and stdout/stderr are not the caller's, so a caller reading this script's output
        # through a pipe sees EOF when the script exits. A background job of a non-interactive
        # shell is not a process group leader, so setsid execs named without forking: $! is named
        # (the ss check below would catch it otherwise).
        setsid "$named" -g -n 1 -c "$dir/named.conf" </dev/null >"$dir/named.log" 2>&1 &
    else
        "$named" -g -n 1 -c "$dir/named.conf" </dev/null >"$dir/named.log" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$dir/bind.pid"

    local fail="" deadline answer
    deadline=$(( ${EPOCHREALTIME//[!0-9]/} + ${BIND_START_TIMEOUT:-10} * 1000000 ))
    for zone in "${BIND_ZONES[@]}"; do
        while :; do
            answer="$(dig @127.0.0.1 -p "$port" "_ready.$zone" TXT +norecurse +short +time=1 +tries=1 2>/dev/null)" || true
            [ "$answer" = "\"$nonce\"" ] && break
            if ! pid_alive "$pid"; then
                fail="named exited during start"; break 2
            fi
            if [ "${EPOCHREALTIME//[!0-9]/}" -gt "$deadline" ]; then
                fail="named did not serve $zone on 127.0.0.1:$port within ${BIND_START_TIMEOUT:-10} s"; break 2
            fi
            sleep 0.05
        done
    done
    if [ -z "$fail" ] && grep -qi "address in use" "$dir/named.log"; then
        fail="port $port is already in use"
    fi
    if [ -z "$fail" ]; then
        # Every listener on the port, TCP and UDP, must be this named.
        local tcp udp
        tcp="$(ss -Hltnp "sport = :$port")"
        udp="$(ss -Hlunp "sport = :$port")"
        if ! grep -q "pid=$pid," <<<"$tcp" || ! grep -q "pid=$pid," <<<"$udp" \
            || grep -v "pid=$pid," <<<"$tcp$udp" | grep -q .; then
            fail="port $port is not held by named (pid $pid) alone: $(printf '%s\n%s' "$tcp" "$udp" | tr -s ' \n' ' ')"
        fi
    fi
    if [ -n "$fail" ]; then
        echo "bind_start: $fail; end of $dir/named.log:" >&2
        tail -n 40 "$dir/named.log" >&2
        pid_stop named "$pid"
        rm -f "$dir/bind.pid"
        return 1
    fi

    export BIND_PID="$pid" BIND_PORT="$port" BIND_DIR="$dir" \
        BIND_KEY_NAME BIND_KEY_ALGORITHM \
        BIND_SECRET_FILE="$dir/tsig.secret" BIND_KEY_FILE="$dir/tsig.key"
}

bind_stop() {
    [ -n "${BIND_PID:-}" ] || return 0
    pid_stop named "$BIND_PID"
    if [ -n "${BIND_DIR:-}" ]; then rm -f "$BIND_DIR/bind.pid"; fi
    BIND_PID=""
}

# Stops the named started by bind_start DIR in another shell (scripts/bind-instance.sh stop),
# after checking that the PID in DIR/bind.pid is still that named (not a reused PID).
bind_stop_dir() {
    local dir="$1"
    if [ -d "$dir" ]; then dir="$(cd "$dir" && pwd)"; fi
    pid_stop_file named "$dir/bind.pid" "-c $dir/named.conf"
}
