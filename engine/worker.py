"""The engine worker: finds events and runs admission and the expiry sweep for each."""

from __future__ import annotations

import logging
from functools import partial

import anyio

from engine.admission import AdmissionPolicy, run_admission, run_expiry_sweep
from engine.clock import Clock
from storage.errors import StorageUnavailable
from storage.redis_store import RedisStore

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


async def run_worker(
    redis: RedisStore,
    clock: Clock,
    policy: AdmissionPolicy,
    *,
    discover_interval_s: float = 1.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every event this deployment knows, picking up new ones as they appear."""
    running: set[str] = set()
    async with anyio.create_task_group() as tg:
        started = False
        while True:
            try:
                event_ids = await redis.event_ids()
            except StorageUnavailable:
                logger.warning("worker: Redis unreachable while listing events")
                event_ids = []
            for event_id in event_ids:
                if event_id not in running:
                    running.add(event_id)
                    logger.info("worker: serving event %s", event_id)
                    tg.start_soon(partial(run_admission, redis, event_id, clock, policy))
                    tg.start_soon(partial(run_expiry_sweep, redis, event_id, clock, policy))
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(discover_interval_s)
