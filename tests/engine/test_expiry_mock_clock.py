"""Hold expiry on trio's mock clock: holds end on time and their seats go to the next in line."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import msgspec
import pytest

from engine.admission import AdmissionPolicy, run_admission, run_expiry_sweep
from plumbing.clock import LoopAnchoredClock
from storage.redis_store import HoldRef, JoinRequest, Presence, RedisStore
from tests.conftest import ticket_status

pytestmark = [pytest.mark.once, pytest.mark.mock_clock(autojump_threshold=0.02)]

HOLD_S = 10


def _config(seats: int, max_active: int, hold_s: float = HOLD_S) -> bytes:
    return msgspec.json.encode(
        {
            "opens_at_ms": 0,
            "hold_ms": int(hold_s * 1000),
            "max_active": max_active,
            "max_per_order": 4,
            "sections": [{"id": "a", "price_cents": 100, "map": "0" * seats + "|"}],
        }
    )


async def _wait_for(store: RedisStore, event_id: str, seq: int, state: str) -> float:
    """Poll (in virtual time) until ticket ``seq`` reaches ``state``; return the virtual time."""
    with anyio.fail_after(3 * HOLD_S):  # virtual seconds: a missing sweep fails fast
        while await ticket_status(store, event_id, seq) != state:  # noqa: ASYNC110 (state is in Redis)
            await anyio.sleep(0.1)
    return anyio.current_time()


@asynccontextmanager
async def _engine_running(
    store: RedisStore,
    event_id: str,
    *,
    seats: int,
    clients: int,
    grace_s: float = 60.0,
    gone: tuple[int, ...] = (),
    hold_s: float = HOLD_S,
    rate_per_min: int | None = None,
) -> AsyncIterator[tuple[LoopAnchoredClock, float]]:
    """An event with ``seats`` seats (checkout capacity as many), ``clients`` joined (the
    tickets in ``gone`` disconnected at once), and the admission and expiry runners going;
    yields the clock and the virtual start time."""
    clock = LoopAnchoredClock()
    policy = AdmissionPolicy(idle_wait_s=0.2, blocked_wait_s=0.2, abandon_grace_s=grace_s)
    await store.create_event(event_id, _config(seats, seats, hold_s), ["a"])
    if rate_per_min is not None:
        await store.set_admission(event_id, clock.now_ms(), None, rate_per_min)
    await store.join(
        [JoinRequest(event_id, f"c{i}", 1, "a") for i in range(clients)], clock.now_ms()
    )
    await store.mark_presence([Presence(event_id, seq, True) for seq in gone], clock.now_ms())
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_admission, store, event_id, clock, policy))
        tg.start_soon(partial(run_expiry_sweep, store, event_id, clock, policy))
        yield clock, anyio.current_time()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_unpaid_holds_end_on_time_and_seats_pass_in_order(
    redis_store: RedisStore, event_id: str
) -> None:
    """Two holds expire at hold_seconds (virtual), and the next two in line get their seats, in order."""
    async with _engine_running(redis_store, event_id, seats=2, clients=4) as (_, start):
        held_at = await _wait_for(redis_store, event_id, 2, "held")
        assert held_at - start < 1.0
        assert await ticket_status(redis_store, event_id, 3) == "queued"  # checkout is full

        await anyio.sleep(HOLD_S - 1 - (anyio.current_time() - start))
        assert await ticket_status(redis_store, event_id, 1) == "held"  # not a moment early

        expired_at = await _wait_for(redis_store, event_id, 1, "expired")
        assert HOLD_S <= expired_at - start < HOLD_S + 1  # released within hold_seconds + 1 s
        assert await ticket_status(redis_store, event_id, 2) == "expired"
        admitted_at = await _wait_for(redis_store, event_id, 4, "held")
        assert admitted_at - start < HOLD_S + 1  # freed seats went straight to the line

    tickets = await redis_store.tickets(event_id)
    assert [tickets[s].status for s in (1, 2, 3, 4)] == ["expired", "expired", "held", "held"]
    assert tickets[3].expires_ms <= tickets[4].expires_ms  # admitted in join order
    record = tickets[1]
    assert record.released_ms is not None and 0 <= record.released_ms - record.expires_ms < 1000
    status = await redis_store.status(event_id)
    assert status is not None
    assert status.seats.free + status.seats.held + status.seats.sold == 2


@pytest.mark.anyio
async def test_paying_hold_outlives_its_deadline_until_the_window_ends(
    redis_store: RedisStore, event_id: str
) -> None:
    """A hold whose payment started is kept past its deadline, then released when the window ends."""
    async with _engine_running(redis_store, event_id, seats=1, clients=1) as (clock, start):
        await _wait_for(redis_store, event_id, 1, "held")
        await anyio.sleep(HOLD_S - 5)
        [claim] = await redis_store.begin_payments(
            [HoldRef(event_id, 1, "k")], clock.now_ms(), 20_000
        )
        assert claim.result == "ok"
        await anyio.sleep(8)  # past the hold's own deadline
        assert await ticket_status(redis_store, event_id, 1) == "paying"
        released_at = await _wait_for(redis_store, event_id, 1, "expired")
        assert HOLD_S - 5 + 20 <= released_at - start < HOLD_S - 5 + 21


@pytest.mark.anyio
async def test_client_away_past_the_grace_is_skipped_when_its_turn_comes(
    redis_store: RedisStore, event_id: str
) -> None:
    """One seat, 2 s holds, grace 5 s; tickets 3 and 4 disconnect at the start. Ticket 3's
    turn comes at 4 s (inside the grace): it is admitted. Ticket 4's comes at 6 s: it is
    left, and ticket 5 is admitted at that moment, not a hold later."""
    hold = 2
    async with _engine_running(
        redis_store, event_id, seats=1, clients=5, grace_s=5, gone=(3, 4), hold_s=hold
    ) as (_, start):
        third_at = await _wait_for(redis_store, event_id, 3, "held")
        assert 2 * hold <= third_at - start < 2 * hold + 1
        left_at = await _wait_for(redis_store, event_id, 4, "left")
        fifth_at = await _wait_for(redis_store, event_id, 5, "held")
        assert 3 * hold <= left_at - start < 3 * hold + 1
        assert fifth_at - left_at < 0.5  # decided in the same step: the line did not stall

    tickets = await redis_store.tickets(event_id)
    assert [tickets[s].status for s in (1, 2, 3, 4, 5)] == [
        "expired",
        "expired",
        "expired",
        "left",
        "held",
    ]
    assert tickets[4].held_section is None  # no seat was ever held for the client who left


@pytest.mark.anyio
async def test_worker_paces_admissions_by_the_rate_cap(
    redis_store: RedisStore, event_id: str
) -> None:
    """At 60 admissions per minute the worker admits one client a second (virtual): never
    sooner, and no later than the next poll after a token is due."""
    async with _engine_running(redis_store, event_id, seats=10, clients=5, rate_per_min=60):
        await _wait_for(redis_store, event_id, 5, "held")
    tickets = await redis_store.tickets(event_id)
    admitted = sorted(t.expires_ms - HOLD_S * 1000 for t in tickets.values())
    gaps = [b - a for a, b in itertools.pairwise(admitted)]
    assert len(gaps) == 4
    assert all(1_000 <= g < 1_300 for g in gaps), gaps
