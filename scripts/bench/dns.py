#!/usr/bin/env python3
"""DNS end to end: submit N create requests for A records in a zone served by a real BIND
(through dnsorch's rfc2136 backend), wait until every one is COMPLETED or FAILED (the
dnsorch_requests{status=..} gauges in /metrics), then read the requests back from the API and
check the records at the server.

Submission is e2e.py's (`submit`): one create per POST /api/v1/dns/create, or with
--set-size K the same creates as change sets of K (POST /api/v1/dns/changes, not atomic), the
requests' ids read from each set's items. Names are b<i>-<run id>.<zone>, so no two runs collide.

Latency is the request's own timestamps: verified_at - created_at (accept to verified), read
from GET /api/v1/dns/requests?status=..&limit=500&cursor=.. (newest first, cursor paging). The
rate is N / (last verified_at - first created_at). The phases between, from the same rows:
queue (started_at - created_at: waiting for a worker), update (applied_at - started_at: the
claim, then the UPDATE's round trip, including waiting for the backend's one TCP connection),
verify (verified_at - applied_at) and record (finished_at - verified_at: writing the outcome).
The request logs (GET /api/v1/dns/requests/{id}) give the UPDATE exchange alone ("update sent
... in N ms") and the verification ("verified at ... after Q queries, M ms").

Every name is then queried at the server with `dig +norecurse` (one `dig -f` batch) and must
hold exactly its target. Every API call carries the bearer token of BENCH_TOKEN (as in e2e.py;
the list and the request logs need one that may read the account's requests). Standard library
and dig only. Prints one machine-readable line:
  DNS requests=.. completed=.. failed=.. verified_per_s=.. p50_ms=.. p99_ms=.. ...
Exits 1 on a non-2xx answer, a transport error, a timeout, a request not COMPLETED or a record
missing at the server.
"""

import argparse
import http.client
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import Unauthorized, auth_headers, metrics, submit  # noqa: E402

STATUS = re.compile(r'^dnsorch_requests\{status="(\w+)"\}\s+(\S+)\s*$', re.M)
UPDATE = re.compile(r"^update sent to \S+ \(key [^)]*\): (.+?)(?:, TSIG error .*)? in (\d+) ms$")
VERIFIED = re.compile(r"^verified at \S+ after (\d+) queries, (\d+) ms \(primary\)$")


def target(i: int) -> str:
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


def get_json(conn: http.client.HTTPConnection, path: str):
    conn.request("GET", path, headers=auth_headers())
    resp = conn.getresponse()
    text = resp.read()
    if resp.status in (401, 403):
        raise Unauthorized(f"GET {path} answered {resp.status}: {text[:300]!r}")
    if resp.status != 200:
        raise RuntimeError(f"GET {path} answered {resp.status}: {text[:300]!r}")
    return json.loads(text)


def statuses(host: str, port: int) -> dict:
    return {m.group(1): int(float(m.group(2))) for m in STATUS.finditer(metrics(host, port))}


def list_all(host: str, port: int, status: str) -> list:
    """Every request with this status, all pages."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    items, cursor = [], None
    try:
        while True:
            path = f"/api/v1/dns/requests?status={status}&limit=500"
            if cursor:
                path += f"&cursor={cursor}"
            page = get_json(conn, path)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
    finally:
        conn.close()


def logs_of(host: str, port: int, ids: list, threads: int = 4) -> dict:
    """id -> log_messages, read with a few keep-alive connections."""
    out, lock, todo = {}, threading.Lock(), list(ids)

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    rid = todo.pop()
                request = get_json(conn, f"/api/v1/dns/requests/{rid}")
                with lock:
                    out[rid] = request.get("log_messages") or []
        finally:
            conn.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def ts(value: str) -> float:
    # RFC 3339 with up to nanoseconds and a Z or an offset: keep microseconds for fromisoformat.
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        raise ValueError(f"not a timestamp: {value!r}")
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}").timestamp()


def pct(values: list, p: float) -> float:
    """Nearest-rank percentile (as bench.sh computes pgbench's)."""
    if not values:
        return float("nan")
    v = sorted(values)
    i = max(1, math.ceil(round(p * len(v), 6)))
    return v[min(i, len(v)) - 1]


def dig_all(server: str, port: int, names: list, targets: dict) -> tuple:
    """(checked, missing, samples of what was wrong): one `dig -f` batch, RD=0."""
    with tempfile.NamedTemporaryFile("w", suffix=".dig", delete=False) as f:
        for name in names:
            f.write(f"{name} A\n")
        batch = f.name
    try:
        out = subprocess.run(
            ["dig", f"@{server}", "-p", str(port), "+norecurse", "+noall", "+answer",
             "+time=2", "+tries=2", "-f", batch],
            capture_output=True, text=True, timeout=600, check=False,
        ).stdout
    finally:
        os.unlink(batch)
    seen = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[3] == "A":
            seen.setdefault(parts[0].rstrip(".").lower(), set()).add(parts[4])
    wrong = [n for n in names if seen.get(n) != {targets[n]}]
    return len(names), len(wrong), [(n, sorted(seen.get(n, ()))) for n in wrong[:3]]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--poll", type=float, default=0.2)
    ap.add_argument("--zone", default="example.test")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--dns-server", default="127.0.0.1")
    ap.add_argument("--dns-port", type=int, required=True)
    ap.add_argument("--set-size", type=int, default=0,
                    help="submit the creates as change sets of this many (0: one per request)")
    args = ap.parse_args()

    names = [f"b{i}-{args.run_id}.{args.zone}" for i in range(args.requests)]
    targets = {names[i]: target(i) for i in range(args.requests)}
    ids = {}  # request id -> name, of every 202

    def resource(i: int) -> dict:
        return {"record_type": "A", "domain": names[i], "target": target(i)}

    def make_body(i: int) -> bytes:
        return json.dumps(
            {"context": {"account_id": "bench"}, "resource": resource(i)},
            separators=(",", ":"),
        ).encode()

    def on_answer(i: int, status: int, text: bytes) -> None:
        if status == 202:
            ids[json.loads(text)["request_id"]] = names[i]

    size = args.set_size
    if size > 0:
        sets = (args.requests + size - 1) // size

        def make_set(j: int) -> bytes:
            changes = [{"action": "create", "resource": resource(i)}
                       for i in range(j * size, min((j + 1) * size, args.requests))]
            return json.dumps({"context": {"account_id": "bench"}, "changes": changes},
                              separators=(",", ":")).encode()

        def on_set(j: int, status: int, text: bytes) -> None:
            if status != 202:
                return
            for item in json.loads(text)["items"]:
                if "request_id" in item:
                    ids[item["request_id"]] = names[j * size + item["index"]]
                elif len(ids) < 3:
                    print(f"a change was refused: {item}", file=sys.stderr)

        stats = submit(args.host, args.port, sets, min(args.threads, sets), make_set, on_set,
                       path="/api/v1/dns/changes")
    else:
        stats = submit(args.host, args.port, args.requests, args.threads, make_body, on_answer)
    first = stats["first"]
    submit_s = stats["submitted"] - first

    expected = len(ids)
    deadline = first + args.timeout
    last_report = 0.0
    counts = {}
    while True:
        try:
            counts = statuses(args.host, args.port)
        except (OSError, http.client.HTTPException, RuntimeError) as e:
            print(f"polling /metrics failed: {e!r}", file=sys.stderr)
        now = time.monotonic()
        done = counts.get("COMPLETED", 0) + counts.get("FAILED", 0)
        if done >= expected:
            break
        if now > deadline:
            print(f"timeout: {done}/{expected} COMPLETED or FAILED after {now - first:.1f}s", file=sys.stderr)
            break
        if now - last_report >= 5:
            print(f"  {counts.get('COMPLETED', 0)} COMPLETED, {counts.get('FAILED', 0)} FAILED "
                  f"of {expected} after {now - first:.1f}s", file=sys.stderr)
            last_report = now
        time.sleep(args.poll)
    timed_out = int(done < expected)

    completed = [r for r in list_all(args.host, args.port, "COMPLETED") if r["request_id"] in ids]
    failed = [r for r in list_all(args.host, args.port, "FAILED") if r["request_id"] in ids]
    if failed:
        print(f"{len(failed)} requests FAILED; the logs of up to 3:", file=sys.stderr)
        for rid, entries in logs_of(args.host, args.port, [r["request_id"] for r in failed[:3]]).items():
            print(f"  {rid} ({ids[rid]}):", file=sys.stderr)
            for e in entries:
                print(f"    {e['at']} {e['level']}: {e['message']}", file=sys.stderr)

    created = [ts(r["created_at"]) for r in completed]
    verified = [ts(r["verified_at"]) for r in completed]
    latency = [v - c for c, v in zip(created, verified)]
    span = (max(verified) - min(created)) if completed else 0.0
    phases = {
        "queue": [ts(r["started_at"]) - ts(r["created_at"]) for r in completed],
        "update": [ts(r["applied_at"]) - ts(r["started_at"]) for r in completed],
        "verify": [ts(r["verified_at"]) - ts(r["applied_at"]) for r in completed],
        "record": [ts(r["finished_at"]) - ts(r["verified_at"]) for r in completed],
    }
    retried = sum(1 for r in completed if r["attempts"] > 1)

    # The backend's own account of each attempt, from the request logs.
    logs = logs_of(args.host, args.port, [r["request_id"] for r in completed])
    update_ms, verify_ms, verify_queries, rcodes = [], [], [], {}
    for entries in logs.values():
        for e in entries:
            if m := UPDATE.match(e["message"]):
                rcodes[m.group(1)] = rcodes.get(m.group(1), 0) + 1
                update_ms.append(int(m.group(2)))
            elif m := VERIFIED.match(e["message"]):
                verify_queries.append(int(m.group(1)))
                verify_ms.append(int(m.group(2)))

    checked, missing, wrong = dig_all(args.dns_server, args.dns_port, list(ids.values()), targets)
    if missing:
        print(f"{missing} of {checked} names do not hold exactly their A record at "
              f"{args.dns_server}:{args.dns_port}; e.g. {wrong}", file=sys.stderr)

    print(f"phases over {len(completed)} COMPLETED requests (p50 / p99 / max ms):", file=sys.stderr)
    for name, values in phases.items():
        print(f"  {name:7} {ms(pct(values, 0.5))} / {ms(pct(values, 0.99))} / {ms(max(values, default=0))}",
              file=sys.stderr)
    print(f"request logs: UPDATE exchange p50 {pct(update_ms, 0.5)} ms, p99 {pct(update_ms, 0.99)} ms, "
          f"max {max(update_ms, default=0)} ms over {len(update_ms)} updates {rcodes}; "
          f"verification p50 {pct(verify_ms, 0.5)} ms, p99 {pct(verify_ms, 0.99)} ms, "
          f"queries {sum(verify_queries)} for {len(verify_queries)} requests "
          f"(max {max(verify_queries, default=0)}); {retried} requests took more than one attempt",
          file=sys.stderr)

    ok = (not timed_out and stats["non2xx"] == 0 and stats["errors"] == 0
          and len(completed) == args.requests and missing == 0)
    print(
        f"DNS requests={args.requests} set_size={size} accepted={len(ids)} completed={len(completed)} "
        f"failed={len(failed)} submit_s={submit_s:.3f} "
        f"submit_rps={args.requests / submit_s if submit_s else 0:.1f} span_s={span:.3f} "
        f"verified_per_s={len(completed) / span if span else 0:.1f} "
        f"p50_ms={ms(pct(latency, 0.5))} p99_ms={ms(pct(latency, 0.99))} "
        f"max_ms={ms(max(latency, default=0))} "
        f"queue_p50_ms={ms(pct(phases['queue'], 0.5))} update_p50_ms={ms(pct(phases['update'], 0.5))} "
        f"verify_p50_ms={ms(pct(phases['verify'], 0.5))} "
        f"update_exchange_p50_ms={pct(update_ms, 0.5)} update_exchange_p99_ms={pct(update_ms, 0.99)} "
        f"verify_queries={sum(verify_queries)} retried={retried} "
        f"dig_checked={checked} dig_missing={missing} "
        f"non2xx={stats['non2xx']} errors={stats['errors']} timed_out={timed_out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unauthorized as e:
        print(f"{e} (BENCH_TOKEN is {'set' if os.environ.get('BENCH_TOKEN') else 'not set'})", file=sys.stderr)
        sys.exit(1)
