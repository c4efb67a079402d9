#!/usr/bin/env bash
# A private BIND instance for tests that need their own DNS server (scripts/test.sh passes this
# script's absolute path as TEST_BIND_INSTANCE).
#
#   scripts/bind-instance.sh start DIR PORT
#       starts named on 127.0.0.1:PORT with its files under DIR (see scripts/lib/bind.sh: zones
#       example.test. and other.test., TSIG key dnsorch-test, hmac-sha256; BIND_UPDATE_POLICY, if
#       set, holds update-policy rules used instead of allowing every update with the key,
#       e.g. 'deny dnsorch-test name x.example.test. ANY; grant dnsorch-test zonesub ANY;') and returns once it
#       serves both zones. named keeps running after this script exits, in a session of its own,
#       with its output in DIR/named.log and its PID in DIR/bind.pid. Prints exactly these lines
#       on stdout, nothing else (diagnostics go to stderr; the secret is only in the files):
#           BIND_PID=... BIND_PORT=... BIND_DIR=... BIND_KEY_NAME=... BIND_KEY_ALGORITHM=...
#           BIND_SECRET_FILE=... BIND_KEY_FILE=...
#       Exits non-zero, with the end of named.log on stderr and nothing left running, if named
#       does not come up or the port is taken.
#   scripts/bind-instance.sh stop DIR
#       SIGTERM to that named (SIGKILL after 5 s); returns when it has exited.
#
# bind9 and bind9-dnsutils must be installed (scripts/test.sh does it).
set -euo pipefail

# shellcheck source=scripts/lib/bind.sh
. "$(dirname "$0")/lib/bind.sh"

usage() {
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
}

case "${1:-}" in
start)
    [ $# = 3 ] || usage
    BIND_DETACH=1 bind_start "$2" "$3"
    for var in BIND_PID BIND_PORT BIND_DIR BIND_KEY_NAME BIND_KEY_ALGORITHM BIND_SECRET_FILE BIND_KEY_FILE; do
        printf '%s=%s\n' "$var" "${!var}"
    done
    ;;
stop)
    [ $# = 2 ] || usage
    bind_stop_dir "$2"
    ;;
*)
    usage
    ;;
esac
