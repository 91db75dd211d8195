"""The event log's cost during a sale: one ``booking demo`` of 5,000 paying buyers
(``--worker-process --server-processes 2``: the worker relays the log), measured.

A webhook receiver on loopback (in this process; answering at once, or after
``--slow-s`` seconds with ``--webhook slow``) is registered for the demo's event as soon
as it exists (one entry per POST, or with ``--batch`` registered batched: up to 50
entries per POST). Meanwhile the relay's lag (the oldest unpublished entry's age, the query
behind ``booking_relay_lag_seconds``) is read from PostgreSQL every 0.25 s, and the CPU
time (user + system) of every process of the demo (servers, worker, sandbox gateway,
bench processes, Redis) and of its PostgreSQL is read from /proc. One JSON line per
run: paid bookings/s (the demo's "first hold..last booking"), server CPU per paid
booking (the serve processes, the worker and the gateway), PostgreSQL's apart, the
lag's p50 / p99 / max, entries delivered and the POSTs they came in, the 1-minute load
average.

    PYTHONPATH=. .venv/bin/python scripts/bench_event_log.py --tree . --label on-fast

``--tree``: the checkout whose code runs (a copy with the log's writes taken out, for a
comparison). Each run has a data directory of its own, removed after.
"""

# A measuring script: its few blocking calls (start-up, reading the results) happen
# outside the sampling loop.
# ruff: noqa: ASYNC220, ASYNC230, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from typing import Any

import asyncpg
import httpx
import psutil

ADMIN = "measure-admin-key-0123456789"
LAG = """SELECT coalesce(extract(epoch FROM now() - min(l.created_at)), 0)::float8
FROM event_log_cursors c
JOIN event_log l ON l.event_id = c.event_id AND l.seq = c.published_seq + 1"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Answers each POST 200, after ``delay`` seconds; counts them and the entries in them."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.n = 0
        self.entries = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(m.group(1)) if m else 0)
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.n += 1
                batch = body.startswith(b'{"entries":')
                self.entries += len(json.loads(body)["entries"]) if batch else 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def classify(cmd: list[str]) -> str:
    c = " ".join(cmd)
    for kind in ("serve", "worker", "relay", "gateway", "demo"):
        if f"api.cli {kind}" in c:
            return kind
    if "postgres" in c:
        return "pg"
    return "redis" if "redis-server" in c else "bench"


def found(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", required=True, help="the checkout whose code runs")
    ap.add_argument("--label", required=True, help="the run's name in the output")
    ap.add_argument("--webhook", choices=["none", "fast", "slow"], default="fast")
    ap.add_argument(
        "--batch",
        action="store_true",
        help='register the webhook batched ({"url": ..., "batch": true}): up to 50 entries '
        "per POST (the --tree must know the field)",
    )
    ap.add_argument("--slow-s", type=float, default=2.0)
    ap.add_argument("--out", default="event-log-costs.jsonl")
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=500)
    a = ap.parse_args()
    tree = os.path.abspath(a.tree)
    data = f"/tmp/event-log-costs/{a.label}-{int(time.time())}"
    os.makedirs(os.path.dirname(data), exist_ok=True)
    http_port, ws_port = free_port(), free_port()
    rx = Receiver(a.slow_s if a.webhook == "slow" else 0)
    listener = await asyncio.start_server(rx.handle, "127.0.0.1", 0)
    rx_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook"
    env = dict(os.environ, PYTHONPATH=tree, BOOKING_ADMIN_KEY=ADMIN)
    jpath = data + ".json"
    argv = [f"{tree}/.venv/bin/python", "-m", "api.cli", "demo", "--runtime", "trio"]
    argv += ["--scenario", "flash", "--clients", str(a.clients), "--rows", str(a.rows)]
    argv += ["--max-active-holds", "20000", "--hold-seconds", "60", "--pay-ratio", "1"]
    argv += ["--max-seconds", "300", "--worker-process", "--server-processes", "2"]
    argv += ["--data-dir", data, "--http-port", str(http_port), "--ws-port", str(ws_port)]
    argv += ["--json", jpath]
    with open(data + ".log", "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    root = psutil.Process(proc.pid)
    cpu: dict[int, tuple[str, float]] = {}  # pid -> (kind, user + system seconds)
    lags: list[float] = []
    loads: list[float] = []
    event_id: str | None = None
    registered: int | None = None  # the webhook's registration: 201
    conn: Any = None  # to the demo's PostgreSQL, once it has an event
    t0 = time.monotonic()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    base = f"http://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=5, trust_env=False
    ) as http:
        last_load = 0.0
        while proc.poll() is None:
            procs = []
            with contextlib.suppress(psutil.Error):
                procs = [root, *root.children(recursive=True)]
            for p in psutil.process_iter(["cmdline"]):
                cl = p.info["cmdline"] or []
                if cl and data in " ".join(cl) and "postgres" in cl[0]:
                    procs.append(p)
                    with contextlib.suppress(psutil.Error):
                        procs += p.children()
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    kind = cpu[p.pid][0] if p.pid in cpu else classify(p.cmdline())
                    cpu[p.pid] = (kind, t.user + t.system)
            if time.monotonic() - last_load >= 1:
                loads.append(os.getloadavg()[0])
                last_load = time.monotonic()
            if event_id is None:
                with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
                    r = await http.get("/v1/events")
                    events = r.json().get("events", []) if r.status_code == 200 else []
                    if events:
                        event_id = events[0]["id"]
                        if a.webhook != "none":
                            hooks = f"/v1/events/{event_id}/webhooks"
                            spec: dict[str, Any] = {"url": rx_url}
                            if a.batch:
                                spec["batch"] = True
                            registered = (await http.post(hooks, json=spec)).status_code
                        dsn = f"postgresql://postgres:@/postgres?host={data}/postgres"
                        # One connection, not a pool: a pool reconnects in the background
                        # and logs a traceback when the demo stops its PostgreSQL.
                        conn = await asyncpg.connect(dsn)
            elif conn is not None:
                with contextlib.suppress(Exception):
                    lags.append(await conn.fetchval(LAG))
            await asyncio.sleep(0.25)
    with open(data + ".log", errors="replace") as f:
        text = f.read()
    bookings_per_s = None
    if os.path.exists(jpath):
        with open(jpath) as f:
            bookings_per_s = json.load(f).get("bookings_per_s")
    paid = int(found(r"confirmed \(paid\)\s+(\d+)", text) or 0)
    by: dict[str, float] = {}
    for kind, t in cpu.values():
        by[kind] = by.get(kind, 0) + t
    server = sum(by.get(k, 0) for k in ("serve", "worker", "gateway", "relay"))
    lags.sort()

    def q(f: float) -> float | None:
        return lags[min(len(lags) - 1, int(f * len(lags)))] if lags else None

    out = {
        "label": a.label,
        "webhook": a.webhook,
        "batch": a.batch,
        "webhook_registered": registered,
        "when": time.strftime("%H:%M:%S", time.gmtime()),
        "rc": proc.returncode,
        "paid": paid,
        "bookings_per_s": bookings_per_s,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "server_cpu_s": round(server, 2),
        "cpu_ms_per_booking": round(1000 * server / paid, 3) if paid else None,
        "pg_cpu_ms_per_booking": round(1000 * by.get("pg", 0) / paid, 3) if paid else None,
        "cpu_by": {k: round(v, 2) for k, v in by.items()},
        "lag_samples": len(lags),
        "lag_p50": q(0.5),
        "lag_p99": q(0.99),
        "lag_max": lags[-1] if lags else None,
        "delivered": rx.entries,
        "posts": rx.n,
        "load_mean": round(sum(loads) / len(loads), 2) if loads else None,
        "load_min": min(loads, default=None),
        "load_max": max(loads, default=None),
        "oversold": found(r"oversold\s+(\S+)", text),
        "conserved": found(r"capacity\s+(yes|no)", text),
        "invariants_broken": "INVARIANTS BROKEN" in text,
        "data": data,
    }
    if conn is not None:  # its PostgreSQL stopped with the demo: nothing to say goodbye to
        conn.terminate()
    listener.close()
    print(json.dumps(out))
    with open(a.out, "a") as f:
        f.write(json.dumps(out) + "\n")
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
