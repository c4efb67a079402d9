#!/usr/bin/env bash
# Throughput benchmark for dnsorch (release build), in four topologies: SQLite, PostgreSQL +
# Redis and the Kafka intake with the simulated backend (no delay), then a real BIND with the
# rfc2136 backend; the Kafka consumer's memory under a flood of large messages; and, on its
# own, a comparison of POST throughput with an earlier commit.
#
# Tokens: every /api/v1 call and every /metrics scrape carries `Authorization: Bearer <token>`
# (wrk's scripts/bench/post.lua and the Python clients read it from BENCH_TOKEN, which this
# script sets for them; curl sends it from a header file in the temp dir). `dnsorch run` on a
# fresh SQLite database writes its admin token to dnsorch-admin.token beside the database; the
# token used is not that one but a least-privilege one, `dnsorch token create --account bench
# --name bench --metrics --policy 'example.test=read,create,delete'` (on PostgreSQL after
# `dnsorch migrate`), so every request goes through the policy check and the token bucket, whose
# limits (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST) are set out of reach here: the bench measures
# the checks, not the limit. Kafka messages carry it in their `authorization` header
# (examples/kafka_bench produce); KAFKA_TRUSTED_ACCOUNTS is not used.
# Authentication cannot be turned off: every dnsorch of this tree started here must answer a
# POST without a token with 401 and serve /metrics to the bench token (checked once it is
# ready), and METRICS_PUBLIC, KAFKA_TRUSTED_ACCOUNTS, TOKEN_CACHE_SECONDS, API_URL,
# API_TOKEN_FILE and OPS_ADDR are removed from the dnsorch processes' environment. `dnsorch
# worker` and `dnsorch consume` listen on OPS_ADDR, not BIND_ADDR: the workers get the default
# (127.0.0.1:0), `consume` gets BENCH_PORT (nothing else listens there then) so that its
# /metrics can be polled. The dnsorch binary measured is a copy of target/release/dnsorch in
# the temp dir, so that another build in the tree cannot replace it during the run.
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
# a free port, one topic with 3 partitions (and its .dlq) per dnsorch run below, since each
# topic's messages carry the token of the database they are recorded into.
#   6. produce: BENCH_KAFKA_MESSAGES valid create messages into each topic (`kafka_bench
#      produce`, rdkafka), each with an `authorization: Bearer <token>` header: a token created
#      in the fresh PostgreSQL database of 8 for the first topic, one created in the fresh
#      SQLite database of 8 (`dnsorch token create`, before `dnsorch run` opens it) for the other.
#   7. plain consumer: `kafka_bench drain`, an rdkafka consumer in a fresh group that reads the
#      first topic from the start and discards it: the broker's own consume rate with dnsorch's
#      client library.
#   8. dnsorch: `dnsorch consume` on a fresh migrated database on the durable PostgreSQL of the
#      PostgreSQL topology (with its Redis: each recorded request is also XADDed to the task
#      stream; started here if that topology did not run), then `dnsorch run` on a fresh SQLite
#      database with WORKER_CONCURRENCY=0; each in a fresh consumer group on its own topic,
#      every message authenticated by its header (one database lookup per process and
#      TOKEN_CACHE_SECONDS, the token cache), timed from the process start until
#      dnsorch_kafka_requests_recorded_total (/metrics, polled every 0.2 s) reaches
#      BENCH_KAFKA_MESSAGES. The table gives each rate from the process start and, as
#      "steady", from the first message on (the plain consumer's own timing; for dnsorch, from
#      the first poll that saw a recorded message), and dnsorch's rate as a percentage of the
#      plain consumer's.
#
# Kafka consumer memory (BENCH_TOPOLOGY=kafka-rss, also part of "all"): the consumer's peak RSS
# under a flood of large messages stays within a bound. On the tansu broker of the Kafka
# topology (started here if that one did not run), a topic of 3 partitions (and its .dlq):
#  15. produce: BENCH_KAFKA_RSS_MESSAGES messages of exactly BENCH_KAFKA_RSS_BYTES bytes each
#      (`kafka_bench produce ... BYTES`, with the token of a fresh PostgreSQL database): the
#      even ones valid creates padded with white space, the odd ones with a comment that long.
#  16. `dnsorch consume` in direct mode into that database (PostgreSQL + Redis), with the
#      Kafka settings at their defaults, once per MAX_BODY_BYTES: 65536 (the default: every
#      message is a `too_large` dead letter, never parsed) and twice BENCH_KAFKA_RSS_BYTES
#      (parsed: the even ones recorded, the odd ones `invalid` dead letters), each in a fresh
#      consumer group, until all are settled (/metrics, polled every 0.2 s); then its VmHWM
#      (/proc/PID/status), printed as "consumer peak RSS with 1 MiB messages: N MiB (bound B
#      MiB)". A peak over BENCH_KAFKA_RSS_BOUND_MIB, or counts other than those, fails the run.
#      tansu serves large messages slower than dnsorch settles them (a plain consumer drains
#      1 MiB messages at about 10/s), so the client's prefetch would stay nearly empty: in the
#      parsed run, dns_requests is locked (EXCLUSIVE, in a psql session) for the first
#      BENCH_KAFKA_RSS_HOLD seconds, so recording waits while the client prefetches up to its
#      bound (KAFKA_PREFETCH_KBYTES per partition) and every partition holds a batch.
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
#  10b. Change sets: BENCH_DNS_SET_RECORDS creates (default 10,000) at WORKER_CONCURRENCY,
#      first as single requests (as in 10), then as change sets of BENCH_DNS_SET_SIZE (default
#      1,000; POST /api/v1/dns/changes, not atomic, 10 sets, each request's id read from its
#      set's items), each on a fresh BIND and database; the same waiting, latency and rate.
#  11. Every name of 9, 10 and 10b is queried at the BIND (`dig +norecurse`, one `dig -f`
#      batch) and must hold its A record; the table counts the names that do not.
#
# HTTPS (BENCH_TOPOLOGY=https, also part of "all"): the intake over HTTPS beside plain HTTP.
# A CA and a certificate for 127.0.0.1 and localhost (openssl, EC P-256, under the temp dir);
# BENCH_HTTPS_ROUNDS rounds (default 3), each running `dnsorch run` as in 1 on a fresh SQLite
# database over plain HTTP and then with TLS_CERT_FILE and TLS_KEY_FILE (curl verifies it
# against the CA; wrk does not verify):
#  14. wrk at 16 and 64 kept-alive connections (the handshake once per connection), and at 16
#      connections with `Connection: close` on every request (BENCH_CONNECTION_CLOSE=1 in
#      post.lua: a new connection, so over HTTPS a full TLS handshake, per request).
#      The table gives each round's req/s, the medians and the ratio of the medians,
#      HTTPS / HTTP.
#
# Baseline (BENCH_TOPOLOGY=baseline, not part of "all"): POST throughput of this tree against
# the commit BENCH_BASELINE (default d3e4c2c, the commit before API tokens), both measured in
# the same run. The baseline is checked out with `git worktree add --detach` under the temp
# dir and built in release with CARGO_TARGET_DIR=$BENCH_CACHE/target-baseline (kept, so a
# later run rebuilds only dnsorch itself); the worktree is removed once built (and by the EXIT
# trap). Then BENCH_BASELINE_ROUNDS rounds (default 3), each running the baseline and then
# this tree, each on a fresh database with the same request bodies (post.lua), each with a
# token as above if it has tokens (a binary with a `dnsorch token` command; d3e4c2c has not,
# and gets requests without one):
#  12. SQLite: `dnsorch run` as in 1, wrk at 16 and then 64 connections.
#  13. PostgreSQL: `dnsorch serve` alone (no workers) as in 3, on a fresh database migrated by
#      the binary under test, a CHECKPOINT before each wrk run.
#      The table gives each round's req/s, the medians (req/s, p50, p99) and the ratio of the
#      medians, this tree / baseline; a ratio below 0.90 is flagged (but does not fail the run).
#
# Settings (environment):
#   BENCH_TOPOLOGY      one section: sqlite, postgres, kafka, kafka-rss, dns, https; all of
#                       them (default: in that order); or baseline
#   BENCH_HTTPS_ROUNDS  rounds of the https topology (default 3)
#   BENCH_PORT          port to listen on (default 18080; the next free one if 18080 is taken)
#   BENCH_DURATION      wrk and pgbench duration per run (default 10s; pgbench needs whole
#                       seconds: 10, 10s, 2m)
#   BENCH_REQUESTS      end-to-end request count (default 10000)
#   WORKER_CONCURRENCY  workers of `dnsorch run`, and --concurrency of each `dnsorch worker`
#                       (default 16)
#   BENCH_E2E_TIMEOUT   seconds to wait for all COMPLETED (default 600)
#   BENCH_KAFKA_MESSAGES  messages produced to each Kafka topic (default 100000)
#   BENCH_KAFKA_TIMEOUT   seconds allowed to each produce, drain and dnsorch intake run
#                         (default 600), also those of kafka-rss
#   BENCH_KAFKA_RSS_MESSAGES  large messages produced for kafka-rss (default 500)
#   BENCH_KAFKA_RSS_BYTES     the size of each (default 1048576: 1 MiB)
#   BENCH_KAFKA_RSS_BOUND_MIB the most peak RSS a consumer may reach (default 512)
#   BENCH_KAFKA_RSS_HOLD      seconds recording is held back in the parsed run (default 20)
#   BENCH_DNS_RECORDS     A records per DNS run (default 5000)
#   BENCH_DNS_SET_RECORDS A records of the change-set comparison, 16b (default 10000)
#   BENCH_DNS_SET_SIZE    changes per set in 16b (default 1000; at most MAX_CHANGE_SET_ITEMS)
#   BENCH_DNS_CONCURRENCY WORKER_CONCURRENCY of each dnsorch DNS run, space-separated
#                         (default "16 64": WORKER_CONCURRENCY, then 64)
#   BENCH_DNS_NSUPDATE_BATCH  adds per UPDATE of each nsupdate run, space-separated
#                         (default "50 1")
#   The DNS runs wait up to BENCH_E2E_TIMEOUT for all requests to finish.
#   BENCH_BASELINE        the commit (any git revision) the baseline topology compares with
#                         (default d3e4c2c)
#   BENCH_BASELINE_ROUNDS rounds of the baseline topology (default 3)
#   BENCH_CACHE           where the baseline's cargo target dir is kept
#                         (default ${XDG_CACHE_HOME:-~/.cache}/dnsorch-bench)
#   BENCH_OUT             a file to append one JSON line per scenario to (default none):
#                         {"commit": short rev of the tree measured ("-dirty" if src/,
#                         migrations/ or Cargo.* differ from it), "scenario": post, e2e,
#                         pgbench_insert, post_vs_pgbench, kafka_produce, kafka_drain,
#                         kafka_consume, kafka_rss, dns_nsupdate, dns or post_vs_baseline,
#                         "topology": sqlite, postgres, kafka, kafka-rss, dns, "label": the
#                         table's row, "concurrency":
#                         connections, clients or workers, "rps": requests (messages, records)
#                         per second, "p50_ms", "p99_ms" (null where not measured), "at", "cpus",
#                         and each scenario's own: requests, non2xx, socket_errors, duration,
#                         completions_per_s, worker_processes, messages, seconds, steady_rps,
#                         ratio, baseline_commit, baseline_rps, baseline_p50_ms, baseline_p99_ms,
#                         rps_rounds, baseline_rps_rounds, peak_rss_mib, bound_mib, ...}
#
# Exits non-zero if any answer was not 2xx (or a socket error, a timeout, a failed pgbench
# transaction, a dead-lettered Kafka message, a PENDING count other than the messages
# produced, a consumer's peak RSS over its bound, a DNS request not COMPLETED, a failed
# nsupdate or a record missing at the BIND happened), or if a dnsorch of this tree accepted a
# request without a token.
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
krss_messages="${BENCH_KAFKA_RSS_MESSAGES:-500}"
krss_bytes="${BENCH_KAFKA_RSS_BYTES:-1048576}"
krss_bound="${BENCH_KAFKA_RSS_BOUND_MIB:-512}"
krss_hold="${BENCH_KAFKA_RSS_HOLD:-20}"
dns_records="${BENCH_DNS_RECORDS:-5000}"
dns_set_records="${BENCH_DNS_SET_RECORDS:-10000}"
dns_set_size="${BENCH_DNS_SET_SIZE:-1000}"
dns_concurrency="${BENCH_DNS_CONCURRENCY:-$workers $([ "$workers" = 64 ] || echo 64)}"
dns_batches="${BENCH_DNS_NSUPDATE_BATCH:-50 1}"
baseline="${BENCH_BASELINE:-d3e4c2c}"
rounds="${BENCH_BASELINE_ROUNDS:-3}"
https_rounds="${BENCH_HTTPS_ROUNDS:-3}"
cache_dir="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dnsorch-bench}"
bench_out=""
[ -z "${BENCH_OUT:-}" ] || bench_out="$(realpath -m "$BENCH_OUT")"

log() { printf '==> %s\n' "$*" >&2; }

want_sqlite=0 want_pg=0 want_kafka=0 want_krss=0 want_dns=0 want_https=0 want_base=0
case "$topology" in
  sqlite) want_sqlite=1 ;;
  postgres) want_pg=1 ;;
  kafka) want_kafka=1 ;;
  kafka-rss) want_krss=1 ;;
  dns) want_dns=1 ;;
  https) want_https=1 ;;
  all) want_sqlite=1 want_pg=1 want_kafka=1 want_krss=1 want_dns=1 want_https=1 ;;
  baseline) want_base=1 ;;
  *) log "BENCH_TOPOLOGY must be sqlite, postgres, kafka, kafka-rss, dns, https, all or baseline, not '$topology'"; exit 2 ;;
esac
if [ "$want_https" = 1 ]; then
  [[ "$https_rounds" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_HTTPS_ROUNDS must be a positive integer"; exit 2; }
fi
if [ "$want_base" = 1 ]; then
  [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_BASELINE_ROUNDS must be a positive integer"; exit 2; }
  base_commit="$(git -C "$root" rev-parse --verify --quiet "$baseline^{commit}")" ||
    { log "BENCH_BASELINE '$baseline' is not a commit of $root"; exit 2; }
  base_rev="$(git -C "$root" rev-parse --short "$base_commit")"
fi
if [ "$want_kafka" = 1 ] || [ "$want_krss" = 1 ]; then
  for v in "$kafka_messages" "$kafka_timeout"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_KAFKA_MESSAGES and BENCH_KAFKA_TIMEOUT must be positive integers"; exit 2; }
  done
fi
if [ "$want_krss" = 1 ]; then
  for v in "$krss_messages" "$krss_bytes" "$krss_bound"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_KAFKA_RSS_MESSAGES, BENCH_KAFKA_RSS_BYTES and BENCH_KAFKA_RSS_BOUND_MIB must be positive integers"; exit 2; }
  done
  [[ "$krss_hold" =~ ^[0-9]+$ ]] || { log "BENCH_KAFKA_RSS_HOLD must be a whole number of seconds"; exit 2; }
  # kafka_bench's producer takes at most 1,000,000,000 bytes a message (librdkafka's most).
  [ "$krss_bytes" -le 999000000 ] || { log "BENCH_KAFKA_RSS_BYTES must be at most 999000000"; exit 2; }
fi
if [ "$want_dns" = 1 ]; then
  for v in "$dns_records" $dns_concurrency $dns_batches "$dns_set_records" "$dns_set_size"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { log "BENCH_DNS_RECORDS, BENCH_DNS_CONCURRENCY, BENCH_DNS_NSUPDATE_BATCH, BENCH_DNS_SET_RECORDS and BENCH_DNS_SET_SIZE must be positive integers"; exit 2; }
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
if { [ "$want_sqlite" = 1 ] || [ "$want_pg" = 1 ] || [ "$want_https" = 1 ] || [ "$want_base" = 1 ]; } && ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
if [ "$want_pg" = 1 ] || [ "$want_kafka" = 1 ] || [ "$want_krss" = 1 ] || [ "$want_base" = 1 ]; then
  postgres_install >&2 # postgresql-15, which brings pgbench
  redis_install >&2
fi
if [ "$want_kafka" = 1 ] || [ "$want_krss" = 1 ]; then
  tansu_install >&2
fi
if [ "$want_dns" = 1 ]; then
  bind_install >&2 # named, nsupdate, dig
fi

# --- 2. build --------------------------------------------------------------------------
build=(--bin dnsorch)
[ "$want_kafka" = 0 ] && [ "$want_krss" = 0 ] || build+=(--example kafka_bench)
log "cargo build --release ${build[*]}"
(cd "$root" && cargo build --release --quiet "${build[@]}")
# The tree measured: HEAD, "-dirty" if what goes into the binary differs from it.
rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(git -C "$root" --no-optional-locks status --porcelain -- src migrations Cargo.toml Cargo.lock build.rs 2>/dev/null)" ]; then
  rev="$rev-dirty"
fi

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
worktree=""   # the baseline's git worktree while it exists
# The binary measured, copied out of target/ so that another build in this tree cannot replace
# it mid-run.
cp "$bin" "$dir/dnsorch"
bin="$dir/dnsorch"
if ! "$bin" token --help >/dev/null 2>&1; then
  log "$bin has no \`token\` command: this script measures dnsorch with API tokens"
  exit 1
fi

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
  if [ -n "$worktree" ]; then
    git -C "$root" worktree remove --force "$worktree" >/dev/null 2>&1 || true
  fi
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

# --- tokens ------------------------------------------------------------------------------
# token: the bearer token of the dnsorch at $base now; empty only for a baseline binary from
# before tokens. Clients get it as BENCH_TOKEN, curl from $dir/auth.header.
token=""
set_token() {
  token="$1"
  (
    umask 077
    if [ -n "$token" ]; then
      printf 'Authorization: Bearer %s\n' "$token" >"$dir/auth.header"
    else
      : >"$dir/auth.header"
    fi
  )
}
set_token ""

# has_tokens BINARY: whether that dnsorch has API tokens (a `token` command). This tree's has:
# it is checked, so that nothing here can run this tree's dnsorch without authentication.
has_tokens() {
  "$1" token --help >/dev/null 2>&1
}

# curl_auth ARGS...: curl with the Authorization header of $token (none if it is empty).
curl_auth() {
  if [ -n "$token" ]; then
    curl -H @"$dir/auth.header" "$@"
  else
    curl "$@"
  fi
}

# auth_check: the dnsorch at $base (of this tree) refuses a POST without a token with 401,
# and serves /metrics to $token. There is no way to run this tree's dnsorch without tokens.
auth_check() {
  local code
  [ -n "$token" ] || { log "no token for the dnsorch at $base"; exit 1; }
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
    -H 'Content-Type: application/json' --data '{}' "$base/api/v1/dns/create" || true)"
  if [ "$code" != 401 ]; then
    log "POST /api/v1/dns/create without a token answered $code, not 401"
    exit 1
  fi
  code="$(curl_auth -s -o /dev/null -w '%{http_code}' --max-time 5 "$base/metrics" || true)"
  if [ "$code" != 200 ]; then
    log "GET /metrics with the bench token answered $code, not 200"
    exit 1
  fi
}

# The settings that would weaken or bypass authentication, or move a listener, are never
# passed on to a dnsorch process (nor Kafka and zones, unless a phase sets them).
# What every bench token may do: read /metrics, and change anything under example.test (all the
# bench's names), checked by the policy on every request.
bench_token_flags=(--account bench --name bench --metrics --policy 'example.test=read,create,delete')
# The token bucket runs on every request but never refuses one.
export RATE_LIMIT_PER_SECOND=1000000000 RATE_LIMIT_BURST=1000000000
# The request-status gauges (the end-to-end and Kafka phases' clock and their PENDING check)
# are counted at every scrape, not reused for METRICS_STATUS_REFRESH_SECONDS: a reused count
# would stop the clocks up to that long late and fail the PENDING check.
export METRICS_STATUS_REFRESH_SECONDS=0

dnsorch_unset() {
  unset KAFKA_BROKER_URL DNSORCH_CONFIG METRICS_PUBLIC KAFKA_TRUSTED_ACCOUNTS \
    TOKEN_CACHE_SECONDS API_URL API_TOKEN_FILE OPS_ADDR BENCH_TOKEN TLS_CERT_FILE TLS_KEY_FILE \
    TLS_CLIENT_CA_FILE
}

# --- BENCH_OUT ---------------------------------------------------------------------------
# out_json KEY=TEXT | KEY:=JSON ...: appends one JSON object to BENCH_OUT (when set), with
# commit (default $rev), topology, scenario, ... as given, and at and cpus. A :=JSON value
# of "", "-", "?" or "nan" becomes null; one that does not parse stays text.
out_json() {
  [ -n "$bench_out" ] || return 0
  python3 - "commit=$rev" "at=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "cpus:=$(nproc)" "$@" >>"$bench_out" <<'PY'
import json, re, sys
out = {}
for arg in sys.argv[1:]:
    m = re.match(r"^([A-Za-z0-9_]+)(:?)=(.*)$", arg, re.S)
    if not m:
        sys.exit(f"out_json: bad argument {arg!r}")
    key, raw, value = m.groups()
    if raw:
        if value in ("", "-", "?", "nan"):
            value = None
        else:
            try:
                value = json.loads(value)
            except ValueError:
                pass
    out[key] = value
print(json.dumps(out))
PY
}

zones_file="" # the DNSORCH_CONFIG of `dnsorch run`, when set (the DNS topology)
tls_dir=""    # with server.crt and server.key: `dnsorch run` serves HTTPS (the https topology)

# start_server [CONCURRENCY [BINARY]]: `dnsorch run` (BINARY, default this tree's) on a fresh
# SQLite database, with CONCURRENCY workers (default WORKER_CONCURRENCY) and the zones of
# $zones_file (none: the simulated backend for every name). Checks that `dnsorch run` wrote its
# admin token to dnsorch-admin.token, then sets token to a new bench token (bench_token_flags) of
# the same database (none for a baseline binary without tokens).
start_server() {
  local concurrency="${1:-$workers}" server_bin="${2:-$bin}"
  stop_server
  run=$((run + 1))
  local db="$dir/bench-$run"
  mkdir -p "$db"
  (
    cd "$db"
    dnsorch_unset
    [ -z "$zones_file" ] || export DNSORCH_CONFIG="$zones_file"
    [ -z "$tls_dir" ] || export TLS_CERT_FILE="$tls_dir/server.crt" TLS_KEY_FILE="$tls_dir/server.key"
    export DATABASE_URL="sqlite://$db/bench.db?mode=rwc" \
      BIND_ADDR="127.0.0.1:$port" \
      SIMULATED_DELAY_SECONDS=0 \
      LOG_LEVEL=warn \
      WORKER_CONCURRENCY="$concurrency"
    exec "$server_bin" run
  ) >"$dir/dnsorch-$run.log" 2>&1 &
  pids=("$!")
  logs=("$dir/dnsorch-$run.log")
  wait_ready
  if has_tokens "$server_bin"; then
    if [ ! -s "$db/dnsorch-admin.token" ]; then
      log "dnsorch run wrote no $db/dnsorch-admin.token"
      exit 1
    fi
    local secret
    if ! secret="$(cd "$db" && dnsorch_unset && DATABASE_URL="sqlite://$db/bench.db?mode=rwc" \
      LOG_LEVEL=warn exec "$server_bin" token create "${bench_token_flags[@]}" 2>"$db/token.log")" ||
      [ -z "$secret" ]; then
      log "dnsorch token create failed:"
      cat "$db/token.log" >&2
      exit 1
    fi
    set_token "$secret"
    auth_check
  else
    set_token ""
  fi
  log "dnsorch ready on $base (pid ${pids[0]}, $(basename "$server_bin"), database $db/bench.db, $concurrency workers${zones_file:+, zones $zones_file}${tls_dir:+, HTTPS}${token:+, a bench token with a policy})"
}

field() { # field NAME LINE
  sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"
}

failed=0
connection_close="" # 1: every wrk request asks for a new connection (BENCH_CONNECTION_CLOSE)
row=""
rps=""
p50=""
p99=""
w_requests=""
w_non2xx=""
w_sock=""

# wrk_post C LABEL: one wrk run against $base (with $token); sets row, rps, p50, p99,
# w_requests, w_non2xx and w_sock.
wrk_post() {
  local c="$1" label="$2" out line wrk_non2xx non2xx sock
  log "wrk POST $base/api/v1/dns/create, -t2 -c$c -d$duration${token:+, with a bearer token}${connection_close:+, Connection: close}"
  out="$(BENCH_TOKEN="$token" BENCH_CONNECTION_CLOSE="${connection_close:-0}" wrk -t2 -c"$c" -d"$duration" --latency -s "$lua" "$base/api/v1/dns/create")"
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
  p50="$(field p50_ms "$line")"
  p99="$(field p99_ms "$line")"
  w_requests="$(field requests "$line")"
  w_non2xx="$non2xx"
  w_sock="$sock"
  row="| $label | $w_requests | $rps | $p50 | $p99 | $non2xx | $sock |"
}

# out_post TOPOLOGY C LABEL: the JSON line of the wrk run just made.
out_post() {
  out_json "topology=$1" scenario=post "label=$3" "concurrency:=$2" "rps:=$rps" "p50_ms:=$p50" \
    "p99_ms:=$p99" "requests:=$w_requests" "non2xx:=$w_non2xx" "socket_errors:=$w_sock" \
    "duration=$duration"
}

# e2e_run LABEL: BENCH_REQUESTS submissions to $base (with $token), then until all are
# COMPLETED; sets row and e2e_line.
e2e_line=""
e2e_run() {
  local label="$1" line e2e_rc
  log "end to end: $requests requests, 32 client threads, then wait for all COMPLETED"
  set +e
  line="$(BENCH_TOKEN="$token" python3 "$e2e" --port "$port" --requests "$requests" --threads 32 --timeout "$e2e_timeout" | grep '^E2E ')"
  e2e_rc=$?
  set -e
  if [ -z "$line" ]; then
    log "the end-to-end run printed no E2E line"
    exit 1
  fi
  printf '%s\n' "$line"
  [ "$e2e_rc" -eq 0 ] || failed=1
  [ "$(field timed_out "$line")" = 0 ] || label="$label (TIMED OUT)"
  e2e_line="$line"
  row="| $label | $(field completed "$line") | $(field completions_per_s "$line") completions/s (submit $(field submit_rps "$line")/s) | - | - | $(field non2xx "$line") | $(field errors "$line") |"
}

# out_e2e TOPOLOGY LABEL [KEY=VALUE...]: the JSON line of the end-to-end run just made (rps:
# the submission rate; concurrency: the client threads).
out_e2e() {
  local topo="$1" label="$2" l="$e2e_line"
  shift 2
  out_json "topology=$topo" scenario=e2e "label=$label" "concurrency:=32" \
    "rps:=$(field submit_rps "$l")" "p50_ms:=" "p99_ms:=" "requests:=$requests" \
    "completed:=$(field completed "$l")" "completions_per_s:=$(field completions_per_s "$l")" \
    "total_s:=$(field total_s "$l")" "non2xx:=$(field non2xx "$l")" "errors:=$(field errors "$l")" \
    "timed_out:=$(field timed_out "$l")" "workers:=$workers" "$@"
}

# ===================================== SQLite ==========================================
rows=()
if [ "$want_sqlite" = 1 ]; then
  # --- 4. POST throughput --------------------------------------------------------------
  start_server
  for c in 16 64; do
    wrk_post "$c" "POST c=$c"
    rows+=("$row")
    out_post sqlite "$c" "POST c=$c"
  done

  # --- 5. end to end -------------------------------------------------------------------
  start_server # a fresh, empty database
  e2e_run "end-to-end $requests"
  rows+=("$row")
  out_e2e sqlite "end-to-end $requests"
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

# In a subshell: the environment of a dnsorch process on database (and stream) $1 running
# command $2. Only `serve` gets BIND_ADDR; `worker` and `consume` listen on OPS_ADDR (unset
# here: the default 127.0.0.1:0, unless the caller sets one). There is no zones file here:
# ALLOW_SIMULATED=true lets serve, worker and consume start on the simulated backend.
pg_env() {
  dnsorch_unset
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$1" \
    CELERY_BROKER_URL="$REDIS_URL" \
    TASK_STREAM="$1" \
    ALLOW_SIMULATED=true \
    SIMULATED_DELAY_SECONDS=0 \
    LOG_LEVEL=warn \
    WORKER_CONCURRENCY="$workers"
  if [ "${2:-}" = serve ]; then
    export BIND_ADDR="127.0.0.1:$port"
  else
    unset BIND_ADDR
  fi
}

# pg_database DB [BINARY]: a new database with dnsorch's schema (`BINARY migrate`, default
# this tree's dnsorch). Sets token to a new bench token (`BINARY token create` with
# bench_token_flags: a policy over example.test, and /metrics), or to none for a
# baseline binary without tokens.
pg_database() {
  local db="$1" migrate_bin="${2:-$bin}" secret
  psql_ -d postgres -c "create database $db" >/dev/null
  if ! (cd "$dir" && pg_env "$db" migrate && exec "$migrate_bin" migrate) >"$dir/migrate-$db.log" 2>&1; then
    log "dnsorch migrate failed:"
    cat "$dir/migrate-$db.log" >&2
    exit 1
  fi
  if ! has_tokens "$migrate_bin"; then
    set_token ""
    return 0
  fi
  if ! secret="$(cd "$dir" && pg_env "$db" token &&
    exec "$migrate_bin" token create "${bench_token_flags[@]}" 2>"$dir/token-$db.log")" ||
    [ -z "$secret" ]; then
    log "dnsorch token create failed:"
    cat "$dir/token-$db.log" >&2
    exit 1
  fi
  set_token "$secret"
}

# pg_spawn DB NAME ARGS...: `dnsorch ARGS` (this tree's) on DB in the background, logging to
# NAME.log. pg_spawn_with BINARY DB NAME ARGS...: the same with another binary.
pg_spawn() {
  pg_spawn_with "$bin" "$@"
}
pg_spawn_with() {
  local spawn_bin="$1" db="$2" name="$3"
  shift 3
  (cd "$dir" && pg_env "$db" "$1" && exec "$spawn_bin" "$@") >"$dir/$name.log" 2>&1 &
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
  auth_check
  log "dnsorch serve ready on $base (pid ${pids[0]}, database bench_post, no workers)"
  post_rps=()
  for c in 16 64; do
    checkpoint
    wrk_post "$c" "POST c=$c (serve, intake only, no workers)"
    pg_rows+=("$row")
    post_rps+=("$rps")
    out_post postgres "$c" "POST c=$c (serve, intake only, no workers)"
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
    out_json topology=postgres scenario=pgbench_insert "label=pgbench INSERT c=$c (-j 2 -M prepared)" \
      "concurrency:=$c" "rps:=$tps" "p50_ms:=$p50" "p99_ms:=$p99" "requests:=$txns" \
      "failed:=${pg_failed:-}" "duration=$pg_seconds"
  done
  rm -rf "$dir/pgbench"
  for i in 0 1; do
    c=$((16 * (i * 3 + 1)))
    ratio="$(awk -v a="${post_rps[$i]}" -v b="${pg_tps[$i]}" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')"
    pg_rows+=("| dnsorch intake / pgbench INSERT, c=$c | - | $ratio | - | - | - | - |")
    out_json topology=postgres scenario=post_vs_pgbench "label=dnsorch intake / pgbench INSERT, c=$c" \
      "concurrency:=$c" "rps:=${post_rps[$i]}" "p50_ms:=" "p99_ms:=" "pgbench_tps:=${pg_tps[$i]}" \
      "ratio:=$(awk -v a="${post_rps[$i]}" -v b="${pg_tps[$i]}" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print "-" }')"
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
    auth_check
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
    out_e2e postgres "$label" "worker_processes:=$n"
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

# tansu_up: the broker, started under the temp dir on a free port unless it runs already (the
# Kafka topology leaves it running for kafka-rss).
tansu_up() {
  [ -z "${TANSU_PID:-}" ] || return 0
  local tansu_port
  tansu_port="$(free_port)"
  log "starting tansu on 127.0.0.1:$tansu_port (sqlite storage under the temp dir)"
  tansu_start "$dir/tansu" "$tansu_port"
}

# k_topics NAME:PARTITIONS...: creates those topics at the broker.
k_topics() {
  local spec
  for spec in "$@"; do
    if ! "$TANSU" topic create "${spec%:*}" --partitions "${spec##*:}" --broker "tcp://$KAFKA_URL" \
      >"$dir/topic.log" 2>&1; then
      log "could not create topic ${spec%:*}:"
      cat "$dir/topic.log" >&2
      exit 1
    fi
  done
}

# kbench_run PREFIX ARGS...: `kafka_bench ARGS` (bounded by BENCH_KAFKA_TIMEOUT; produce puts
# $token in every message's authorization header); sets kb_line (its output line starting
# with PREFIX) and kb_seconds (its time from the process start).
kbench_run() {
  local prefix="$1" t0 t1 rc=0 deadline=$((SECONDS + kafka_timeout))
  shift
  t0="${EPOCHREALTIME/,/.}"
  BENCH_TOKEN="$token" "$kbench" "$@" >"$dir/kbench.out" 2>"$dir/kbench.err" &
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

# metrics_get SECONDS: the /metrics text of $base (read with $token, at most SECONDS); empty
# while nothing answers; a 401 or 403 ends the run.
metrics_get() {
  local code
  code="$(curl_auth -s -o "$dir/metrics.txt" -w '%{http_code}' --max-time "$1" "$base/metrics" || true)"
  case "$code" in
    200) cat "$dir/metrics.txt" ;;
    401 | 403)
      log "GET /metrics answered $code to the bench token: $(head -c 300 "$dir/metrics.txt")"
      exit 1
      ;;
  esac
}

# kafka_wait T0 LABEL: polls /metrics every 0.2 s until the dnsorch process started at T0
# (EPOCHREALTIME) has recorded or dead-lettered all BENCH_KAFKA_MESSAGES; then checks the
# PENDING count in its database. Appends a row to k_rows; sets k_rate (from T0) and k_steady
# (from the first poll that saw a recorded message).
kafka_wait() {
  local t0="$1" label="$2" deadline=$((SECONDS + kafka_timeout)) m now recorded dead
  local first="" first_n=0 seconds pending warnings=0 f
  while :; do
    m="$(metrics_get 1)"
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
  pending="$(metrics_get 10 | awk '$1 == "dnsorch_requests{status=\"PENDING\"}" { printf "%d", $2 }' || true)"
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
  out_json topology=kafka scenario=kafka_consume "label=$label" "concurrency:=" "rps:=$k_rate" \
    "p50_ms:=" "p99_ms:=" "steady_rps:=$k_steady" "messages:=$recorded" "seconds:=$seconds" \
    "dead_letters:=$dead" "pending:=${pending:-}" "warning_lines:=$warnings"
}

k_rows=()
k_note=""
if [ "$want_kafka" = 1 ]; then
  kbench="$root/target/release/examples/kafka_bench"
  # One topic per dnsorch run: each one's messages carry the token of its own database.
  k_topic_pg="dns_requests_bench_pg"
  k_topic_sqlite="dns_requests_bench_sqlite"

  # --- 10. broker and topics ----------------------------------------------------------
  tansu_up
  k_topics "$k_topic_pg:3" "$k_topic_pg.dlq:1" "$k_topic_sqlite:3" "$k_topic_sqlite.dlq:1"
  log "tansu (pid $TANSU_PID) at $KAFKA_URL, topics $k_topic_pg and $k_topic_sqlite (3 partitions each, and a .dlq of 1 each)"

  # --- the databases of 13 and 14, and their tokens ------------------------------------
  pg_up
  pg_database bench_kafka
  pg_kafka_token="$token"
  run=$((run + 1))
  k_db="$dir/bench-$run"
  mkdir -p "$k_db"
  if ! sqlite_kafka_token="$(cd "$k_db" && dnsorch_unset &&
    DATABASE_URL="sqlite://$k_db/bench.db?mode=rwc" LOG_LEVEL=warn \
      exec "$bin" token create "${bench_token_flags[@]}" 2>"$dir/token-sqlite-kafka.log")" ||
    [ -z "$sqlite_kafka_token" ]; then
    log "dnsorch token create (SQLite) failed:"
    cat "$dir/token-sqlite-kafka.log" >&2
    exit 1
  fi

  # --- 11. produce ----------------------------------------------------------------------
  for k in pg sqlite; do
    if [ "$k" = pg ]; then
      topic="$k_topic_pg" what="PostgreSQL database bench_kafka"
      set_token "$pg_kafka_token"
    else
      topic="$k_topic_sqlite" what="SQLite database $k_db/bench.db"
      set_token "$sqlite_kafka_token"
    fi
    log "kafka_bench produce: $kafka_messages messages to $topic, each with the token of the $what"
    kbench_run PRODUCED produce "$KAFKA_URL" "$topic" "$kafka_messages"
    label="produce to $topic (kafka_bench, rdkafka, linger.ms=20, authorization header)"
    k_rows+=("| $label | $(field messages "$kb_line") | $(field seconds "$kb_line") | $(field rate "$kb_line") | - | - | - | - |")
    out_json topology=kafka scenario=kafka_produce "label=$label" "concurrency:=" \
      "rps:=$(field rate "$kb_line")" "p50_ms:=" "p99_ms:=" "messages:=$(field messages "$kb_line")" \
      "seconds:=$(field seconds "$kb_line")"
  done

  # --- 12. plain consumer -----------------------------------------------------------------
  log "kafka_bench drain: a plain rdkafka consumer reads all $kafka_messages messages of $k_topic_pg"
  kbench_run DRAINED drain "$KAFKA_URL" "$k_topic_pg" "$kafka_messages"
  plain_rate="$(awk -v n="$kafka_messages" -v s="$kb_seconds" 'BEGIN { printf "%.1f", n / s }')"
  plain_steady="$(field rate "$kb_line")"
  label="plain consumer (kafka_bench drain, rdkafka, fresh group)"
  k_rows+=("| $label | $(field messages "$kb_line") | $kb_seconds | $plain_rate | $plain_steady | - | - | - |")
  out_json topology=kafka scenario=kafka_drain "label=$label" "concurrency:=" "rps:=$plain_rate" \
    "p50_ms:=" "p99_ms:=" "steady_rps:=$plain_steady" "messages:=$(field messages "$kb_line")" \
    "seconds:=$kb_seconds"

  # --- 13. dnsorch consume, PostgreSQL ----------------------------------------------------
  checkpoint
  logs=()
  set_token "$pg_kafka_token"
  log "dnsorch consume on a fresh PostgreSQL database (bench_kafka), Redis task stream, /metrics on OPS_ADDR 127.0.0.1:$port"
  t0="${EPOCHREALTIME/,/.}"
  (
    cd "$dir" && pg_env bench_kafka consume &&
      export KAFKA_BROKER_URL="$KAFKA_URL" KAFKA_DNS_TOPIC="$k_topic_pg" KAFKA_GROUP_ID=dnsorch-bench-pg \
        OPS_ADDR="127.0.0.1:$port" &&
      exec "$bin" consume
  ) >"$dir/consume-pg.log" 2>&1 &
  pids+=("$!")
  logs+=("$dir/consume-pg.log")
  kafka_wait "$t0" "dnsorch consume, PostgreSQL + Redis"
  pg_kafka_rate="$k_rate" pg_kafka_steady="$k_steady"
  report_logs
  stop_server

  # --- 14. dnsorch run, SQLite ------------------------------------------------------------
  logs=("$dir/run-kafka.log")
  set_token "$sqlite_kafka_token"
  log "dnsorch run on a fresh SQLite database (its token created above), WORKER_CONCURRENCY=0"
  t0="${EPOCHREALTIME/,/.}"
  (
    cd "$k_db"
    dnsorch_unset # no zones: the simulated backend
    export DATABASE_URL="sqlite://$k_db/bench.db?mode=rwc" \
      BIND_ADDR="127.0.0.1:$port" \
      SIMULATED_DELAY_SECONDS=0 \
      LOG_LEVEL=warn \
      WORKER_CONCURRENCY=0 \
      KAFKA_BROKER_URL="$KAFKA_URL" \
      KAFKA_DNS_TOPIC="$k_topic_sqlite" \
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
  k_note="$("$TANSU" --version 2>/dev/null | head -n 1) (sqlite storage, ${tansu_errors:-0} panic/error log lines), 2 topics with 3 partitions, every message with an authorization header; PostgreSQL $(psql_ -d postgres -c 'show server_version' | cut -d' ' -f1) (fsync=on, synchronous_commit=on)"
fi

# =========================== Kafka consumer memory, large messages ========================
# krss_run MAX_BODY_BYTES [HOLD]: `dnsorch consume` (direct mode, PostgreSQL database
# bench_kafka_rss, default Kafka settings) in a fresh group on $kr_topic until all
# BENCH_KAFKA_RSS_MESSAGES are settled (recorded or dead-lettered), with dns_requests locked
# against inserts for its first HOLD seconds (default 0); its peak RSS (VmHWM) then; checks that peak against
# BENCH_KAFKA_RSS_BOUND_MIB and the counts against what the messages are: all `too_large`
# dead letters when the payloads are over MAX_BODY_BYTES, else the even ones recorded and the
# odd ones `invalid` dead letters. Appends a row to kr_rows.
krss_run() {
  local body="$1" hold="${2:-0}" deadline=$((SECONDS + kafka_timeout)) t0 pid m recorded dead
  local too_large invalid seconds hwm_kb peak want_recorded want_too_large want_invalid label
  local warnings=0 f verdict lock_pid=""
  if [ "$krss_bytes" -gt "$body" ]; then
    want_recorded=0 want_too_large="$krss_messages" want_invalid=0
    label="MAX_BODY_BYTES=$body: every message a too_large dead letter, never parsed"
  else
    want_recorded=$(((krss_messages + 1) / 2)) want_too_large=0 want_invalid=$((krss_messages / 2))
    label="MAX_BODY_BYTES=$body: parsed, half recorded, half invalid dead letters"
  fi
  if [ "$hold" -gt 0 ]; then
    # Inserts wait for the lock; reads (the token lookups) do not.
    psql_ -d bench_kafka_rss -c "begin; lock table dns_requests in exclusive mode; select pg_sleep($hold); commit" \
      >/dev/null 2>"$dir/lock.log" &
    lock_pid=$!
    local tries=100
    until [ "$(psql_ -d bench_kafka_rss -c "select count(*) from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'dns_requests' and l.mode = 'ExclusiveLock' and l.granted")" = 1 ]; do
      tries=$((tries - 1))
      [ "$tries" -gt 0 ] || { log "the lock on dns_requests was not taken within 10 s: $(cat "$dir/lock.log")"; exit 1; }
      sleep 0.1
    done
    label="$label, recording held back for the first $hold s"
  fi
  logs=()
  log "dnsorch consume (PostgreSQL bench_kafka_rss, MAX_BODY_BYTES=$body, Kafka settings at their defaults), /metrics on OPS_ADDR 127.0.0.1:$port"
  t0="${EPOCHREALTIME/,/.}"
  (
    cd "$dir" && pg_env bench_kafka_rss consume &&
      unset KAFKA_BATCH_MAX KAFKA_BATCH_MAX_BYTES KAFKA_PREFETCH_KBYTES KAFKA_CONCURRENT_BATCHES &&
      export KAFKA_BROKER_URL="$KAFKA_URL" KAFKA_DNS_TOPIC="$kr_topic" \
        KAFKA_GROUP_ID="dnsorch-bench-rss-$body" OPS_ADDR="127.0.0.1:$port" MAX_BODY_BYTES="$body" &&
      exec "$bin" consume
  ) >"$dir/consume-rss-$body.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  logs+=("$dir/consume-rss-$body.log")
  while :; do
    m="$(metrics_get 1)"
    recorded="$(awk '$1 == "dnsorch_kafka_requests_recorded_total" { printf "%d", $2 }' <<<"$m")"
    dead="$(awk '$1 ~ /^dnsorch_kafka_dead_letters_total/ { s += $2 } END { printf "%d", s }' <<<"$m")"
    recorded="${recorded:-0}"
    [ $((recorded + dead)) -lt "$krss_messages" ] || break
    check_alive
    check_tansu
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "MAX_BODY_BYTES=$body: $((recorded + dead)) of $krss_messages messages settled within $kafka_timeout s"
      label="$label (TIMED OUT)"
      failed=1
      break
    fi
    sleep 0.2
  done
  seconds="$(awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.3f", b - a }')"
  hwm_kb="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
  too_large="$(awk '$1 == "dnsorch_kafka_dead_letters_total{kind=\"too_large\"}" { printf "%d", $2 }' <<<"$m")"
  invalid="$(awk '$1 == "dnsorch_kafka_dead_letters_total{kind=\"invalid\"}" { printf "%d", $2 }' <<<"$m")"
  too_large="${too_large:-0}" invalid="${invalid:-0}"
  stop_server
  # Every dead letter logs a warning: the other warning and error lines are reported.
  for f in "${logs[@]}"; do
    [ -s "$f" ] || continue
    warnings=$((warnings + $(grep -cv '"message dead-lettered"' "$f" || true)))
    if [ "$warnings" -gt 0 ]; then
      log "$(basename "$f"): $warnings warning/error lines besides the dead letters; the last 3:"
      grep -v '"message dead-lettered"' "$f" | tail -n 3 >&2 || true
    fi
  done
  if [ -n "$lock_pid" ] && ! wait "$lock_pid"; then
    log "MAX_BODY_BYTES=$body: the psql session holding the lock failed: $(cat "$dir/lock.log")"
    failed=1
  fi
  if [ -z "$hwm_kb" ]; then
    log "MAX_BODY_BYTES=$body: no VmHWM in /proc/$pid/status"
    peak="?"
    failed=1
  else
    peak="$(awk -v k="$hwm_kb" 'BEGIN { printf "%.1f", k / 1024 }')"
  fi
  if [ "$recorded" != "$want_recorded" ] || [ "$too_large" != "$want_too_large" ] ||
    [ "$invalid" != "$want_invalid" ] || [ "$dead" != $((want_too_large + want_invalid)) ]; then
    log "MAX_BODY_BYTES=$body: $recorded recorded, $too_large too_large and $invalid invalid of $dead dead letters; expected $want_recorded, $want_too_large and $want_invalid"
    failed=1
  fi
  verdict="within"
  if [ "$peak" = "?" ] || [ "${hwm_kb:-0}" -gt $((krss_bound * 1024)) ]; then
    verdict="OVER"
    failed=1
  fi
  echo "consumer peak RSS with $(awk -v b="$krss_bytes" 'BEGIN { if (b % 1048576 == 0) printf "%d MiB", b / 1048576; else printf "%d-byte", b }') messages: $peak MiB (bound $krss_bound MiB), MAX_BODY_BYTES=$body"
  kr_rows+=("| $label | $krss_messages | $seconds | $recorded | $too_large | $invalid | $peak | $verdict | $warnings |")
  out_json topology=kafka-rss scenario=kafka_rss "label=$label" "concurrency:=" "rps:=" \
    "p50_ms:=" "p99_ms:=" "messages:=$krss_messages" "message_bytes:=$krss_bytes" \
    "max_body_bytes:=$body" "seconds:=$seconds" "recorded:=$recorded" \
    "too_large:=$too_large" "invalid:=$invalid" "peak_rss_mib:=$peak" "bound_mib:=$krss_bound" \
    "warning_lines:=$warnings"
}

kr_rows=()
kr_note=""
if [ "$want_krss" = 1 ]; then
  kbench="$root/target/release/examples/kafka_bench"
  kr_topic="dns_requests_bench_rss"

  # --- 15. broker, topic, database, produce ------------------------------------------
  tansu_up
  k_topics "$kr_topic:3" "$kr_topic.dlq:1"
  pg_up
  pg_database bench_kafka_rss
  log "kafka_bench produce: $krss_messages messages of $krss_bytes bytes to $kr_topic (3 partitions), each with the token of the PostgreSQL database bench_kafka_rss"
  kbench_run PRODUCED produce "$KAFKA_URL" "$kr_topic" "$krss_messages" "$krss_bytes"

  # --- 16. dnsorch consume, payloads over and under MAX_BODY_BYTES -----------------------
  krss_run 65536
  krss_run $((2 * krss_bytes)) "$krss_hold"
  kr_note="$("$TANSU" --version 2>/dev/null | head -n 1) (sqlite storage), a topic with 3 partitions, $krss_messages messages of $krss_bytes bytes (produced in $kb_seconds s); dnsorch consume with KAFKA_BATCH_MAX, KAFKA_BATCH_MAX_BYTES, KAFKA_PREFETCH_KBYTES and KAFKA_CONCURRENT_BATCHES at their defaults; peak RSS is VmHWM once all are settled"
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

# dns_zones_file PATH: a zones file routing example.test to the current BIND (rfc2136).
dns_zones_file() {
  cat >"$1" <<TOML
[zones."example.test"]
backend = "rfc2136"
server = "127.0.0.1:$BIND_PORT"
key_name = "$BIND_KEY_NAME"
key_algorithm = "$BIND_KEY_ALGORITHM"
key_secret_file = "$BIND_SECRET_FILE"
timeout_seconds = 5
verify_timeout_seconds = 10
TOML
}

# dns_run LABEL RUN_ID [RECORDS [SET_SIZE]]: RECORDS (BENCH_DNS_RECORDS) creates into the BIND
# through $base (scripts/bench/dns.py, names b<i>-RUN_ID.example.test), one per request or as
# change sets of SET_SIZE, then the check of every name at the BIND; sets row.
dns_run() {
  local label="$1" line dns_rc warnings=0 f records="${3:-$dns_records}" set_size="${4:-0}"
  if [ "$set_size" -gt 0 ]; then
    log "DNS: $records A records as change sets of $set_size (POST /api/v1/dns/changes), then until all are COMPLETED or FAILED"
  else
    log "DNS: $records A records through POST /api/v1/dns/create, 32 client threads, then until all are COMPLETED or FAILED"
  fi
  set +e
  line="$(BENCH_TOKEN="$token" python3 "$dnspy" --port "$port" --requests "$records" --threads 32 \
    --timeout "$e2e_timeout" --run-id "$2" --dns-port "$BIND_PORT" --set-size "$set_size" | grep '^DNS ')"
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
  row="| $label | $(field completed "$line") COMPLETED of $records | $(field span_s "$line") | $(field verified_per_s "$line") verified/s (submit $(field submit_rps "$line")/s) | $(field p50_ms "$line") | $(field p99_ms "$line") | $(field failed "$line") | $(field dig_missing "$line") | $warnings |"
  dns_line="$line" dns_warnings="$warnings"
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
    out_json topology=dns scenario=dns_nsupdate "label=nsupdate -v, $b add(s) per UPDATE (BIND alone)" \
      "concurrency:=1" "rps:=$rate" "p50_ms:=" "p99_ms:=" "records:=$dns_records" "batch:=$b" \
      "seconds:=$seconds" "exit_status:=$ns_rc" "missing:=$missing"
  done

  # --- 16. dnsorch run, rfc2136 backend ------------------------------------------------------
  for c in $dns_concurrency; do
    dns_bind_up "bind-c$c"
    zones_file="$dir/zones-c$c.toml"
    dns_zones_file "$zones_file"
    start_server "$c"
    dns_run "dnsorch run, rfc2136, WORKER_CONCURRENCY=$c" "$dns_id-c$c"
    d_rows+=("$row")
    out_json topology=dns scenario=dns "label=dnsorch run, rfc2136, WORKER_CONCURRENCY=$c" \
      "concurrency:=$c" "rps:=$(field verified_per_s "$dns_line")" "p50_ms:=$(field p50_ms "$dns_line")" \
      "p99_ms:=$(field p99_ms "$dns_line")" "records:=$dns_records" \
      "completed:=$(field completed "$dns_line")" "failed:=$(field failed "$dns_line")" \
      "span_s:=$(field span_s "$dns_line")" "submit_rps:=$(field submit_rps "$dns_line")" \
      "missing:=$(field dig_missing "$dns_line")" "warning_lines:=$dns_warnings"
    report_logs
    stop_server
    zones_file=""
    dns_bind_errors
  done

  # --- 16b. the same creates as change sets, beside them as single requests -----------------
  for set_size in 0 "$dns_set_size"; do
    dns_bind_up "bind-sets-$set_size"
    zones_file="$dir/zones-sets-$set_size.toml"
    dns_zones_file "$zones_file"
    start_server "$workers"
    if [ "$set_size" = 0 ]; then
      label="dnsorch run, rfc2136, WORKER_CONCURRENCY=$workers, $dns_set_records single requests"
      scenario=dns_singles
    else
      label="dnsorch run, rfc2136, WORKER_CONCURRENCY=$workers, $dns_set_records creates as change sets of $set_size"
      scenario=dns_change_sets
    fi
    dns_run "$label" "$dns_id-s$set_size" "$dns_set_records" "$set_size"
    d_rows+=("$row")
    out_json topology=dns "scenario=$scenario" "label=$label" \
      "concurrency:=$workers" "rps:=$(field verified_per_s "$dns_line")" "p50_ms:=$(field p50_ms "$dns_line")" \
      "p99_ms:=$(field p99_ms "$dns_line")" "records:=$dns_set_records" "set_size:=$set_size" \
      "completed:=$(field completed "$dns_line")" "failed:=$(field failed "$dns_line")" \
      "span_s:=$(field span_s "$dns_line")" "submit_rps:=$(field submit_rps "$dns_line")" \
      "missing:=$(field dig_missing "$dns_line")" "warning_lines:=$dns_warnings"
    report_logs
    stop_server
    zones_file=""
    dns_bind_errors
  done
  bind_stop

  d_note="$(/usr/sbin/named -v 2>/dev/null || named -v) (named -n 1: one worker thread; journal under $(dirname "$dir"), $(df -PT "$dir" | awk 'NR == 2 { print $2 }')), a fresh one per run, ${bind_errors} error lines in its logs; nsupdate over TCP with TSIG; dnsorch: latency from accept (created_at) to verified_at, rate N / (last verified_at - first created_at); nsupdate: N / wall time (no verification)"
fi

# ================================= baseline comparison ===================================
# median FORMAT NUMBER...: the median (of an even count, the mean of the middle two).
median() {
  local format="$1"
  shift
  printf '%s\n' "$@" | sort -g | awk -v f="$format" '
    { v[NR] = $1 }
    END {
      if (NR == 0) print "-"
      else if (NR % 2) printf f, v[(NR + 1) / 2]
      else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

declare -A cmp=() # "TOPOLOGY C VARIANT MEASURE" -> the rounds' values, space-separated
cmp_add() { cmp[$1]="${cmp[$1]:-}${cmp[$1]:+ }$2"; }
# cmp_medians BEFORE AFTER: the medians of the rounds in cmp under "BEFORE rps|p50|p99" into
# m_before_rps, m_before_p50, m_before_p99, and those of AFTER into m_after_*; ratio is
# m_after_rps / m_before_rps.
m_before_rps="" m_before_p50="" m_before_p99="" m_after_rps="" m_after_p50="" m_after_p99=""
cmp_medians() {
  local k
  for k in rps p50 p99; do
    local format=%.3f
    [ "$k" != rps ] || format=%.1f
    # shellcheck disable=SC2086 # the lists split into numbers
    printf -v "m_before_$k" '%s' "$(median "$format" ${cmp[$1 $k]})"
    # shellcheck disable=SC2086
    printf -v "m_after_$k" '%s' "$(median "$format" ${cmp[$2 $k]})"
  done
  ratio="$(awk -v a="$m_after_rps" -v b="$m_before_rps" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')"
}
# cmp_wrk TOPOLOGY VARIANT ROUND: wrk at 16 and 64 connections against $base, into cmp.
cmp_wrk() {
  local c
  for c in 16 64; do
    [ "$1" != postgres ] || checkpoint
    wrk_post "$c" "$1 POST c=$c, $2, round $3 of $rounds"
    cmp_add "$1 $c $2 rps" "$rps"
    cmp_add "$1 $c $2 p50" "$p50"
    cmp_add "$1 $c $2 p99" "$p99"
  done
}

# ======================================= HTTPS ===========================================
h_rows=()
h_note=""
if [ "$want_https" = 1 ]; then
  # --- 14. a CA and a certificate for 127.0.0.1 and localhost ------------------------------
  tls_certs="$dir/tls"
  mkdir -p "$tls_certs"
  (
    cd "$tls_certs"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt 2>/dev/null
  )
  plain_base="$base"
  for r in $(seq 1 "$https_rounds"); do
    for v in http https; do
      if [ "$v" = https ]; then
        tls_dir="$tls_certs" base="https://127.0.0.1:$port"
        export CURL_CA_BUNDLE="$tls_certs/ca.pem"
      fi
      start_server # a fresh database, and its admin token
      for c in 16 64 16-close; do
        connection_close=""
        [ "$c" != 16-close ] || connection_close=1
        wrk_post "${c%-close}" "https round $r of $https_rounds: $v, c=$c"
        cmp_add "https $c $v rps" "$rps"
        cmp_add "https $c $v p50" "$p50"
        cmp_add "https $c $v p99" "$p99"
      done
      connection_close=""
      report_logs
      stop_server
      tls_dir="" base="$plain_base"
      unset CURL_CA_BUNDLE
    done
  done
  for c in 16 64 16-close; do
    cmp_medians "https $c http" "https $c https"
    if [ "$c" = 16-close ]; then what="16, a new connection per request"; else what="$c, kept alive"; fi
    h_rows+=("| $what | ${cmp[https $c http rps]// / · } | ${cmp[https $c https rps]// / · } | $m_before_rps | $m_after_rps | $ratio | $m_before_p50 / $m_after_p50 | $m_before_p99 / $m_after_p99 |")
    out_json topology=https scenario=https_vs_http \
      "label=POST c=$what, HTTPS / HTTP, median of $https_rounds" "concurrency:=${c%-close}" \
      "rps:=$m_after_rps" "p50_ms:=$m_after_p50" "p99_ms:=$m_after_p99" "ratio:=$ratio" \
      "http_rps:=$m_before_rps" "http_p50_ms:=$m_before_p50" "http_p99_ms:=$m_before_p99" \
      "rounds:=$https_rounds" "duration=$duration" \
      "rps_rounds:=[${cmp[https $c https rps]// /,}]" "http_rps_rounds:=[${cmp[https $c http rps]// /,}]"
  done
  h_note="dnsorch run (SQLite, WORKER_CONCURRENCY=$workers, simulated backend with no delay), a bearer token with a policy on every request; HTTPS: TLS_CERT_FILE/TLS_KEY_FILE with an EC P-256 certificate, rustls (ring), wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2) with $(openssl version | cut -d' ' -f1-2); $https_rounds rounds, each plain HTTP then HTTPS on a fresh database"
fi

b_rows=()
b_note=""
if [ "$want_base" = 1 ]; then
  # --- baseline: its binary, from a worktree of its own -----------------------------------
  worktree="$dir/baseline-$base_rev"
  log "git worktree add --detach $worktree $base_rev"
  git -C "$root" worktree add --quiet --detach "$worktree" "$base_commit" >&2
  mkdir -p "$cache_dir"
  log "cargo build --release --bin dnsorch at $base_rev (CARGO_TARGET_DIR=$cache_dir/target-baseline)"
  (cd "$worktree" && CARGO_TARGET_DIR="$cache_dir/target-baseline" cargo build --release --quiet --bin dnsorch)
  base_bin="$dir/dnsorch-$base_rev"
  cp "$cache_dir/target-baseline/release/dnsorch" "$base_bin"
  git -C "$root" worktree remove --force "$worktree"
  worktree=""

  # --- 12. SQLite: dnsorch run ------------------------------------------------------------
  for r in $(seq 1 "$rounds"); do
    for v in baseline current; do
      if [ "$v" = baseline ]; then vbin="$base_bin"; else vbin="$bin"; fi
      start_server "$workers" "$vbin" # a fresh database, and its admin token
      cmp_wrk sqlite "$v" "$r"
      report_logs
      stop_server
    done
  done

  # --- 13. PostgreSQL: dnsorch serve, no workers -------------------------------------------
  pg_up
  for r in $(seq 1 "$rounds"); do
    for v in baseline current; do
      if [ "$v" = baseline ]; then vbin="$base_bin"; else vbin="$bin"; fi
      db="bench_cmp_${r}_$v"
      pg_database "$db" "$vbin" # and a token, if the binary has tokens
      logs=()
      pg_spawn_with "$vbin" "$db" "serve-cmp-$r-$v" serve
      wait_ready
      [ -z "$token" ] || auth_check
      log "dnsorch serve ready on $base (pid ${pids[0]}, $v, database $db, no workers)"
      cmp_wrk postgres "$v" "$r"
      report_logs
      stop_server
      # The next round starts from the same state: no database or task stream left behind.
      psql_ -d postgres -c "drop database $db" >/dev/null
      redis-cli -h 127.0.0.1 -p "$redis_port" del "$db" >/dev/null
    done
  done

  for t in sqlite postgres; do
    for c in 16 64; do
      cmp_medians "$t $c baseline" "$t $c current"
      b_rps="$m_before_rps" b_p50="$m_before_p50" b_p99="$m_before_p99"
      c_rps="$m_after_rps" c_p50="$m_after_p50" c_p99="$m_after_p99"
      within="$(awk -v r="$ratio" 'BEGIN { print (r != "-" && r >= 0.90) ? "yes" : "NO" }')"
      if [ "$t" = sqlite ]; then what="SQLite (run)"; else what="PostgreSQL (serve)"; fi
      b_rows+=("| $what | $c | ${cmp[$t $c baseline rps]// / · } | ${cmp[$t $c current rps]// / · } | $b_rps | $c_rps | $ratio | $b_p50 / $c_p50 | $b_p99 / $c_p99 | $within |")
      out_json "topology=$t" scenario=post_vs_baseline \
        "label=$what POST c=$c, $rev / $base_rev, median of $rounds" "concurrency:=$c" \
        "rps:=$c_rps" "p50_ms:=$c_p50" "p99_ms:=$c_p99" "ratio:=$ratio" \
        "baseline_commit=$base_rev" "baseline_rps:=$b_rps" "baseline_p50_ms:=$b_p50" \
        "baseline_p99_ms:=$b_p99" "rounds:=$rounds" "duration=$duration" \
        "rps_rounds:=[${cmp[$t $c current rps]// /,}]" \
        "baseline_rps_rounds:=[${cmp[$t $c baseline rps]// /,}]"
    done
  done
  if has_tokens "$base_bin"; then base_auth="also with tokens"; else base_auth="no tokens, requests without one"; fi
  b_note="dnsorch $rev (every request with a bearer token with a policy over example.test, made by \`dnsorch token create\`; the baseline's token is made the same way where it has tokens) against $base_rev ($base_auth); $rounds rounds, each the baseline then this tree on a fresh database; WORKER_CONCURRENCY=$workers for \`run\`; PostgreSQL $(psql_ -d postgres -c 'show server_version' | cut -d' ' -f1) (fsync=on, synchronous_commit=on) + $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/Redis \1/p'), a CHECKPOINT before each wrk run"
fi

# --- 9. tables ---------------------------------------------------------------------------
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
if [ "$want_krss" = 1 ]; then
  echo
  echo "Kafka consumer memory: dnsorch $rev, $(nproc) CPUs, $krss_messages messages of $krss_bytes bytes, peak RSS bound $krss_bound MiB"
  echo "$kr_note"
  echo "| scenario | messages | seconds | recorded | too_large | invalid | peak RSS MiB | bound | warning lines |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${kr_rows[@]}"
fi
if [ "$want_dns" = 1 ]; then
  echo
  echo "DNS (rfc2136 into BIND): dnsorch $rev, $(nproc) CPUs, $dns_records A records per run"
  echo "$d_note"
  echo "| scenario | records | seconds | records/s | p50 ms | p99 ms | FAILED | missing at BIND | warning lines |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${d_rows[@]}"
fi

if [ "$want_https" = 1 ]; then
  echo
  echo "POST /api/v1/dns/create over HTTPS beside plain HTTP: dnsorch $rev, $(nproc) CPUs, wrk -t2 -d$duration, req/s per round and medians"
  echo "$h_note"
  echo "| connections | HTTP req/s (rounds) | HTTPS req/s (rounds) | HTTP median | HTTPS median | ratio HTTPS / HTTP | p50 ms median (HTTP / HTTPS) | p99 ms median (HTTP / HTTPS) |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${h_rows[@]}"
fi

if [ "$want_base" = 1 ]; then
  echo
  echo "POST /api/v1/dns/create, this tree against the baseline: $(nproc) CPUs, wrk -t2 -d$duration, req/s per round and medians"
  echo "$b_note"
  echo "| topology | connections | $base_rev req/s (rounds) | $rev req/s (rounds) | $base_rev median | $rev median | ratio $rev / $base_rev | p50 ms median ($base_rev / $rev) | p99 ms median ($base_rev / $rev) | ratio >= 0.90 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${b_rows[@]}"
fi

if [ "$failed" -ne 0 ]; then
  log "FAILED: non-2xx answers, socket errors, failed pgbench transactions, dead letters, a wrong PENDING count, a consumer's peak RSS over its bound or wrong counts of large messages, DNS requests not COMPLETED, a failed nsupdate, records missing at the BIND or a timeout (see above)"
  exit 1
fi
