"""Baselines to read the engine's numbers against: ``python -m bench.baselines {lua,rowlock}``.

- ``lua``: the ceiling of the hold script itself. The same Redis, the same
  ``join_queue.lua`` and ``admit_next.lua`` called directly with redis-py in
  batches, no server, no WebSocket, no bridge: the most admissions per second
  this Redis can decide on this machine.
- ``rowlock``: the PostgreSQL row-locking design most teams write first
  (``bench/baseline_app.py``: ``SELECT ... FOR UPDATE SKIP LOCKED`` behind a
  minimal Starlette endpoint on hypercorn), driven by concurrent buyers that
  hold and pay over REST.

This module uses redis-py and asyncpg's server directly, although only
``storage/`` may: it is a comparison harness, not part of the product. It reuses
the engine's Lua files and key layout read-only, so the ceiling is of the very
scripts the engine runs. Embedded servers are started unless URLs are given.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from engine.admission import AdmissionPolicy

__all__ = ["lua_ceiling", "main", "rowlock_baseline"]

#: Holds one expiry sweep call releases, as the engine's worker asks.
SWEEP_BATCH = AdmissionPolicy().sweep_batch


def _script(name: str) -> str:
    lua = resources.files("storage") / "lua"
    return (lua / "_prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _seeds() -> list[int]:
    """The two seeds the scripts take for the opening shuffle of a pre-queue."""
    return [secrets.randbelow(2**31), secrets.randbelow(2**31)]


def lua_ceiling(
    redis_url: str,
    clients: int = 20_000,
    batch: int = 100,
    *,
    seats: int | None = None,
    admit: int | None = None,
) -> dict[str, Any]:
    """Join ``clients``, then admit ``admit`` of them (all), ``batch`` per script call.

    ``seats`` (default: one per client) sets the section size, so the queue's length
    and the seat map's size can be varied apart. Rates are per second.
    """
    seats = seats or clients
    admit = min(admit or clients, clients, seats)
    import redis

    from storage.scripts import ScriptRunner

    r = redis.Redis.from_url(redis_url)
    join = r.register_script(_script("join_queue"))
    admit_next = r.register_script(_script("admit_next"))
    expire = r.register_script(_script("expire_holds"))
    init = r.register_script(_script("init_event"))
    event_id = "bl" + secrets.token_hex(5)
    keys = ScriptRunner.layout(event_id, ["s"])  # the KEYS every event script takes
    rows = -(-seats // 50)
    config = {
        "opens_at_ms": 0,
        "hold_ms": 600_000,
        "max_active": clients + 1,
        "max_per_order": 4,
        "sections": [{"id": "s", "price_cents": 100, "map": ("0" * 50 + "|") * rows}],
    }
    try:
        init(keys=keys, args=[0, json.dumps(config)])
        started = time.perf_counter()
        for first in range(0, clients, 500):
            args: list[Any] = [int(time.time() * 1000), *_seeds()]
            for i in range(first, min(first + 500, clients)):
                # client, quantity, any section, untraced, no verified person
                args += [f"c{i}", 1, "", "", ""]
            join(keys=keys, args=args)
        joined_s = time.perf_counter() - started
        admitted, calls = 0, 0
        started = time.perf_counter()
        while admitted < admit:
            count = min(batch, admit - admitted)
            now = int(time.time() * 1000)
            out = json.loads(admit_next(keys=keys, args=[now, count, *_seeds()]))
            admitted += out["admitted"]
            calls += 1
            if out["admitted"] == 0 and out["reason"] != "budget":
                raise RuntimeError(f"admission stopped: {out}")
        admit_s = time.perf_counter() - started
        released, release_calls = 0, 0
        started = time.perf_counter()
        while released < admitted:  # every hold falls due at once: the sweep's ceiling
            due = int(time.time() * 1000) + 3_600_000
            out = json.loads(expire(keys=keys, args=[due, SWEEP_BATCH]))
            released += out["released"]
            release_calls += 1
            if out["released"] == 0:
                raise RuntimeError(f"release stopped: {out}")
        release_s = time.perf_counter() - started
    finally:
        r.delete(*keys)
        r.close()
    return {
        "baseline": "lua",
        "clients": clients,
        "seats": seats,
        "admitted": admitted,
        "batch": batch,
        "joins_per_s": clients / joined_s,
        "admissions_per_s": admitted / admit_s,
        "script_calls": calls,
        "releases_per_s": released / release_s,
        "release_calls": release_calls,
        "sweep_batch": SWEEP_BATCH,
    }


def rowlock_baseline(
    database_url: str, *, buyers: int = 2000, seats: int = 4000, concurrency: int = 64
) -> dict[str, Any]:
    """Serve ``bench/baseline_app.py`` in a child process and run ``buyers`` hold + pay each."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.baselines", "serve-rowlock", database_url, str(port)]
    )
    try:
        return _drive_rowlock(f"http://127.0.0.1:{port}", database_url, buyers, seats, concurrency)
    finally:
        server.terminate()
        server.wait(10)


def _drive_rowlock(
    url: str, database_url: str, buyers: int, seats: int, concurrency: int
) -> dict[str, Any]:
    import asyncio

    import asyncpg
    import httpx
    import uvloop

    from bench.baseline_app import reset_event

    async def run() -> dict[str, Any]:
        event_id = "bl" + secrets.token_hex(5)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        await reset_event(pool, event_id, seats)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        latencies: list[float] = []
        outcomes = {"confirmed": 0, "sold_out": 0, "error": 0}
        async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False) as http:
            for _ in range(100):  # the server process is starting
                try:
                    await http.post("/hold", json={"event_id": "warmup", "quantity": 1})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(buyers):
                queue.put_nowait(1 + i % 4)

            async def buyer() -> None:
                while not queue.empty():
                    quantity = queue.get_nowait()
                    held = await http.post(
                        "/hold", json={"event_id": event_id, "quantity": quantity}
                    )
                    if held.status_code == 409:
                        outcomes["sold_out"] += 1
                        continue
                    paid_at = time.perf_counter()
                    paid = await http.post(f"/pay/{held.json()['hold_id']}")
                    latencies.append(time.perf_counter() - paid_at)
                    outcomes["confirmed" if paid.status_code == 200 else "error"] += 1

            started = time.perf_counter()
            await asyncio.gather(*(buyer() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        async with pool.acquire() as conn:
            sold = await conn.fetchval(
                "SELECT count(*) FROM baseline_seats WHERE event_id = $1 AND status = 'sold'",
                event_id,
            )
            booked = await conn.fetchval(
                "SELECT coalesce(sum(cardinality(seats)), 0) FROM baseline_bookings WHERE event_id = $1",
                event_id,
            )
        await pool.close()
        latencies.sort()
        return {
            "baseline": "rowlock",
            "buyers": buyers,
            "seats": seats,
            "concurrency": concurrency,
            "bookings_per_s": outcomes["confirmed"] / elapsed,
            "payment_p99_s": latencies[int(0.99 * len(latencies))] if latencies else 0.0,
            "outcomes": outcomes,
            "oversold": sold > seats or booked != sold,
        }

    return uvloop.run(run())


def _serve_rowlock(database_url: str, port: int) -> None:
    import asyncio

    import uvloop
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from bench.baseline_app import create_app

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = 1024
    config.accesslog = None
    config.keep_alive_max_requests = 1_000_000
    uvloop.install()
    asyncio.run(serve(create_app(database_url), config))  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _servers(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.redis_url and args.database_url:
        yield args.redis_url, args.database_url
        return
    import tempfile

    from storage.embedded import embedded_servers, remove_data_dir

    data_dir = Path(tempfile.mkdtemp(prefix="booking-baseline-"))
    try:
        with embedded_servers(
            data_dir, redis_url=args.redis_url, database_url=args.database_url
        ) as started:
            assert started.redis_url and started.database_url
            yield started.redis_url, started.database_url
    finally:
        remove_data_dir(data_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.baselines lua|rowlock|all``: print each baseline as a JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-rowlock"]:
        _serve_rowlock(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("which", choices=("lua", "rowlock", "all"))
    parser.add_argument("--clients", type=int, default=20_000, help="lua: clients (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="lua: per script call (default 100)")
    parser.add_argument("--lua-seats", type=int, help="lua: seats (default: one per client)")
    parser.add_argument("--admit", type=int, help="lua: clients to admit (default: all)")
    parser.add_argument("--buyers", type=int, default=2000, help="rowlock: buyers (default 2000)")
    parser.add_argument("--seats", type=int, default=4000, help="rowlock: seats (default 4000)")
    parser.add_argument("--concurrency", type=int, default=64, help="rowlock: buyers at once")
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    with _servers(args) as (redis_url, database_url):
        if args.which in ("lua", "all"):
            result = lua_ceiling(
                redis_url, args.clients, args.batch, seats=args.lua_seats, admit=args.admit
            )
            print(json.dumps(result), flush=True)
        if args.which in ("rowlock", "all"):
            result = rowlock_baseline(
                database_url, buyers=args.buyers, seats=args.seats, concurrency=args.concurrency
            )
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
