# Sourced helper for the throwaway DNS servers (scripts/lib/bind.sh, scripts/lib/knot.sh): finding
# a daemon's binary, the Debian system service an install may have started, and stopping a
# process by PID.
#
#   _daemon_bin NAME                    the path of NAME (also in /usr/sbin, which a non-root
#                                       PATH may lack); fails if there is none
#   _daemon_service_pid PIDFILE COMM    the PID in PIDFILE if a process named COMM has it
#   _daemon_stop_new_service PACKAGE SERVICE BEFORE AFTER
#                                       stops SERVICE if AFTER (its PID after installing PACKAGE)
#                                       is set and not BEFORE (its PID before): the install
#                                       started it
#   _daemon_alive PID                   true while PID exists and is not a zombie
#   _daemon_stop_pid NAME PID           SIGTERM to PID, SIGKILL after 5 s; reaps it when it is
#                                       our child (NAME is for the message)
# (the last two are pids.sh's pid_alive and pid_stop)

# shellcheck source=scripts/lib/pids.sh
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

_daemon_bin() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }
}

_daemon_service_pid() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 0
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
        echo "$pid"
    fi
}

# The package's postinst starts the service unless a policy-rc.d denies it (as in containers) or
# there is no init system. Tests use their own daemons on free ports; a system one would only
# hold port 53 (and BIND's 953), so it is stopped if the install is what started it.
_daemon_stop_new_service() {
    local package="$1" service="$2" before="$3" after="$4"
    if [ -n "$after" ] && [ "$after" != "$before" ]; then
        echo "==> the $package package started the system $service service (pid $after); stopping it" >&2
        if [ -d /run/systemd/system ]; then
            systemctl stop "$service.service"
        else
            service "$service" stop
        fi
    fi
}

_daemon_alive() { pid_alive "$1"; }

_daemon_stop_pid() { pid_stop "$1" "$2"; }
