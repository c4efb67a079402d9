#!/usr/bin/env bash
# A private PowerDNS instance for tests that stop and restart their server (scripts/test.sh
# passes this script's absolute path as TEST_POWERDNS_INSTANCE).
#
#   scripts/powerdns-instance.sh start DIR DNS_PORT API_PORT
#       starts pdns_server with its files under DIR (see scripts/lib/powerdns.sh: zone
#       example.test., SQLite in DIR, kept across restarts on the same DIR) and returns once the
#       API answers and the zone is served. pdns_server keeps running after this script exits,
#       in a session of its own, its PID in DIR/pdns.pid. Prints exactly these lines on stdout:
#           POWERDNS_PID=... POWERDNS_PORT=... POWERDNS_API_URL=... POWERDNS_API_KEY_FILE=...
#       Exits non-zero, with the end of DIR/pdns.log on stderr and nothing left running, if it
#       does not come up.
#   scripts/powerdns-instance.sh stop DIR
#       SIGTERM to that pdns_server (SIGKILL after 5 s); returns when it has exited.
set -euo pipefail

# shellcheck source=scripts/lib/powerdns.sh
. "$(dirname "$0")/lib/powerdns.sh"

usage() {
    echo "usage: $0 start DIR DNS_PORT API_PORT | stop DIR" >&2
    exit 2
}

case "${1:-}" in
start)
    [ $# = 4 ] || usage
    POWERDNS_DETACH=1 powerdns_start "$2" "$3" "$4"
    for var in POWERDNS_PID POWERDNS_PORT POWERDNS_API_URL POWERDNS_API_KEY_FILE; do
        printf '%s=%s\n' "$var" "${!var}"
    done
    ;;
stop)
    [ $# = 2 ] || usage
    powerdns_stop_dir "$2"
    ;;
*)
    usage
    ;;
esac
