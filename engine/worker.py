"""The engine worker: finds live events and runs admission and the expiry sweep for each.

An event needs no loops once it is closed, or sold out with nobody left in line
and no hold open (later joins are answered "sold out" by the join script
itself). Each discovery round reads every event's activity in one round trip and
starts loops for live events that have none; loops end when their event is done.
"""

from __future__ import annotations

import logging
from functools import partial

import anyio

from engine.admission import AdmissionPolicy, run_admission, run_expiry_sweep
from engine.clock import Clock
from storage.errors import StorageUnavailable
from storage.redis_store import RedisStore

__all__ = ["is_live", "run_worker"]

logger = logging.getLogger(__name__)


def is_live(state: str, waiting: int, holds: int) -> bool:
    """Whether an event in ``state`` with these counts needs admission or sweeping."""
    if state == "closed":
        return holds > 0
    if state == "sold_out":
        return waiting > 0 or holds > 0
    return True


async def _serve_event(
    redis: RedisStore, event_id: str, clock: Clock, policy: AdmissionPolicy
) -> None:
    """Admission and sweep for one event, until a discovery round finds it done."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_admission, redis, event_id, clock, policy))
        tg.start_soon(partial(run_expiry_sweep, redis, event_id, clock, policy))


async def run_worker(
    redis: RedisStore,
    clock: Clock,
    policy: AdmissionPolicy,
    *,
    discover_interval_s: float = 1.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every live event of this deployment, picking up new ones as they appear."""
    running: dict[str, anyio.CancelScope] = {}

    async def serve(event_id: str, scope: anyio.CancelScope) -> None:
        with scope:
            await _serve_event(redis, event_id, clock, policy)
        running.pop(event_id, None)

    async with anyio.create_task_group() as tg:
        started = False
        while True:
            try:
                activity = await redis.activity(await redis.event_ids())
            except StorageUnavailable:
                logger.warning("worker: Redis unreachable while listing events")
                activity = {}
            for event_id, (state, waiting, holds) in activity.items():
                live = is_live(state, waiting, holds)
                if live and event_id not in running:
                    logger.info("worker: serving event %s (%s)", event_id, state)
                    running[event_id] = anyio.CancelScope()
                    tg.start_soon(serve, event_id, running[event_id])
                elif not live and event_id in running:
                    logger.info("worker: event %s is done (%s)", event_id, state)
                    running.pop(event_id).cancel()
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(discover_interval_s)
