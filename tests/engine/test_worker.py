"""The worker serves an event while somebody waits or a hold is open, and wakes on a join."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

import anyio
import msgspec
import pytest
from prometheus_client import REGISTRY

from engine.admission import AdmissionPolicy
from engine.worker import is_live, run_worker
from plumbing.clock import WallClock
from storage.records import EventActivity, EventState
from storage.redis_store import HoldRef, JoinRequest, PaidHold, RedisStore
from tests.conftest import ticket_status

pytestmark = pytest.mark.anyio


NOW = 1_000_000


@pytest.mark.parametrize(
    ("state", "seq", "serving", "holds", "live"),
    [
        ("scheduled", 0, 0, 0, False),  # not open yet, nobody in the pre-queue
        ("open", 5, 5, 0, False),  # everyone decided, no hold open
        ("open", 5, 4, 0, True),  # somebody waits
        ("open", 5, 5, 1, True),  # a hold to sweep
        ("paused", 5, 3, 0, True),  # waiting for resume
        ("sold_out", 5, 3, 0, True),  # the rest must hear "sold out"
        ("sold_out", 5, 5, 0, False),
        ("closed", 5, 3, 0, False),  # nobody is admitted any more
        ("closed", 5, 3, 2, True),  # but its holds still end
    ],
)
@pytest.mark.once
def test_is_live(state: str, seq: int, serving: int, holds: int, live: bool) -> None:
    """Loops run while somebody waits for a decision or a hold is open."""
    activity = EventActivity(EventState(state), seq, serving, holds, NOW + 1)
    assert is_live(activity, NOW) is live


@pytest.mark.once
def test_a_scheduled_event_is_live_once_it_may_open() -> None:
    """At its opening time an event gets an admission call (which opens it), joined or not."""
    assert is_live(EventActivity("scheduled", 0, 0, 0, opens_at_ms=NOW), NOW)
    assert not is_live(EventActivity("scheduled", 0, 0, 0, opens_at_ms=NOW + 1), NOW)


def _config(opens_at_ms: int) -> bytes:
    """An event of one 10-seat row opening at ``opens_at_ms``."""
    return msgspec.json.encode(
        {
            "opens_at_ms": opens_at_ms,
            "hold_ms": 60_000,
            "max_active": 10,
            "max_per_order": 4,
            "sections": [{"id": "a", "price_cents": 100, "map": "0" * 10 + "|"}],
        }
    )


async def _event_state(store: RedisStore, event_id: str) -> str:
    status = await store.status(event_id)
    assert status is not None
    return status.state


@pytest.fixture
async def quiet_event(redis_store: RedisStore, event_id: str) -> AsyncIterator[str]:
    """An open event of 10 seats nobody has joined yet (opened by an admission call)."""
    await redis_store.create_event(event_id, _config(opens_at_ms=0), ["a"])
    opened = await redis_store.admit(event_id, WallClock().now_ms(), 10)
    assert (opened.state, opened.reason) == ("open", "empty")
    yield event_id


async def test_first_join_into_a_quiet_event_is_admitted_at_once(
    redis_store: RedisStore, quiet_event: str
) -> None:
    """A join wakes the worker: admission does not wait for the next discovery round."""
    clock = WallClock()
    async with anyio.create_task_group() as tg:
        await tg.start(
            partial(run_worker, redis_store, clock, AdmissionPolicy(), discover_interval_s=60)
        )
        started = time.monotonic()  # the worker found nobody waiting and blocks on the line
        [joined] = await redis_store.join([JoinRequest(quiet_event, "c1", 1, "")], clock.now_ms())
        with anyio.fail_after(10):
            while await ticket_status(redis_store, quiet_event, joined.seq) != "held":  # noqa: ASYNC110
                await anyio.sleep(0.02)
        waited = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert waited < 5, f"admitted {waited:.1f} s after joining: the worker slept through the join"


async def test_worker_opens_a_scheduled_event_nobody_joined(
    redis_store: RedisStore, event_id: str
) -> None:
    """At its opening time the event's state turns "open" though no join called a script."""
    await redis_store.create_event(event_id, _config(WallClock().now_ms() + 300), ["a"])
    async with anyio.create_task_group() as tg:
        policy = AdmissionPolicy()
        await tg.start(
            partial(run_worker, redis_store, WallClock(), policy, discover_interval_s=0.1)
        )
        with anyio.fail_after(10):
            while await _event_state(redis_store, event_id) != "open":  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


def _gauge(name: str, event_id: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"event": event_id})


async def test_gauges_show_no_hold_once_the_last_hold_is_paid(
    redis_store: RedisStore, quiet_event: str
) -> None:
    """The discovery round keeps the gauges of an event true: 1 once a hold is made, 0 once
    it is paid and the event's loops stop."""
    clock = WallClock()
    # Loops that look again only after a minute: the discovery round must set the gauges.
    policy = AdmissionPolicy(idle_wait_s=60, sweep_interval_s=60)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_worker, redis_store, clock, policy, discover_interval_s=0.1))
        [joined] = await redis_store.join([JoinRequest(quiet_event, "c1", 1, "")], clock.now_ms())
        with anyio.fail_after(10):
            while _gauge("booking_active_holds", quiet_event) != 1:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        hold = HoldRef(quiet_event, joined.seq, "key-1")
        [claim] = await redis_store.begin_payments([hold], clock.now_ms(), 30_000)
        assert claim.result == "ok"
        paid = PaidHold(quiet_event, joined.seq, "key-1", "bk-1")
        assert await redis_store.confirm_paid([paid], clock.now_ms()) == ["confirmed"]
        with anyio.fail_after(10):
            while _gauge("booking_active_holds", quiet_event) != 0:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        assert _gauge("booking_queue_length", quiet_event) == 0
        tg.cancel_scope.cancel()
