#!/usr/bin/env bash
# Throughput benchmark for dnsorch (release build), in four topologies: SQLite, PostgreSQL +
# Redis and the Kafka intake with the simulated backend (no delay), then a real BIND with the
# rfc2136 backend.
#
# SQLite: `dnsorch run` (API and workers in one process, embedded SQLite).
#   1. POST throughput: wrk against POST /api/v1/dns/create at 16 and 64 connections.
#   2. End to end: a fresh database, BENCH_REQUESTS submissions as fast as possible, then the
#      time until all are COMPLETED (the dnsorch_requests{status="COMPLETED"} gauge).
#
# PostgreSQL + Redis: a throwaway PostgreSQL 15 with fsync, synchronous_commit and
# full_page_writes ON (POSTGRES_DURABLE=1, so every commit is a real WAL flush) and a Redis,
# both under the temp dir on free ports; `dnsorch migrate` into a fresh database per phase,
# one `dnsorch serve`, `dnsorch worker` processes. A CHECKPOINT before every measured run.
#   3. POST throughput, intake only: wrk as in 1 against `serve` with no worker running (each
#      accepted request is one INSERT and one XADD).
#   4. pgbench: scripts/bench/insert.sql, the INSERT dnsorch runs per accepted request, with
#      16 and then 64 clients (-j 2 -M prepared, BENCH_DURATION each) on the same server, in a
#      database of its own with dnsorch's schema, empty at the start like the one of 3. The
#      table shows dnsorch's POST rate as a percentage of pgbench's tps.
#   5. End to end as in 2 against `serve`, with 1 and then 2 `dnsorch worker --concurrency N`
#      processes (a fresh database each).
#
# Kafka intake: a throwaway tansu broker (Kafka protocol, sqlite storage) under the temp dir on
# a free port, one topic with 3 partitions (and its .dlq), filled once by examples/kafka_bench.
#   6. produce: BENCH_KAFKA_MESSAGES valid create messages (`kafka_bench produce`, rdkafka).
#   7. plain consumer: `kafka_bench drain`, an rdkafka consumer in a fresh group that reads the
#      topic from the start and discards it: the broker's own consume rate with dnsorch's client
#      library.
#   8. dnsorch: `dnsorch consume` on a fresh migrated database on the durable PostgreSQL of the
#      PostgreSQL topology (with its Redis: each recorded request is also XADDed to the task
#      stream; started here if that topology did not run), then `dnsorch run` on a fresh SQLite
#      database with WORKER_CONCURRENCY=0; each in a fresh consumer group, timed from the
#      process start until dnsorch_kafka_requests_recorded_total (/metrics, polled every 0.2 s)
#      reaches BENCH_KAFKA_MESSAGES. The table gives each rate from the process start and, as
#      "steady", from the first message on (the plain consumer's own timing; for dnsorch, from
#      the first poll that saw a recorded message), and dnsorch's rate as a percentage of the
#      plain consumer's.
#
# DNS: a throwaway BIND 9 (scripts/lib/bind.sh: zones example.test and other.test, TSIG key
# dnsorch-test) under the temp dir on a free port, a fresh one for every run below, each run
# adding BENCH_DNS_RECORDS A records to example.test under names of its own
# (b<i>-<run id>.example.test).
#   9. BIND alone: `nsupdate -v -k` (TCP, TSIG) sending the same adds, BENCH_DNS_NSUPDATE_BATCH
#      adds per UPDATE message (`send`); timed from the process start to its exit. A reference,
#      as the plain consumer is for Kafka: BIND's own update rate.
#  10. dnsorch: `dnsorch run` on a fresh SQLite database with a zones file
#      (DNSORCH_CONFIG) routing example.test to that BIND with the rfc2136 backend, once per
#      BENCH_DNS_CONCURRENCY value of WORKER_CONCURRENCY. scripts/bench/dns.py submits the
#      creates (32 client threads), waits until all are COMPLETED or FAILED, then reads every
#      request back (GET /api/v1/dns/requests?status=..., cursor paging): latency is
#      verified_at - created_at (accept to verified at the server; p50/p99), the rate is
#      N / (last verified_at - first created_at). Its stderr breaks the latency into phases and
#      prints the UPDATE and verification times from the request logs, and the FAILED requests'
#      logs if any.
#  11. Every name of 9 and 10 is queried at the BIND (`dig +norecurse`, one `dig -f` batch)
#      and must hold its A record; the table counts the names that do not.
#
# Settings (environment):
#   BENCH_TOPOLOGY      sqlite, postgres, kafka, dns or all (default all: in that order)
#   BENCH_PORT          port to listen on (default 18080; the next free one if 18080 is taken)
#   BENCH_DURATION      wrk and pgbench duration per run (default 10s; pgbench needs whole
#                       seconds: 10, 10s, 2m)
#   BENCH_REQUESTS      end-to-end request count (default 10000)
#   WORKER_CONCURRENCY  workers of `dnsorch run`, and --concurrency of each `dnsorch worker`
#                       (default 16)
#   BENCH_E2E_TIMEOUT   seconds to wait for all COMPLETED (default 600)
#   BENCH_KAFKA_MESSAGES  messages produced to the Kafka topic (default 100000)
#   BENCH_KAFKA_TIMEOUT   seconds allowed to each produce, drain and dnsorch intake run
#                         (default 600)
#   BENCH_DNS_RECORDS     A records per DNS run (default 5000)
#   BENCH_DNS_CONCURRENCY WORKER_CONCURRENCY of each dnsorch DNS run, space-separated
#                         (default "16 64": WORKER_CONCURRENCY, then 64)
#   BENCH_DNS_NSUPDATE_BATCH  adds per UPDATE of each nsupdate run, space-separated
#                         (default "50 1")
#   The DNS runs wait up to BENCH_E2E_TIMEOUT for all requests to finish.
#
# Exits non-zero if any answer was not 2xx (or a socket error, a timeout, a failed pgbench
# transaction, a dead-lettered Kafka message, a PENDING count other than the messages
# produced, a DNS request not COMPLETED, a failed nsupdate or a record missing at the BIND
# happened).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lua="$root/scripts/bench/post.lua"
e2e="$root/scripts/bench/e2e.py"
dnspy="$root/scripts/bench/dns.py"
sql="$root/scripts/bench/insert.sql"
bin="$root/target/release/dnsorch"

duration="${BENCH_DURATION:-10s}"
requests="${BENCH_REQUESTS:-10000}"
workers="${WORKER_CONCURRENCY:-16}"
e2e_timeout="${BENCH_E2E_TIMEOUT:-600}"
topology="${BENCH_TOPOLOGY:-all}"
kafka_messages="${BENCH_KAFKA_MESSAGES:-100000}"
kafka_timeout="${BENCH_KAFKA_TIMEOUT:-600}"
dns_records="${BENCH_DNS_RECORDS:-5000}"
dns_concurrency="${BENCH_DNS_CONCURRENCY:-$workers $([ "$workers" = 64 ] || echo 64)}"
dns_batches="${BENCH_DNS_NSUPDATE_BATCH:-50 1}"

log() { printf '==> %s\n' "$*" >&2; }

case "$topology" in
  sqlite) want_sqlite=1 want_pg=0 want_kafka=0 want_dns=0 ;;
  postgres) want_sqlite=0 want_pg=1 want_kafka=0 want_dns=0 ;;
  kafka) want_sqlite=0 want_pg=0 want_kafka=1 want_dns=0 ;;
  dns) want_sqlite=0 want_pg=0 want_kafka=0 want_dns=1 ;;
  all) want_sqlite=1 want_pg=1 want_kafka=1 want_dns=1 ;;
  *) log "BENCH_TOPOLOGY must be sqlite, postgres, kafka, dns or all, not '$topology'"; exit 2 ;;
esac
if [ "$want_kafka" = 1 ]; then
  for v in "$kafka_messages" "$kafka_timeout"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_KAFKA_MESSAGES and BENCH_KAFKA_TIMEOUT must be positive integers"; exit 2; }
  done
fi
if [ "$want_dns" = 1 ]; then
  for v in "$dns_records" $dns_concurrency $dns_batches; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_DNS_RECORDS, BENCH_DNS_CONCURRENCY and BENCH_DNS_NSUPDATE_BATCH must be positive integers"; exit 2; }
  done
  [ -n "$dns_concurrency" ] && [ -n "$dns_batches" ] || { log "BENCH_DNS_CONCURRENCY and BENCH_DNS_NSUPDATE_BATCH must not be empty"; exit 2; }
fi

# pgbench -T takes whole seconds; wrk's duration syntax is N[s|m|h].
pg_seconds=""
if [ "$want_pg" = 1 ]; then
  if [[ "$duration" =~ ^([0-9]+)([smh]?)$ ]]; then
    pg_seconds="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in
      m) pg_seconds=$((pg_seconds * 60)) ;;
      h) pg_seconds=$((pg_seconds * 3600)) ;;
    esac
  fi
  if [ -z "$pg_seconds" ] || [ "$pg_seconds" -lt 1 ]; then
    log "BENCH_DURATION '$duration' is not a whole number of seconds, minutes or hours (10, 10s, 2m)"
    exit 2
  fi
fi

# shellcheck source=scripts/lib/postgres.sh
. "$root/scripts/lib/postgres.sh"
# shellcheck source=scripts/lib/redis.sh
. "$root/scripts/lib/redis.sh"
# shellcheck source=scripts/lib/tansu.sh
. "$root/scripts/lib/tansu.sh"
# shellcheck source=scripts/lib/bind.sh
. "$root/scripts/lib/bind.sh"

# --- 1. tools ----------------------------------------------------------------------------
if { [ "$want_sqlite" = 1 ] || [ "$want_pg" = 1 ]; } && ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
if [ "$want_pg" = 1 ] || [ "$want_kafka" = 1 ]; then
  postgres_install >&2 # postgresql-15, which brings pgbench
  redis_install >&2
fi
if [ "$want_kafka" = 1 ]; then
  tansu_install >&2
fi
if [ "$want_dns" = 1 ]; then
  bind_install >&2 # named, nsupdate, dig
fi

# --- 2. build --------------------------------------------------------------------------
build=(--bin dnsorch)
[ "$want_kafka" = 0 ] || build+=(--example kafka_bench)
log "cargo build --release ${build[*]}"
(cd "$root" && cargo build --release --quiet "${build[@]}")

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
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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

# --- process lifecycle -------------------------------------------------------------------
dir="$(mktemp -d -t dnsorch-bench.XXXXXX)"
pids=() # the dnsorch processes running now
logs=() # their logs
run=0
kbench_pid="" # a kafka_bench process running now
pg_dir=""     # the data directory of the PostgreSQL we started, once started

# SIGTERM to every dnsorch process we started, then up to 15 s each for a graceful stop.
stop_server() {
  local p
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 150); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      log "dnsorch (pid $p) did not stop within 15 s; killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  pids=()
}

# With LOG_LEVEL=warn, anything a dnsorch process logged is a warning or an error: say so.
report_logs() {
  local f
  for f in "${logs[@]}"; do
    if [ -s "$f" ]; then
      log "$(basename "$f"): $(wc -l <"$f") warning/error lines; the last 3:"
      tail -n 3 "$f" >&2 || true
    fi
  done
}

cleanup() {
  local rc=$?
  if [ -n "$kbench_pid" ]; then
    kill -TERM "$kbench_pid" 2>/dev/null || true
    wait "$kbench_pid" 2>/dev/null || true
  fi
  stop_server
  if [ "$rc" -ne 0 ]; then
    local f
    for f in "${logs[@]}"; do
      if [ -s "$f" ]; then
        log "last lines of $(basename "$f"):"
        tail -n 20 "$f" >&2 || true
      fi
    done
    if [ -n "${POSTGRES_PID:-}" ] && [ -s "$pg_dir/postgres.log" ]; then
      log "last lines of the PostgreSQL log:"
      tail -n 10 "$pg_dir/postgres.log" >&2 || true
    fi
    if [ -n "${TANSU_PID:-}" ] && [ -s "$dir/tansu/tansu.log" ]; then
      log "last lines of the tansu log:"
      sed 's/\x1b\[[0-9;]*m//g' "$dir/tansu/tansu.log" | tail -n 20 >&2 || true
    fi
  fi
  if [ "$rc" -ne 0 ] && [ -n "${BIND_PID:-}" ] && [ -s "$BIND_DIR/named.log" ]; then
    log "last lines of the named log:"
    tail -n 10 "$BIND_DIR/named.log" >&2 || true
  fi
  tansu_stop
  redis_stop
  postgres_stop
  bind_stop
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Until GET /readyz answers 200; fails if one of our dnsorch processes exits first.
wait_ready() {
  local deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" || true)" = 200 ]; do
    check_alive
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "dnsorch not ready within 30 s"
      exit 1
    fi
    sleep 0.1
  done
}

check_alive() {
  local p
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      log "dnsorch (pid $p) exited"
      exit 1
    fi
  done
}

zones_file="" # the DNSORCH_CONFIG of `dnsorch run`, when set (the DNS topology)

# start_server [CONCURRENCY]: `dnsorch run` on a fresh SQLite database, with CONCURRENCY
# workers (default WORKER_CONCURRENCY) and the zones of $zones_file (none: the simulated
# backend for every name).
start_server() {
  local concurrency="${1:-$workers}"
  stop_server
  run=$((run + 1))
  local db="$dir/bench-$run"
  mkdir -p "$db"
  (
    cd "$db"
    unset KAFKA_BROKER_URL DNSORCH_CONFIG # no Kafka intake and no zones unless a phase asks
    [ -z "$zones_file" ] || export DNSORCH_CONFIG="$zones_file"
    export DATABASE_URL="sqlite://$db/bench.db?mode=rwc" \
      BIND_ADDR="127.0.0.1:$port" \
      SIMULATED_DELAY_SECONDS=0 \
      LOG_LEVEL=warn \
      WORKER_CONCURRENCY="$concurrency"
    exec "$bin" run
  ) >"$dir/dnsorch-$run.log" 2>&1 &
  pids=("$!")
  logs=("$dir/dnsorch-$run.log")
  wait_ready
  log "dnsorch ready on $base (pid ${pids[0]}, database $db/bench.db, $concurrency workers${zones_file:+, zones $zones_file})"
}

field() { # field NAME LINE
  sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"
}

failed=0
row=""
rps=""

# wrk_post C LABEL: one wrk run against $base; sets row and rps.
wrk_post() {
  local c="$1" label="$2" out line wrk_non2xx non2xx sock
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
  rps="$(field rps "$line")"
  row="| $label | $(field requests "$line") | $rps | $(field p50_ms "$line") | $(field p99_ms "$line") | $non2xx | $sock |"
}

# e2e_run LABEL: BENCH_REQUESTS submissions to $base, then until all are COMPLETED; sets row.
e2e_run() {
  local label="$1" line e2e_rc
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
  [ "$(field timed_out "$line")" = 0 ] || label="$label (TIMED OUT)"
  row="| $label | $(field completed "$line") | $(field completions_per_s "$line") completions/s (submit $(field submit_rps "$line")/s) | - | - | $(field non2xx "$line") | $(field errors "$line") |"
}

# ===================================== SQLite ==========================================
rows=()
if [ "$want_sqlite" = 1 ]; then
  # --- 4. POST throughput --------------------------------------------------------------
  start_server
  for c in 16 64; do
    wrk_post "$c" "POST c=$c"
    rows+=("$row")
  done

  # --- 5. end to end -------------------------------------------------------------------
  start_server # a fresh, empty database
  e2e_run "end-to-end $requests"
  rows+=("$row")
  report_logs
  stop_server
fi

# ================================ PostgreSQL + Redis ====================================
# ======================== PostgreSQL + Redis helpers (also for Kafka) ===================
# pg_up: the durable PostgreSQL and the Redis, started under the temp dir on free ports unless
# they are running already (the PostgreSQL topology leaves them running for the Kafka one).
pg_up() {
  if [ -z "${POSTGRES_PID:-}" ]; then
    pg_port="$(free_port)"
    pg_dir="$dir/postgres-$pg_port"
    log "starting PostgreSQL 15 (fsync on) on 127.0.0.1:$pg_port"
    POSTGRES_DURABLE=1 postgres_start "$pg_dir" "$pg_port" >&2 || { log "PostgreSQL did not start"; exit 1; }
    [ "$(psql_ -d postgres -c 'show fsync')" = on ] || { log "PostgreSQL runs with fsync off"; exit 1; }
    [ "$(psql_ -d postgres -c 'show synchronous_commit')" = on ] || { log "PostgreSQL runs with synchronous_commit off"; exit 1; }
  fi
  if [ -z "${REDIS_PID:-}" ]; then
    redis_port="$(free_port)"
    log "starting Redis on 127.0.0.1:$redis_port"
    redis_start "$dir/redis-$redis_port" "$redis_port" >&2 || { log "Redis did not start"; exit 1; }
  fi
}

psql_() { "$PGBIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

# In a subshell: the environment of a dnsorch process on database (and stream) $1.
pg_env() {
  unset KAFKA_BROKER_URL DNSORCH_CONFIG # no Kafka intake and no zones unless a phase asks
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$1" \
    CELERY_BROKER_URL="$REDIS_URL" \
    TASK_STREAM="$1" \
    BIND_ADDR="127.0.0.1:$port" \
    SIMULATED_DELAY_SECONDS=0 \
    LOG_LEVEL=warn \
    WORKER_CONCURRENCY="$workers"
}

# pg_database DB: a new database with dnsorch's schema (`dnsorch migrate`).
pg_database() {
  psql_ -d postgres -c "create database $1" >/dev/null
  if ! (cd "$dir" && pg_env "$1" && exec "$bin" migrate) >"$dir/migrate-$1.log" 2>&1; then
    log "dnsorch migrate failed:"
    cat "$dir/migrate-$1.log" >&2
    exit 1
  fi
}

# pg_spawn DB NAME ARGS...: `dnsorch ARGS` on DB in the background, logging to NAME.log.
pg_spawn() {
  local db="$1" name="$2"
  shift 2
  (cd "$dir" && pg_env "$db" && exec "$bin" "$@") >"$dir/$name.log" 2>&1 &
  pids+=("$!")
  logs+=("$dir/$name.log")
}

# wait_workers N: until N worker processes read the task stream. Each has one connection
# for its blocking XREADGROUP, and only the processes of this phase are connected (Redis 7
# lists a blocked reader as a consumer only once it has read an entry, so XINFO CONSUMERS
# cannot tell).
wait_workers() {
  local deadline=$((SECONDS + 30)) n
  while :; do
    n="$(redis-cli -h 127.0.0.1 -p "$redis_port" client list 2>/dev/null | grep -c ' cmd=xreadgroup ' || true)"
    [ "${n:-0}" -ge "$1" ] && break
    check_alive
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$1 worker processes not reading the task stream within 30 s (${n:-0} are)"
      exit 1
    fi
    sleep 0.1
  done
}

checkpoint() { psql_ -d postgres -c checkpoint >/dev/null; }

pg_rows=()
pg_note=""
if [ "$want_pg" = 1 ]; then
  pg_up

  # --- 6. POST throughput, intake only -------------------------------------------------
  pg_database bench_post
  logs=()
  pg_spawn bench_post serve serve
  wait_ready
  log "dnsorch serve ready on $base (pid ${pids[0]}, database bench_post, no workers)"
  post_rps=()
  for c in 16 64; do
    checkpoint
    wrk_post "$c" "POST c=$c (serve, intake only, no workers)"
    pg_rows+=("$row")
    post_rps+=("$rps")
  done
  serve_conns="$(psql_ -d postgres -c "select count(*) from pg_stat_activity where datname = 'bench_post'")"
  report_logs
  stop_server

  # --- 7. pgbench ----------------------------------------------------------------------
  pg_database bench_pgbench
  mkdir -p "$dir/pgbench"
  pg_tps=()
  for c in 16 64; do
    checkpoint
    log "pgbench -n -f insert.sql -c $c -j 2 -T $pg_seconds -M prepared"
    set +e
    out="$("$PGBIN/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -n -f "$sql" -c "$c" -j 2 \
      -T "$pg_seconds" -M prepared -l --log-prefix="$dir/pgbench/c$c" bench_pgbench 2>&1)"
    pg_rc=$?
    set -e
    printf '%s\n' "$out"
    # "tps = N (without initial connection time)": connection set-up excluded.
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1)"
    [ -z "$tps" ] || tps="$(awk -v t="$tps" 'BEGIN { printf "%.1f", t }')"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
    pg_failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")"
    if [ -z "$tps" ] || [ -z "$txns" ]; then
      log "pgbench printed no tps line (exit status $pg_rc)"
      exit 1
    fi
    [ "$pg_rc" -eq 0 ] && [ "${pg_failed:-0}" = 0 ] || failed=1
    # Per-transaction log (-l): the third field is the latency in microseconds.
    read -r p50 p99 < <(cat "$dir/pgbench/c$c".* | awk '{ print $3 }' | sort -n | awk '
      { v[NR] = $1 }
      function pct(p,  i) { i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1; return v[i] / 1000 }
      END { if (NR) printf "%.3f %.3f\n", pct(0.50), pct(0.99); else print "- -" }')
    pg_rows+=("| pgbench INSERT c=$c (-j 2 -M prepared) | $txns | $tps | $p50 | $p99 | - | ${pg_failed:-?} failed |")
    pg_tps+=("$tps")
  done
  rm -rf "$dir/pgbench"
  for i in 0 1; do
    c=$((16 * (i * 3 + 1)))
    ratio="$(awk -v a="${post_rps[$i]}" -v b="${pg_tps[$i]}" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')"
    pg_rows+=("| dnsorch intake / pgbench INSERT, c=$c | - | $ratio | - | - | - | - |")
  done

  # --- 8. end to end, 1 and 2 worker processes -----------------------------------------
  for n in 1 2; do
    db="bench_e2e_$n"
    pg_database "$db"
    logs=()
    for w in $(seq 1 "$n"); do
      pg_spawn "$db" "worker-$n-$w" worker --concurrency "$workers"
    done
    pg_spawn "$db" "serve-e2e-$n" serve
    wait_ready
    wait_workers "$n"
    log "dnsorch serve ready on $base, $n worker process(es) with --concurrency $workers (database $db)"
    checkpoint
    if [ "$n" = 1 ]; then
      label="end-to-end $requests, 1 worker process (--concurrency $workers)"
    else
      label="end-to-end $requests, $n worker processes (--concurrency $workers each)"
    fi
    e2e_run "$label"
    pg_rows+=("$row")
    report_logs
    stop_server
  done

  pg_note="PostgreSQL $(psql_ -d postgres -c 'show server_version' | cut -d' ' -f1) (fsync=on, synchronous_commit=on), $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/Redis \1/p'); serve held $serve_conns PostgreSQL connections after POST c=64"
fi

# ===================================== Kafka intake ======================================
# The broker can die under load (tansu 0.6.0 has panicked in its storage service): fail at
# once rather than at the timeout. The EXIT trap prints the end of its log.
check_tansu() {
  if ! kill -0 "$TANSU_PID" 2>/dev/null; then
    log "tansu (pid $TANSU_PID) exited"
    exit 1
  fi
}

# kbench_run PREFIX ARGS...: `kafka_bench ARGS` (bounded by BENCH_KAFKA_TIMEOUT); sets kb_line
# (its output line starting with PREFIX) and kb_seconds (its time from the process start).
kbench_run() {
  local prefix="$1" t0 t1 rc=0 deadline=$((SECONDS + kafka_timeout))
  shift
  t0="${EPOCHREALTIME/,/.}"
  "$kbench" "$@" >"$dir/kbench.out" 2>"$dir/kbench.err" &
  kbench_pid=$!
  while kill -0 "$kbench_pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "kafka_bench $1 did not finish within $kafka_timeout s"
      exit 1 # the EXIT trap stops it
    fi
    check_tansu
    sleep 0.05
  done
  wait "$kbench_pid" || rc=$?
  t1="${EPOCHREALTIME/,/.}"
  kbench_pid=""
  kb_line="$(grep "^$prefix " "$dir/kbench.out" || true)"
  if [ "$rc" -ne 0 ] || [ -z "$kb_line" ]; then
    log "kafka_bench $1 failed (exit status $rc):"
    cat "$dir/kbench.out" "$dir/kbench.err" >&2
    exit 1
  fi
  printf '%s\n' "$kb_line"
  kb_seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

# kafka_wait T0 LABEL: polls /metrics every 0.2 s until the dnsorch process started at T0
# (EPOCHREALTIME) has recorded or dead-lettered all BENCH_KAFKA_MESSAGES; then checks the
# PENDING count in its database. Appends a row to k_rows; sets k_rate (from T0) and k_steady
# (from the first poll that saw a recorded message).
kafka_wait() {
  local t0="$1" label="$2" deadline=$((SECONDS + kafka_timeout)) m now recorded dead
  local first="" first_n=0 seconds pending warnings=0 f
  while :; do
    m="$(curl -s --max-time 1 "$base/metrics" || true)"
    now="${EPOCHREALTIME/,/.}"
    recorded="$(awk '$1 == "dnsorch_kafka_requests_recorded_total" { printf "%d", $2 }' <<<"$m")"
    dead="$(awk '$1 ~ /^dnsorch_kafka_dead_letters_total/ { s += $2 } END { printf "%d", s }' <<<"$m")"
    recorded="${recorded:-0}"
    if [ -z "$first" ] && [ "$recorded" -gt 0 ]; then
      first="$now" first_n="$recorded"
    fi
    [ $((recorded + dead)) -lt "$kafka_messages" ] || break
    check_alive
    check_tansu
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$label: $recorded of $kafka_messages messages recorded within $kafka_timeout s"
      label="$label (TIMED OUT)"
      failed=1
      break
    fi
    sleep 0.2
  done
  seconds="$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.3f", b - a }')"
  k_rate="$(awk -v n="$recorded" -v s="$seconds" 'BEGIN { printf "%.1f", (s > 0) ? n / s : 0 }')"
  k_steady="$(awk -v n="$recorded" -v n0="$first_n" -v a="${first:-0}" -v b="$now" \
    'BEGIN { if (a > 0 && b > a) printf "%.1f", (n - n0) / (b - a); else print "-" }')"
  # dnsorch_requests{status="PENDING"} is read from the database at each scrape.
  pending="$(curl -s --max-time 10 "$base/metrics" | awk '$1 == "dnsorch_requests{status=\"PENDING\"}" { printf "%d", $2 }' || true)"
  if [ "${pending:-x}" != "$kafka_messages" ]; then
    log "$label: the database holds ${pending:-?} PENDING requests, not $kafka_messages"
    failed=1
  fi
  if [ "$dead" != 0 ]; then
    log "$label: $dead messages dead-lettered"
    failed=1
  fi
  for f in "${logs[@]}"; do
    [ ! -s "$f" ] || warnings=$((warnings + $(wc -l <"$f")))
  done
  log "$label: $recorded recorded in $seconds s ($k_rate/s; steady $k_steady/s)"
  k_rows+=("| $label | $recorded | $seconds | $k_rate | $k_steady | $dead | ${pending:-?} | $warnings |")
}

k_rows=()
k_note=""
if [ "$want_kafka" = 1 ]; then
  kbench="$root/target/release/examples/kafka_bench"
  k_topic="dns_requests_bench"

  # --- 10. broker and topic -----------------------------------------------------------
  tansu_port="$(free_port)"
  log "starting tansu on 127.0.0.1:$tansu_port (sqlite storage under the temp dir)"
  tansu_start "$dir/tansu" "$tansu_port"
  for spec in "$k_topic:3" "$k_topic.dlq:1"; do
    if ! "$TANSU" topic create "${spec%:*}" --partitions "${spec##*:}" --broker "tcp://$KAFKA_URL" \
      >"$dir/topic.log" 2>&1; then
      log "could not create topic ${spec%:*}:"
      cat "$dir/topic.log" >&2
      exit 1
    fi
  done
  log "tansu (pid $TANSU_PID) at $KAFKA_URL, topic $k_topic (3 partitions) and $k_topic.dlq (1)"

  # --- 11. produce ----------------------------------------------------------------------
  log "kafka_bench produce: $kafka_messages messages"
  kbench_run PRODUCED produce "$KAFKA_URL" "$k_topic" "$kafka_messages"
  k_rows+=("| produce (kafka_bench, rdkafka, linger.ms=20) | $(field messages "$kb_line") | $(field seconds "$kb_line") | $(field rate "$kb_line") | - | - | - | - |")

  # --- 12. plain consumer -----------------------------------------------------------------
  log "kafka_bench drain: a plain rdkafka consumer reads all $kafka_messages messages"
  kbench_run DRAINED drain "$KAFKA_URL" "$k_topic" "$kafka_messages"
  plain_rate="$(awk -v n="$kafka_messages" -v s="$kb_seconds" 'BEGIN { printf "%.1f", n / s }')"
  plain_steady="$(field rate "$kb_line")"
  k_rows+=("| plain consumer (kafka_bench drain, rdkafka, fresh group) | $(field messages "$kb_line") | $kb_seconds | $plain_rate | $plain_steady | - | - | - |")

  # --- 13. dnsorch consume, PostgreSQL ----------------------------------------------------
  pg_up
  pg_database bench_kafka
  checkpoint
  logs=()
  log "dnsorch consume on a fresh PostgreSQL database (bench_kafka), Redis task stream"
  t0="${EPOCHREALTIME/,/.}"
  (
    cd "$dir" && pg_env bench_kafka &&
      export KAFKA_BROKER_URL="$KAFKA_URL" KAFKA_DNS_TOPIC="$k_topic" KAFKA_GROUP_ID=dnsorch-bench-pg &&
      exec "$bin" consume
  ) >"$dir/consume-pg.log" 2>&1 &
  pids+=("$!")
  logs+=("$dir/consume-pg.log")
  kafka_wait "$t0" "dnsorch consume, PostgreSQL + Redis"
  pg_kafka_rate="$k_rate" pg_kafka_steady="$k_steady"
  report_logs
  stop_server

  # --- 14. dnsorch run, SQLite ------------------------------------------------------------
  run=$((run + 1))
  db="$dir/bench-$run"
  mkdir -p "$db"
  logs=("$dir/run-kafka.log")
  log "dnsorch run on a fresh SQLite database, WORKER_CONCURRENCY=0"
  t0="${EPOCHREALTIME/,/.}"
  (
    cd "$db"
    unset DNSORCH_CONFIG # no zones: the simulated backend
    export DATABASE_URL="sqlite://$db/bench.db?mode=rwc" \
      BIND_ADDR="127.0.0.1:$port" \
      SIMULATED_DELAY_SECONDS=0 \
      LOG_LEVEL=warn \
      WORKER_CONCURRENCY=0 \
      KAFKA_BROKER_URL="$KAFKA_URL" \
      KAFKA_DNS_TOPIC="$k_topic" \
      KAFKA_GROUP_ID=dnsorch-bench-sqlite
    exec "$bin" run
  ) >"$dir/run-kafka.log" 2>&1 &
  pids=("$!")
  kafka_wait "$t0" "dnsorch run, SQLite, WORKER_CONCURRENCY=0"
  sqlite_kafka_rate="$k_rate" sqlite_kafka_steady="$k_steady"
  report_logs
  stop_server

  # tansu logs little (its banner) unless something went wrong.
  tansu_errors="$(grep -ciE 'panic|error' "$dir/tansu/tansu.log" || true)"
  if [ "${tansu_errors:-0}" -gt 0 ]; then
    log "tansu.log: $tansu_errors lines with 'panic' or 'error'; the last 3:"
    grep -iE 'panic|error' "$dir/tansu/tansu.log" | tail -n 3 >&2 || true
  fi

  pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.1f%%", 100 * a / b; else print "-" }'; }
  k_rows+=("| dnsorch consume (PostgreSQL) / plain consumer | - | - | $(pct "$pg_kafka_rate" "$plain_rate") | $(pct "$pg_kafka_steady" "$plain_steady") | - | - | - |")
  k_rows+=("| dnsorch run (SQLite) / plain consumer | - | - | $(pct "$sqlite_kafka_rate" "$plain_rate") | $(pct "$sqlite_kafka_steady" "$plain_steady") | - | - | - |")
  k_note="$("$TANSU" --version 2>/dev/null | head -n 1) (sqlite storage, ${tansu_errors:-0} panic/error log lines), topic with 3 partitions; PostgreSQL $(psql_ -d postgres -c 'show server_version' | cut -d' ' -f1) (fsync=on, synchronous_commit=on)"
fi

# ========================================= DNS ===========================================
# dns_bind_up NAME: a fresh BIND with its files under $dir/NAME, on a free port (the BIND of
# the previous run stopped first).
dns_bind_up() {
  bind_stop
  bind_start "$dir/$1" "$(free_port)" >&2 || { log "BIND did not start"; exit 1; }
  log "BIND (pid $BIND_PID) on 127.0.0.1:$BIND_PORT, zones example.test and other.test"
}

# dns_missing FILE: of the "name address" lines of FILE, how many names do not hold exactly
# that one A record at the BIND (one `dig -f` batch, RD=0).
dns_missing() {
  awk '{ print $1, "A" }' "$1" >"$1.dig"
  dig @127.0.0.1 -p "$BIND_PORT" +norecurse +noall +answer +time=2 +tries=2 -f "$1.dig" |
    awk -v want="$1" '
      BEGIN { while ((getline l < want) > 0) { split(l, f, " "); t[f[1]] = f[2] } }
      $4 == "A" { name = tolower($1); sub(/\.$/, "", name); got[name] = got[name] " " $5 }
      END { bad = 0; for (k in t) if (got[k] != " " t[k]) bad++; print bad }'
}

# dns_bind_errors: lines of the BIND's log that report a problem (it logs every update at
# info level; its "built with" line names compiler flags such as -Werror); summed into
# bind_errors.
bind_errors=0
bind_problem='\b(error|errors|failed|failure|refused|denied|timed out)\b'
dns_bind_errors() {
  local n
  n="$(grep -v ' built with ' "$BIND_DIR/named.log" | grep -ciE "$bind_problem" || true)"
  if [ "${n:-0}" -gt 0 ]; then
    log "$(basename "$BIND_DIR")/named.log: $n lines with error, failed, refused, denied or timed out; the last 3:"
    grep -v ' built with ' "$BIND_DIR/named.log" | grep -iE "$bind_problem" | tail -n 3 >&2 || true
  fi
  bind_errors=$((bind_errors + ${n:-0}))
}

# dns_run LABEL RUN_ID: BENCH_DNS_RECORDS creates through $base into the BIND (scripts/bench/
# dns.py, names b<i>-RUN_ID.example.test), then the check of every name at the BIND; sets row.
dns_run() {
  local label="$1" line dns_rc warnings=0 f
  log "DNS: $dns_records A records through POST /api/v1/dns/create, 32 client threads, then until all are COMPLETED or FAILED"
  set +e
  line="$(python3 "$dnspy" --port "$port" --requests "$dns_records" --threads 32 \
    --timeout "$e2e_timeout" --run-id "$2" --dns-port "$BIND_PORT" | grep '^DNS ')"
  dns_rc=$?
  set -e
  if [ -z "$line" ]; then
    log "the DNS run printed no DNS line"
    exit 1
  fi
  printf '%s\n' "$line"
  [ "$dns_rc" -eq 0 ] || failed=1
  [ "$(field timed_out "$line")" = 0 ] || label="$label (TIMED OUT)"
  for f in "${logs[@]}"; do
    [ ! -s "$f" ] || warnings=$((warnings + $(wc -l <"$f")))
  done
  row="| $label | $(field completed "$line") COMPLETED of $dns_records | $(field span_s "$line") | $(field verified_per_s "$line") verified/s (submit $(field submit_rps "$line")/s) | $(field p50_ms "$line") | $(field p99_ms "$line") | $(field failed "$line") | $(field dig_missing "$line") | $warnings |"
}

d_rows=()
d_note=""
if [ "$want_dns" = 1 ]; then
  dns_id="r$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" # in every name of this invocation

  # --- 15. BIND alone: nsupdate -------------------------------------------------------------
  for b in $dns_batches; do
    dns_bind_up "bind-nsupdate-$b"
    ns_in="$dir/nsupdate-$b.in"
    awk -v n="$dns_records" -v b="$b" -v id="$dns_id" -v port="$BIND_PORT" -v names="$dir/nsupdate-$b.names" '
      BEGIN {
        print "server 127.0.0.1 " port
        print "zone example.test"
        for (i = 0; i < n; i++) {
          name = sprintf("n%d-%s-u%d.example.test", i, id, b)
          address = sprintf("10.%d.%d.%d", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
          print "update add " name " 300 IN A " address
          print name, address >names
          if ((i + 1) % b == 0 || i == n - 1) print "send"
        }
      }' >"$ns_in"
    log "nsupdate -v: $dns_records adds, $b per UPDATE, to 127.0.0.1:$BIND_PORT"
    t0="${EPOCHREALTIME/,/.}"
    set +e
    nsupdate -v -k "$BIND_KEY_FILE" "$ns_in" >"$dir/nsupdate-$b.log" 2>&1
    ns_rc=$?
    set -e
    t1="${EPOCHREALTIME/,/.}"
    if [ "$ns_rc" -ne 0 ] || [ -s "$dir/nsupdate-$b.log" ]; then
      log "nsupdate exited with status $ns_rc; the last lines of its output:"
      tail -n 5 "$dir/nsupdate-$b.log" >&2 || true
      failed=1
    fi
    seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    rate="$(awk -v n="$dns_records" -v s="$seconds" 'BEGIN { printf "%.1f", n / s }')"
    missing="$(dns_missing "$dir/nsupdate-$b.names")"
    [ "$missing" = 0 ] || failed=1
    log "nsupdate, $b per UPDATE: $dns_records adds in $seconds s ($rate/s), $missing missing at the BIND"
    dns_bind_errors
    d_rows+=("| nsupdate -v, $b add(s) per UPDATE (BIND alone) | $dns_records (exit status $ns_rc) | $seconds | $rate applied/s | - | - | - | $missing | - |")
  done

  # --- 16. dnsorch run, rfc2136 backend ------------------------------------------------------
  for c in $dns_concurrency; do
    dns_bind_up "bind-c$c"
    zones_file="$dir/zones-c$c.toml"
    cat >"$zones_file" <<TOML
[zones."example.test"]
backend = "rfc2136"
server = "127.0.0.1:$BIND_PORT"
key_name = "$BIND_KEY_NAME"
key_algorithm = "$BIND_KEY_ALGORITHM"
key_secret_file = "$BIND_SECRET_FILE"
timeout_seconds = 5
verify_timeout_seconds = 10
TOML
    start_server "$c"
    dns_run "dnsorch run, rfc2136, WORKER_CONCURRENCY=$c" "$dns_id-c$c"
    d_rows+=("$row")
    report_logs
    stop_server
    zones_file=""
    dns_bind_errors
  done
  bind_stop

  d_note="$(/usr/sbin/named -v 2>/dev/null || named -v) (named -n 1: one worker thread; journal under $(dirname "$dir"), $(df -PT "$dir" | awk 'NR == 2 { print $2 }')), a fresh one per run, ${bind_errors} error lines in its logs; nsupdate over TCP with TSIG; dnsorch: latency from accept (created_at) to verified_at, rate N / (last verified_at - first created_at); nsupdate: N / wall time (no verification)"
fi

# --- 9. tables ---------------------------------------------------------------------------
rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$want_sqlite" = 1 ]; then
  echo
  echo "SQLite (dnsorch run): dnsorch $rev, $(nproc) CPUs, WORKER_CONCURRENCY=$workers, wrk -t2 -d$duration"
  echo "| scenario | requests | req/s | p50 ms | p99 ms | non-2xx | socket errors |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
fi
if [ "$want_pg" = 1 ]; then
  echo
  echo "PostgreSQL + Redis (dnsorch serve / worker): dnsorch $rev, $(nproc) CPUs, wrk -t2 -d$duration, pgbench -T $pg_seconds"
  echo "$pg_note"
  echo "| scenario | requests | req/s | p50 ms | p99 ms | non-2xx | errors |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${pg_rows[@]}"
fi
if [ "$want_kafka" = 1 ]; then
  echo
  echo "Kafka intake: dnsorch $rev, $(nproc) CPUs, $kafka_messages messages"
  echo "$k_note"
  echo "| scenario | messages | seconds | msg/s | steady msg/s | dead letters | PENDING in database | warning lines |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${k_rows[@]}"
fi
if [ "$want_dns" = 1 ]; then
  echo
  echo "DNS (rfc2136 into BIND): dnsorch $rev, $(nproc) CPUs, $dns_records A records per run"
  echo "$d_note"
  echo "| scenario | records | seconds | records/s | p50 ms | p99 ms | FAILED | missing at BIND | warning lines |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${d_rows[@]}"
fi

if [ "$failed" -ne 0 ]; then
  log "FAILED: non-2xx answers, socket errors, failed pgbench transactions, dead letters, a wrong PENDING count, DNS requests not COMPLETED, a failed nsupdate, records missing at the BIND or a timeout (see above)"
  exit 1
fi
