"""The store probe every process runs: ``booking_store_up{store}`` says, between scrapes,
whether Redis and PostgreSQL answer this process (what ``/readyz`` answers when asked)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from engine.metrics import STORE_UP
from storage.errors import StorageError
from storage.pg_store import PgStore
from storage.redis_store import RedisStore

__all__ = ["probe_stores", "run_store_probe"]

logger = logging.getLogger(__name__)


async def _answers(ping: Callable[[], Awaitable[None]], timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        try:
            await ping()
        except StorageError:
            return False
        return True
    return False  # no answer in time counts as down


async def probe_stores(
    redis: RedisStore, pg: PgStore, *, timeout_s: float = 2.0
) -> dict[str, bool]:
    """Ping both stores once, set ``booking_store_up`` for each, and say which answered."""
    answered = {}
    for store, ping in (("redis", redis.ping), ("postgres", pg.ping)):
        answered[store] = up = await _answers(ping, timeout_s)
        STORE_UP.labels(store).set(1 if up else 0)
    return answered


async def run_store_probe(
    redis: RedisStore,
    pg: PgStore,
    *,
    interval_s: float = 5.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Probe the stores every ``interval_s`` until cancelled; started after the first probe."""
    last = await probe_stores(redis, pg, timeout_s=interval_s / 2)
    task_status.started()
    while True:
        await anyio.sleep(interval_s)
        now = await probe_stores(redis, pg, timeout_s=interval_s / 2)
        for store, up in now.items():
            if up != last[store]:
                logger.warning("%s %s", store, "answers again" if up else "does not answer")
        last = now
