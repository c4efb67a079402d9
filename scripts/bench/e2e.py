#!/usr/bin/env python3
"""End-to-end throughput: submit N create requests as fast as possible, then wait until all
of them are COMPLETED, polling the dnsorch_requests{status="COMPLETED"} gauge in /metrics.

Every request (the POSTs and /metrics) carries `Authorization: Bearer <token>` with the token
in the environment variable BENCH_TOKEN (scripts/bench.sh sets it); a 401 or 403 from /metrics
ends the run at once.

Standard library only. Prints one machine-readable line:
  E2E requests=.. submit_s=.. submit_rps=.. total_s=.. completions_per_s=.. non2xx=.. errors=..
Exits 1 on a non-2xx answer, a transport error or a timeout.
"""

import argparse
import http.client
import itertools
import json
import os
import re
import sys
import threading
import time

GAUGE = re.compile(r'^dnsorch_requests\{status="COMPLETED"\}\s+(\S+)\s*$', re.M)


class Unauthorized(Exception):
    """dnsorch refused the token (401 or 403): no point in polling on."""


def auth_headers() -> dict:
    """The Authorization header of BENCH_TOKEN (none when it is unset or empty)."""
    token = os.environ.get("BENCH_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def body(i: int) -> bytes:
    return json.dumps(
        {
            "context": {"account_id": "bench"},
            "resource": {
                "record_type": "A",
                "domain": f"e{i}.bench.example.test",
                "target": f"192.0.2.{i % 254 + 1}",
            },
        },
        separators=(",", ":"),
    ).encode()


def metrics(host: str, port: int) -> str:
    """The /metrics text."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=auth_headers())
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    if resp.status in (401, 403):
        raise Unauthorized(f"/metrics answered {resp.status}: {text[:300]!r}")
    if resp.status != 200:
        raise RuntimeError(f"/metrics answered {resp.status}")
    return text


def completed(host: str, port: int) -> int:
    m = GAUGE.search(metrics(host, port))
    return int(float(m.group(1))) if m else 0


def submit(host: str, port: int, requests: int, threads: int, make_body, on_answer=None,
           path: str = "/api/v1/dns/create") -> dict:
    """POSTs make_body(i) to `path` (/api/v1/dns/create) for i in 0..requests from `threads` threads,
    each over a keep-alive connection. Calls on_answer(i, status, body) for every answer (from
    the submitting thread). Returns the counts: non2xx, errors, statuses, and the monotonic
    times first (the first request) and submitted (the last answer)."""
    counter = itertools.count()  # next() on itertools.count is atomic under the GIL
    headers = {"Content-Type": "application/json", **auth_headers()}
    lock = threading.Lock()
    stats = {"non2xx": 0, "errors": 0, "first": None, "statuses": {}}

    def worker() -> None:
        conn = None
        while True:
            i = next(counter)
            if i >= requests:
                break
            payload = make_body(i)
            for attempt in (1, 2):  # one reconnect if a keep-alive connection went stale
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, port, timeout=30)
                    if stats["first"] is None:
                        with lock:
                            if stats["first"] is None:
                                stats["first"] = time.monotonic()
                    conn.request(
                        "POST",
                        path,
                        body=payload,
                        headers=headers,
                    )
                    resp = conn.getresponse()
                    text = resp.read()
                    if not 200 <= resp.status <= 299:
                        with lock:
                            stats["non2xx"] += 1
                            stats["statuses"][resp.status] = stats["statuses"].get(resp.status, 0) + 1
                            if stats["non2xx"] <= 3:
                                print(f"non-2xx answer {resp.status}: {text[:300]!r}", file=sys.stderr)
                    if on_answer is not None:
                        on_answer(i, resp.status, text)
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as e:
                    if conn is not None:
                        conn.close()
                        conn = None
                    # Retrying after the request may have been sent could duplicate it; only
                    # retry a stale keep-alive connection that dropped before any answer.
                    if attempt == 2 or not isinstance(
                        e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                    ):
                        with lock:
                            stats["errors"] += 1
                            if stats["errors"] <= 3:
                                print(f"transport error: {e!r}", file=sys.stderr)
                        break
        if conn is not None:
            conn.close()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stats["submitted"] = time.monotonic()
    if stats["first"] is None:
        stats["first"] = stats["submitted"]
    submit_s = stats["submitted"] - stats["first"]
    print(
        f"submitted {requests} requests in {submit_s:.2f}s "
        f"({requests / submit_s if submit_s else 0:.0f}/s), "
        f"non-2xx={stats['non2xx']} {stats['statuses'] or ''} errors={stats['errors']}",
        file=sys.stderr,
    )
    return stats


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--poll", type=float, default=0.2)
    args = ap.parse_args()

    stats = submit(args.host, args.port, args.requests, args.threads, body)
    first = stats["first"]
    submit_s = stats["submitted"] - first

    expected = args.requests - stats["non2xx"] - stats["errors"]
    deadline = first + args.timeout
    last_report = 0.0
    done = 0
    while True:
        now = time.monotonic()
        try:
            done = completed(args.host, args.port)
        except (OSError, http.client.HTTPException, RuntimeError) as e:
            print(f"polling /metrics failed: {e!r}", file=sys.stderr)
        now = time.monotonic()
        if done >= expected:
            break
        if now > deadline:
            print(f"timeout: {done}/{expected} COMPLETED after {now - first:.1f}s", file=sys.stderr)
            break
        if now - last_report >= 5:
            print(f"  {done}/{expected} COMPLETED after {now - first:.1f}s", file=sys.stderr)
            last_report = now
        time.sleep(args.poll)
    total_s = now - first
    ok = done >= expected and stats["non2xx"] == 0 and stats["errors"] == 0
    print(
        f"E2E requests={args.requests} completed={done} submit_s={submit_s:.3f} "
        f"submit_rps={args.requests / submit_s if submit_s else 0:.1f} total_s={total_s:.3f} "
        f"completions_per_s={done / total_s if total_s else 0:.1f} "
        f"non2xx={stats['non2xx']} errors={stats['errors']} timed_out={int(done < expected)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unauthorized as e:
        print(f"{e} (BENCH_TOKEN is {'set' if os.environ.get('BENCH_TOKEN') else 'not set'})", file=sys.stderr)
        sys.exit(1)
