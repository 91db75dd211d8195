"""The engine worker: finds live events and runs admission and the expiry sweep for each.

An event needs loops only while somebody waits (in line or in the pre-queue) or
a hold is open, and at its opening time (the first admission call opens it);
a closed event only until its holds are gone (later joins are
answered by the join script itself). Each discovery round reads every event's
activity in one round trip, starts loops for live events that have none and
ends the loops of events that need them no more. Between rounds the worker
blocks on the lines of the events taking joins that it does not serve, so the first join
into a quiet event starts its loops at once rather than at the next round.

"""

from __future__ import annotations

import logging
from functools import partial

import anyio

from engine.admission import AdmissionPolicy, run_admission, run_expiry_sweep
from engine.metrics import ACTIVE_HOLDS, QUEUE_LENGTH
from plumbing.clock import Clock
from storage.errors import StorageUnavailable
from storage.records import EventActivity, EventState
from storage.redis_store import RedisStore

__all__ = ["is_live", "run_worker"]

logger = logging.getLogger(__name__)


def is_live(activity: EventActivity, now_ms: int) -> bool:
    """Whether an event needs admission or sweeping now.

    A scheduled event past its opening time needs one admission call, which opens
    it (state "open") whether or not anybody joined.
    """
    if activity.holds > 0:
        return True
    if activity.state == EventState.SCHEDULED and activity.opens_at_ms <= now_ms:
        return True
    return activity.waiting > 0 and activity.state != EventState.CLOSED


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
        if running.get(event_id) is scope:  # not a newer round's loops for the same event
            del running[event_id]

    async with anyio.create_task_group() as tg:
        started = False
        while True:
            try:
                activity = await redis.activity(await redis.event_ids())
            except StorageUnavailable:
                logger.warning("worker: Redis unreachable while listing events")
                activity = {}
            quiet: dict[str, int] = {}  # events taking joins, nobody waiting: seq to wait after
            for event_id, act in activity.items():
                # The one writer of these gauges: one task, so a later value always comes
                # from a later read. The event's loops each see the line at other moments
                # (and a payment changes the holds without either), so set by them a gauge
                # could be left at an older reading; here it is never more than a round old.
                QUEUE_LENGTH.labels(event_id).set(act.waiting)
                ACTIVE_HOLDS.labels(event_id).set(act.holds)
                live = is_live(act, clock.now_ms())
                if live and event_id not in running:
                    logger.info("worker: serving event %s (%s)", event_id, act.state)
                    running[event_id] = anyio.CancelScope()
                    tg.start_soon(serve, event_id, running[event_id])
                elif not live and event_id in running:
                    logger.info("worker: event %s needs no loops now (%s)", event_id, act.state)
                    running.pop(event_id).cancel()
                if not live and act.state not in (EventState.CLOSED, EventState.SOLD_OUT):
                    quiet[event_id] = act.seq
            if not started:
                task_status.started()
                started = True
            await _until_next_round(redis, quiet, discover_interval_s)


async def _until_next_round(redis: RedisStore, quiet: dict[str, int], interval_s: float) -> None:
    """Wait ``interval_s``, or less when a join arrives in one of the ``quiet`` events."""
    if not quiet:
        await anyio.sleep(interval_s)
        return
    try:
        await redis.wait_for_joins(quiet, int(interval_s * 1000))
    except StorageUnavailable:
        await anyio.sleep(interval_s)
