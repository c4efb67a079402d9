#!/usr/bin/env bash
# Throughput benchmark for dnsorch (release build, embedded SQLite, simulated backend with
# no delay).
#
#   1. POST throughput: wrk against POST /api/v1/dns/create at 16 and 64 connections.
#   2. End to end: a fresh database, BENCH_REQUESTS submissions as fast as possible, then the
#      time until all are COMPLETED (the dnsorch_requests{status="COMPLETED"} gauge).
#
# Settings (environment):
#   BENCH_PORT          port to listen on (default 18080; the next free one if 18080 is taken)
#   BENCH_DURATION      wrk duration per POST run (default 10s)
#   BENCH_REQUESTS      end-to-end request count (default 10000)
#   WORKER_CONCURRENCY  dnsorch workers (default 16)
#   BENCH_E2E_TIMEOUT   seconds to wait for all COMPLETED (default 600)
#
# Exits non-zero if any answer was not 2xx (or a socket error / timeout happened).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lua="$root/scripts/bench/post.lua"
e2e="$root/scripts/bench/e2e.py"
bin="$root/target/release/dnsorch"

duration="${BENCH_DURATION:-10s}"
requests="${BENCH_REQUESTS:-10000}"
workers="${WORKER_CONCURRENCY:-16}"
e2e_timeout="${BENCH_E2E_TIMEOUT:-600}"

log() { printf '==> %s\n' "$*" >&2; }

# --- 1. wrk ----------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi

# --- 2. build --------------------------------------------------------------------------
log "cargo build --release"
(cd "$root" && cargo build --release --quiet --bin dnsorch)

# --- port --------------------------------------------------------------------------------
port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}
if [ -n "${BENCH_PORT:-}" ]; then
  port="$BENCH_PORT"
  port_free "$port" || { log "port $port (BENCH_PORT) is in use"; exit 1; }
else
  port=18080
  until port_free "$port"; do
    port=$((port + 1))
    [ "$port" -lt 18180 ] || { log "no free port in 18080-18179"; exit 1; }
  done
fi
base="http://127.0.0.1:$port"

# --- server lifecycle ------------------------------------------------------------------
dir="$(mktemp -d -t dnsorch-bench.XXXXXX)"
pid=""
run=0

stop_server() {
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do # up to 15 s for a graceful stop
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "dnsorch (pid $pid) did not stop within 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  pid=""
}

cleanup() {
  local rc=$?
  stop_server
  if [ "$rc" -ne 0 ] && [ "$run" -gt 0 ] && [ -s "$dir/dnsorch-$run.log" ]; then
    log "last lines of the dnsorch log:"
    tail -n 20 "$dir/dnsorch-$run.log" >&2 || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server() {
  stop_server
  run=$((run + 1))
  local db="$dir/bench-$run"
  mkdir -p "$db"
  (
    cd "$db"
    export DATABASE_URL="sqlite://$db/bench.db?mode=rwc" \
      BIND_ADDR="127.0.0.1:$port" \
      SIMULATED_DELAY_SECONDS=0 \
      LOG_LEVEL=warn \
      WORKER_CONCURRENCY="$workers"
    exec "$bin" run
  ) >"$dir/dnsorch-$run.log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" || true)" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "dnsorch exited during start"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "dnsorch not ready within 30 s"
      exit 1
    fi
    sleep 0.1
  done
  log "dnsorch ready on $base (pid $pid, database $db/bench.db, $workers workers)"
}

field() { # field NAME LINE
  sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"
}

rows=()
failed=0

# --- 4. POST throughput ----------------------------------------------------------------
start_server
for c in 16 64; do
  log "wrk POST /api/v1/dns/create, -t2 -c$c -d$duration"
  out="$(wrk -t2 -c"$c" -d"$duration" --latency -s "$lua" "$base/api/v1/dns/create")"
  printf '%s\n' "$out"
  line="$(grep '^BENCH ' <<<"$out" || true)"
  if [ -z "$line" ]; then
    log "wrk printed no BENCH line"
    exit 1
  fi
  wrk_non2xx="$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<<"$out")"
  non2xx="$(field non2xx "$line")"
  sock="$(field socket_errors "$line")"
  [ "$non2xx" = 0 ] && [ "${wrk_non2xx:-0}" = 0 ] || failed=1
  [ "$sock" = 0 ] || failed=1
  rows+=("| POST c=$c | $(field requests "$line") | $(field rps "$line") | $(field p50_ms "$line") | $(field p99_ms "$line") | $non2xx | $sock |")
done

# --- 5. end to end ---------------------------------------------------------------------
start_server # a fresh, empty database
log "end to end: $requests requests, 32 client threads, then wait for all COMPLETED"
set +e
line="$(python3 "$e2e" --port "$port" --requests "$requests" --threads 32 --timeout "$e2e_timeout" | grep '^E2E ')"
e2e_rc=$?
set -e
if [ -z "$line" ]; then
  log "the end-to-end run printed no E2E line"
  exit 1
fi
printf '%s\n' "$line"
[ "$e2e_rc" -eq 0 ] || failed=1
e2e_label="end-to-end $requests"
[ "$(field timed_out "$line")" = 0 ] || e2e_label="$e2e_label (TIMED OUT)"
rows+=("| $e2e_label | $(field completed "$line") | $(field completions_per_s "$line") completions/s (submit $(field submit_rps "$line")/s) | - | - | $(field non2xx "$line") | $(field errors "$line") |")

stop_server

# --- 6. table --------------------------------------------------------------------------
echo
echo "dnsorch $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, WORKER_CONCURRENCY=$workers, wrk -t2 -d$duration"
echo "| scenario | requests | req/s | p50 ms | p99 ms | non-2xx | socket errors |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"

if [ "$failed" -ne 0 ]; then
  log "FAILED: non-2xx answers, socket errors or a timeout (see above)"
  exit 1
fi
