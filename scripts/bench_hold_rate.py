"""The hold script's rate: admissions per second ``admit_next.lua`` decides for one event
(one slot, so one Redis core), and for several events at once (on a cluster, spread over
the primaries). Through the store on asyncio (no bridge), embedded servers started here;
on one Redis it also reports the server's own CPU time (joins included), the ceiling of
one slot once the client is not the bottleneck.

    PYTHONPATH=. .venv/bin/python scripts/bench_hold_rate.py [--cluster] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import redis

from storage.bridge import Bridge
from storage.embedded import embedded_cluster, embedded_redis, remove_data_dir
from storage.redis_store import JoinRequest, RedisStore, open_redis_store

T0 = 1_700_000_000_000


def _config(seats: int) -> bytes:
    rows = "|".join("0" * 50 for _ in range(seats // 50)) + "|"
    return json.dumps(
        {
            "opens_at_ms": T0,
            "hold_ms": 600_000,
            "max_active": seats,
            "max_per_order": 4,
            "sections": [{"id": "A", "price_cents": 1000, "map": rows}],
        }
    ).encode()


def _redis_cpu_s(url: str) -> float:
    """CPU seconds the Redis at ``url`` (one server) used so far."""
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _one_event(store: RedisStore, clients: int, batch: int) -> tuple[int, float]:
    event_id = "rate" + uuid.uuid4().hex[:8]
    await store.create_event(event_id, _config(clients), ["A"])
    for start in range(0, clients, 1000):
        joins = [JoinRequest(event_id, f"c{i}", 1, "") for i in range(start, start + 1000)]
        await store.join(joins, T0)
    admitted, began = 0, time.perf_counter()
    while admitted < clients:
        summary = await store.admit(event_id, T0 + 1, batch)
        if summary.admitted == 0:
            break
        admitted += summary.admitted
    return admitted, time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", action="store_true", help="on an embedded 3-primary cluster")
    parser.add_argument("--events", type=int, default=1, help="events admitted at once")
    parser.add_argument("--clients", type=int, default=20_000, help="clients per event")
    parser.add_argument("--batch", type=int, default=100, help="admissions per script call")
    args = parser.parse_args()
    with ExitStack() as stack:
        data_dir = Path(tempfile.mkdtemp(prefix="hold-rate-"))
        stack.callback(remove_data_dir, data_dir)
        if args.cluster:
            url = stack.enter_context(embedded_cluster(data_dir)).url
        else:
            url = stack.enter_context(embedded_redis(data_dir))
        async with open_redis_store(url, Bridge(None)) as store:
            cpu = 0.0 if args.cluster else _redis_cpu_s(url)
            began = time.perf_counter()
            runs = await asyncio.gather(
                *(_one_event(store, args.clients, args.batch) for _ in range(args.events))
            )
            wall = time.perf_counter() - began
            cpu = 0.0 if args.cluster else _redis_cpu_s(url) - cpu
    for admitted, seconds in runs:
        print(f"one event: {admitted} admitted in {seconds:.2f} s: {admitted / seconds:,.0f} /s")
    total = sum(a for a, _ in runs)
    print(f"{'cluster' if args.cluster else 'one Redis'}, {args.events} event(s): "
          f"{total} admitted, {wall:.2f} s with the joins")  # fmt: skip
    if cpu:
        print(f"Redis CPU (joins and admissions): {cpu:.2f} s: "
              f"{total / cpu:,.0f} admissions per Redis CPU second")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
