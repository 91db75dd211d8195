"""Server CPU of the join challenge's replay guard per join: each solution marked used
with its own ``SET NX`` round trip (as joins did), against the joins checked at the same
time marked in one ``use_challenges.lua`` call (``JoinChallenges.used``, a batcher).
Through the store on asyncio (no bridge), ``--concurrency`` joins at once, an embedded
Redis started here; this process's CPU and Redis's, per join.

    PYTHONPATH=. .venv/bin/python scripts/bench_replay_guard.py [--joins N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import redis

from plumbing.batcher import Batcher
from storage.bridge import Bridge
from storage.embedded import embedded_redis, remove_data_dir
from storage.keys import event_keys
from storage.redis_store import UsedChallenge, open_redis_store

EXPIRES_MS = int(time.time() * 1000) + 600_000


def _redis_cpu_s(url: str) -> float:
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measure(
    url: str, joins: int, concurrency: int, mark: Callable[[str], Awaitable[bool]]
) -> tuple[float, float]:
    """CPU µs per join of this process and of Redis, ``concurrency`` joins at a time."""
    nonces = [uuid.uuid4().hex for _ in range(joins)]
    redis_before, started = _redis_cpu_s(url), time.process_time()
    for start in range(0, joins, concurrency):
        marked = await asyncio.gather(*(mark(n) for n in nonces[start : start + concurrency]))
        assert all(marked)
    cpu = time.process_time() - started
    return cpu / joins * 1e6, (_redis_cpu_s(url) - redis_before) / joins * 1e6


async def _run(url: str, joins: int, concurrency: int) -> list[tuple[str, float, float]]:
    event_id = "guard" + uuid.uuid4().hex[:8]
    async with open_redis_store(url, Bridge(None)) as store:

        async def set_nx(nonce: str) -> bool:  # one round trip per join
            async def put() -> Any:
                key = event_keys(event_id).used_challenge(nonce)
                return await store._client.set(key, 1, nx=True, pxat=EXPIRES_MS)

            return bool(await store._call("use_challenge", put))

        batcher: Batcher[UsedChallenge, bool] = Batcher(store.use_challenges)

        async def batched(nonce: str) -> bool:
            return await batcher.submit(UsedChallenge(event_id, nonce, EXPIRES_MS))

        rows = []
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            for _ in range(2):  # alternated; the first pair warms up
                rows = [
                    ("SET NX per join", *await _measure(url, joins, concurrency, set_nx)),
                    ("batched", *await _measure(url, joins, concurrency, batched)),
                ]
            stats = batcher.statistics()
            tg.cancel_scope.cancel()
        print(f"batches: {stats.batches}, largest {stats.largest_batch}")
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100, help="joins checked at once")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="replay-guard-"))
    try:
        with embedded_redis(data_dir) as url:
            rows = asyncio.run(_run(url, args.joins, args.concurrency))
    finally:
        remove_data_dir(data_dir)
    for name, us, redis_us in rows:
        print(f"{name:20s} {us:7.1f} us CPU per join here, {redis_us:6.1f} us in Redis")


if __name__ == "__main__":
    main()
