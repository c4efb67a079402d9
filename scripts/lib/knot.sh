# Sourced helper: a throwaway authoritative Knot DNS (knotd) on 127.0.0.1 that takes TSIG-signed
# RFC 2136 updates, stopped by PID. Used by scripts/test.sh, beside BIND (scripts/lib/bind.sh), so
# the rfc2136 backend is tested against a second implementation.
#
#   knot_install           installs Debian's knot (knotd, knotc) if missing, and bind9-dnsutils
#                          (dig, nsupdate) for the readiness check; stops the system knot service
#                          if the install started one
#   knot_start DIR PORT    writes a fresh hmac-sha256 TSIG key "dnsorch-test" (random secret), a
#                          knot.conf, zone files, the LMDB journal and timers, the control socket
#                          and knotd.log under DIR, serving the primary zones example.test. and
#                          other.test. (updates allowed with that key; `zonefile-sync: -1`, so
#                          updates live in the journal and the zone files are never rewritten),
#                          and readonly.test., whose ACL allows no updates (the key is known but
#                          not allowed there: Knot answers NOTAUTH with TSIG error BADKEY), on
#                          127.0.0.1:PORT (UDP and TCP) only; waits (KNOT_START_TIMEOUT, 10 s)
#                          until every zone answers this instance's nonce over TCP while the knotd
#                          we started is alive. Sets and exports KNOT_PID, KNOT_PORT, KNOT_DIR,
#                          KNOT_KEY_NAME, KNOT_KEY_ALGORITHM, KNOT_SECRET_FILE (the base64 secret
#                          alone on one line, mode 0600) and KNOT_KEY_FILE (a key { } clause, as
#                          `nsupdate -k` reads it, mode 0600); writes the PID to DIR/knot.pid.
#                          Diagnostics go to stderr, never the secret.
#   knot_stop              SIGTERM to the knotd we started, SIGKILL after 5 s
#
# knotd binds UDP with SO_REUSEPORT, so a second knotd on a taken port fails only on TCP (and
# exits); readiness is therefore this instance's nonce over TCP while its PID is alive.

# shellcheck source=scripts/lib/daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

# Not inherited from the environment: knot_stop only stops a knotd that knot_start started here.
KNOT_PID=""
KNOT_KEY_NAME=dnsorch-test
KNOT_KEY_ALGORITHM=hmac-sha256
KNOT_ZONES=(example.test other.test)
# Served, but no key may update them.
KNOT_READONLY_ZONES=(readonly.test)

# knotd and knotc live in /usr/sbin, which a non-root PATH may lack.
_knot_bin() { _daemon_bin "$1"; }

# PID of the Debian system knot service (its pid file), if one runs.
_knot_service_pid() { _daemon_service_pid /run/knot/knot.pid knotd; }

knot_install() {
    if _knot_bin knotd >/dev/null && _knot_bin knotc >/dev/null \
        && command -v dig >/dev/null 2>&1 && command -v nsupdate >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing knot and bind9-dnsutils" >&2
    local before after
    before="$(_knot_service_pid)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq knot bind9-dnsutils >/dev/null
    after="$(_knot_service_pid)"
    _daemon_stop_new_service knot knot "$before" "$after"
}

# True while PID exists and is not a zombie.
_knot_alive() { _daemon_alive "$1"; }

# SIGTERM to PID, SIGKILL after 5 s; reaps it when it is our child.
_knot_stop_pid() { _daemon_stop_pid knotd "$1"; }

knot_start() {
    local dir="$1" port="$2"
    local knotd knotc
    if ! knotd="$(_knot_bin knotd)" || ! knotc="$(_knot_bin knotc)"; then
        echo "knot_start: knotd or knotc missing (knot_install)" >&2; return 1
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    # A fresh start: no journal, timers or socket from an earlier instance in the same directory.
    rm -rf "$dir/db" "$dir/run" "$dir/zones"
    mkdir -p "$dir/db" "$dir/run" "$dir/zones"

    # The secret goes from openssl straight to a 0600 file; the key clause and knot.conf's key
    # section are written by sed from that file: the secret is never in a variable, an argument
    # or on stdout. knot.conf holds it too, so it is 0600 as well.
    rm -f "$dir/tsig.secret" "$dir/tsig.key" "$dir/knot.conf"
    (umask 077 && openssl rand -base64 32 >"$dir/tsig.secret") || return 1
    if [ "$(wc -l <"$dir/tsig.secret")" != 1 ]; then
        echo "knot_start: could not write a secret to $dir/tsig.secret" >&2; return 1
    fi
    (umask 077 && sed "s/.*/key \"$KNOT_KEY_NAME\" {\n\talgorithm $KNOT_KEY_ALGORITHM;\n\tsecret \"&\";\n};/" \
        "$dir/tsig.secret" >"$dir/tsig.key") || return 1

    local nonce zone
    nonce="dnsorch-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    (
        umask 077
        exec >"$dir/knot.conf"
        cat <<CONF
server:
    rundir: "$dir/run"
    pidfile: "$dir/run/knot.pid"
    listen: 127.0.0.1@$port
log:
  - target: stderr
    any: info
database:
    storage: "$dir/db"
key:
  - id: $KNOT_KEY_NAME
    algorithm: $KNOT_KEY_ALGORITHM
CONF
        sed 's/.*/    secret: &/' "$dir/tsig.secret"
        cat <<CONF
acl:
  - id: dnsorch_update
    key: $KNOT_KEY_NAME
    action: update
template:
  - id: default
    storage: "$dir/zones"
    file: "%s.zone"
    zonefile-sync: -1
    acl: dnsorch_update
  - id: readonly
    storage: "$dir/zones"
    file: "%s.zone"
    zonefile-sync: -1
zone:
CONF
        for zone in "${KNOT_ZONES[@]}"; do
            echo "  - domain: $zone."
        done
        for zone in "${KNOT_READONLY_ZONES[@]}"; do
            printf '  - domain: %s.\n    template: readonly\n' "$zone"
        done
    ) || return 1
    for zone in "${KNOT_ZONES[@]}" "${KNOT_READONLY_ZONES[@]}"; do
        cat >"$dir/zones/$zone.zone" <<ZONE
\$TTL 300
@      IN SOA ns1.$zone. hostmaster.$zone. ( 1 3600 600 86400 300 )
       IN NS  ns1.$zone.
ns1    IN A   127.0.0.1
_ready IN TXT "$nonce"
ZONE
    done
    "$knotc" -c "$dir/knot.conf" conf-check >&2 || return 1

    # knotd runs in the foreground unless given -d; with no server.user it keeps our user.
    local pid
    "$knotd" -c "$dir/knot.conf" </dev/null >"$dir/knotd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/knot.pid"

    local fail="" deadline answer
    deadline=$(( ${EPOCHREALTIME//[!0-9]/} + ${KNOT_START_TIMEOUT:-10} * 1000000 ))
    for zone in "${KNOT_ZONES[@]}" "${KNOT_READONLY_ZONES[@]}"; do
        while :; do
            answer="$(dig @127.0.0.1 -p "$port" "_ready.$zone" TXT +tcp +norecurse +short +time=1 +tries=1 2>/dev/null)" || true
            if [ "$answer" = "\"$nonce\"" ]; then
                # The nonce is ours, but another knotd may share the UDP port: ours must live.
                _knot_alive "$pid" && break
            fi
            if ! _knot_alive "$pid"; then
                fail="knotd exited during start"; break 2
            fi
            if [ "${EPOCHREALTIME//[!0-9]/}" -gt "$deadline" ]; then
                fail="knotd did not serve $zone on 127.0.0.1:$port within ${KNOT_START_TIMEOUT:-10} s"; break 2
            fi
            sleep 0.05
        done
    done
    if [ -z "$fail" ] && grep -qi "address already in use" "$dir/knotd.log"; then
        fail="port $port is already in use"
    fi
    if [ -n "$fail" ]; then
        echo "knot_start: $fail; end of $dir/knotd.log:" >&2
        tail -n 40 "$dir/knotd.log" >&2
        _knot_stop_pid "$pid"
        rm -f "$dir/knot.pid"
        return 1
    fi

    export KNOT_PID="$pid" KNOT_PORT="$port" KNOT_DIR="$dir" \
        KNOT_KEY_NAME KNOT_KEY_ALGORITHM \
        KNOT_SECRET_FILE="$dir/tsig.secret" KNOT_KEY_FILE="$dir/tsig.key"
}

knot_stop() {
    [ -n "${KNOT_PID:-}" ] || return 0
    _knot_stop_pid "$KNOT_PID"
    if [ -n "${KNOT_DIR:-}" ]; then rm -f "$KNOT_DIR/knot.pid"; fi
    KNOT_PID=""
}
