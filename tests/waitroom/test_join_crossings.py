"""Joining the line: the rate limits' round trip and the line's, one crossing into the
drivers' loop (on trio each crossing of the bridge costs CPU of its own)."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import REGISTRY

from plumbing.clock import WallClock
from storage.redis_store import BucketLimit, RedisStore
from tests.storage.helpers import new_event
from waitroom.line import RATE_LIMITED, JoinLimits, WaitingLine

pytestmark = pytest.mark.anyio


def _crossings() -> float:
    return REGISTRY.get_sample_value("booking_bridge_crossings_total") or 0.0


async def test_a_join_batch_crosses_into_the_drivers_loop_once(
    redis_store: RedisStore, event_id: str
) -> None:
    await new_event(redis_store, event_id)
    limits = JoinLimits(per_client=BucketLimit(1.0, 1), per_ip=BucketLimit(100.0, 100))
    line = WaitingLine(redis_store, WallClock(), limits)
    async with anyio.create_task_group() as tg:
        await tg.start(line.joins.run)
        before = _crossings()
        first = await line.join(event_id, "c1", 1, "A", ip="10.0.0.1")
        once = _crossings() - before
        again = await line.join(event_id, "c1", 1, "A", ip="10.0.0.1")  # over its bucket
        tg.cancel_scope.cancel()
    assert (first.seq, first.status) == (1, "queued")
    assert once == 1  # two round trips (tokens, then the join), one crossing
    assert (again.seq, again.status) == (0, RATE_LIMITED)  # the limits still apply
