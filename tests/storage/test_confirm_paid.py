"""confirm_paid.lua: marking paid holds sold."""

from __future__ import annotations

import pytest

from storage.records import Confirmed, ExpireSummary
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, WINDOW_MS, Event, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS


async def paying(ev: Event, clients: int = 1, qty: int = 2) -> None:
    """Join, admit and begin payment (key k<seq>) for ``clients`` tickets."""
    await ev.join_many([(f"c{i}", qty, "") for i in range(1, clients + 1)])
    await ev.admit()
    for seq in range(1, clients + 1):
        assert (await ev.begin(seq, f"k{seq}", now=T0 + 1)).result == "ok"


@pytest.mark.anyio
async def test_confirm_sells_the_seats_and_announces(
    redis_store: RedisStore, event_id: str
) -> None:
    """A paying hold confirmed with its key: seats sold, counters moved, one notify entry."""
    ev = await new_event(redis_store, event_id)
    await paying(ev)
    assert await ev.confirm(1, "k1", "bk-1", now=T0 + 2) == "confirmed"

    t = await ev.ticket(1)
    assert (t.status, t.booking_id, t.idempotency_key, t.seats) == (
        "confirmed",
        "bk-1",
        "k1",
        [1, 2],
    )
    assert await ev.maps() == {"A": "ss00|0000|"}
    stats = await ev.stats()
    assert (stats["sold"], stats["held"], stats["free"], stats["confirmed"]) == (2, 0, 6, 1)
    assert (stats["sold:A"], stats["held:A"]) == (2, 0)
    note = (await ev.notes())[-1]
    assert (note.kind, note.outcomes, note.serving) == ("confirm", [Confirmed(1, "bk-1")], 1)
    # The hold left the expiry set: nothing is open any more.
    assert await ev.expire(T0 + 10 * WINDOW_MS) == ExpireSummary(released=0, next_ms=-1)
    assert (await ev.admit()).active == 0


@pytest.mark.anyio
async def test_confirm_twice_counts_once(redis_store: RedisStore, event_id: str) -> None:
    """Repeating a confirmation answers confirmed again without selling or announcing twice."""
    ev = await new_event(redis_store, event_id)
    await paying(ev)
    assert await ev.confirm(1, "k1", "bk-1") == "confirmed"
    before = await ev.state()
    assert await ev.confirm(1, "k1", "bk-1", now=T0 + 99) == "confirmed"
    assert await ev.state() == before
    assert before["stats"]["confirmed"] == 1
    assert before["stats"]["sold"] == 2
    assert sum(n.kind == "confirm" for n in before["notify"]) == 1


@pytest.mark.anyio
async def test_same_hold_twice_in_one_call_counts_once(
    redis_store: RedisStore, event_id: str
) -> None:
    """Within one batch the second copy of a confirmation is a no-op."""
    ev = await new_event(redis_store, event_id)
    await paying(ev, clients=2, qty=1)
    out = await ev.confirm_many([(1, "k1", "bk-1"), (2, "k2", "bk-2"), (1, "k1", "bk-1")])
    assert out == ["confirmed"] * 3
    stats = await ev.stats()
    assert (stats["confirmed"], stats["sold"], stats["held"]) == (2, 2, 0)
    note = (await ev.notes())[-1]
    assert note.outcomes == [Confirmed(1, "bk-1"), Confirmed(2, "bk-2")]


@pytest.mark.anyio
async def test_conflicts_name_the_current_state(redis_store: RedisStore, event_id: str) -> None:
    """A hold not being paid with that key answers conflict:<state> and is left alone."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("held", 1, ""), ("paying", 1, ""), ("gone", 1, ""), ("paid", 1, "")])
    await ev.admit()
    await ev.join("queued", 1)
    await ev.begin(2, "k2")
    await ev.begin(3, "k3", now=EXP - 2, window=1)
    await ev.expire(EXP - 1)
    await ev.begin(4, "k4")
    await ev.confirm(4, "k4", "bk-4")
    before = await ev.state()

    out = await ev.confirm_many(
        [
            (1, "k1", "bk-1"),
            (2, "other", "bk-2"),
            (3, "k3", "bk-3"),
            (4, "k4", "bk-other"),
            (5, "k5", "bk-5"),
            (77, "k77", "bk-77"),
        ],
        now=T0 + 1,
    )
    assert out == [
        "conflict:held",
        "conflict:paying",
        "conflict:expired",
        "conflict:confirmed",
        "conflict:queued",
        "conflict:missing",
    ]
    assert await ev.state() == before


@pytest.mark.anyio
async def test_confirm_after_abort_is_a_conflict(redis_store: RedisStore, event_id: str) -> None:
    """Once a payment was aborted its key no longer confirms the hold."""
    ev = await new_event(redis_store, event_id)
    await paying(ev)
    assert await ev.abort(1, "k1") == "held"
    assert await ev.confirm(1, "k1", "bk-1") == "conflict:held"
    assert (await ev.stats())["sold"] == 0


@pytest.mark.anyio
async def test_confirm_after_window_but_before_sweep_sells(
    redis_store: RedisStore, event_id: str
) -> None:
    """A paying hold past its window but not yet swept can be confirmed; the sweep skips it."""
    ev = await new_event(redis_store, event_id)
    await paying(ev)
    late = T0 + 1 + WINDOW_MS + 5
    assert await ev.confirm(1, "k1", "bk-1", now=late) == "confirmed"
    assert await ev.expire(late) == ExpireSummary(released=0, next_ms=-1)
    assert (await ev.ticket(1)).status == "confirmed"


@pytest.mark.anyio
async def test_last_confirmation_lets_admit_sell_out(
    redis_store: RedisStore, event_id: str
) -> None:
    """Confirming every seat leaves free and held at 0, so the next admission sells out."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00|"), ("B", 100, "0|")])
    await ev.join_many([("c1", 2, "A"), ("c2", 1, "B")])
    await ev.admit()
    await ev.begin_many([(1, "k1"), (2, "k2")])
    assert await ev.confirm_many([(1, "k1", "b1"), (2, "k2", "b2")]) == ["confirmed", "confirmed"]
    stats = await ev.stats()
    assert (stats["sold"], stats["free"], stats["held"]) == (3, 0, 0)
    assert (stats["sold:A"], stats["sold:B"]) == (2, 1)
    assert (await ev.meta())["state"] == "open"
    assert (await ev.admit()).state == "sold_out"
