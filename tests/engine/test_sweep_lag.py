"""The expiry sweep reports how late it ran: a blocked process shows in the metric."""

from __future__ import annotations

import time
from functools import partial

import anyio
import msgspec
import pytest

from engine.admission import AdmissionPolicy, run_admission, run_expiry_sweep
from engine.metrics import SWEEP_LAG
from plumbing.clock import WallClock
from storage.redis_store import JoinRequest, RedisStore
from tests.conftest import ticket_status

pytestmark = pytest.mark.anyio


def _observations(above_s: float | None = None) -> float:
    """Sweeps observed so far (those that ran more than ``above_s`` late, if given)."""
    total = bucket = 0.0
    for metric in SWEEP_LAG.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                total = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == above_s:
                bucket = sample.value
    return total if above_s is None else total - bucket


async def test_a_sweep_kept_waiting_is_measured(redis_store: RedisStore, event_id: str) -> None:
    clock = WallClock()
    policy = AdmissionPolicy(idle_wait_s=0.2, blocked_wait_s=0.2)
    config = {
        "opens_at_ms": 0,
        "hold_ms": 60_000,
        "max_active": 1,
        "max_per_order": 4,
        "sections": [{"id": "a", "price_cents": 100, "map": "0|"}],
    }
    await redis_store.create_event(event_id, msgspec.json.encode(config), ["a"])
    await redis_store.join([JoinRequest(event_id, "c0", 1, "a")], clock.now_ms())
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_admission, redis_store, event_id, clock, policy))
        with anyio.fail_after(10):
            while await ticket_status(redis_store, event_id, 1) != "held":  # noqa: ASYNC110 (in Redis)
                await anyio.sleep(0.05)
        swept, late = _observations(), _observations(above_s=0.5)
        tg.start_soon(partial(run_expiry_sweep, redis_store, event_id, clock, policy))
        await anyio.sleep(0.6)  # a hold is open: a sweep every 0.25 s
        assert _observations() >= swept + 2
        time.sleep(1.0)  # noqa: ASYNC251 (the loop is blocked on purpose: the sweep falls due)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert _observations(above_s=0.5) >= late + 1
