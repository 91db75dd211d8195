"""mark_presence.lua and the grace period in admit_next.lua: clients who left are skipped."""

from __future__ import annotations

import pytest

from storage.records import JoinResult, Left, Prompted
from storage.redis_store import Presence, RedisStore
from tests.storage.helpers import T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

GRACE = 60_000


@pytest.mark.anyio
async def test_marks_only_queued_tickets_and_repeats_safely(
    redis_store: RedisStore, event_id: str
) -> None:
    """A mark keeps its first time when repeated; "back" clears it; unknown tickets answer ""."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, ""), ("c2", 1, "")], now=T0)
    marks = [Presence(event_id, 1, True), Presence(event_id, 9, True)]
    assert await redis_store.mark_presence(marks, T0 + 10) == ["queued", ""]
    before = await ev.state()
    assert await redis_store.mark_presence(marks, T0 + 20) == ["queued", ""]
    assert await ev.state() == before
    assert (await ev.ticket(1)).gone_ms == T0 + 10
    assert await redis_store.mark_presence([Presence(event_id, 1, False)], T0 + 30) == ["queued"]
    assert (await ev.ticket(1)).gone_ms is None
    await ev.check()


@pytest.mark.anyio
async def test_client_gone_past_the_grace_is_skipped_without_stalling_the_line(
    redis_store: RedisStore, event_id: str
) -> None:
    """A client gone for the grace period is "left" when its turn comes: no hold, no budget
    used, the clients behind it admitted in the same call; one back in time keeps its place."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([(f"c{i}", 1, "") for i in range(1, 6)], now=T0)
    await redis_store.mark_presence(
        [Presence(event_id, 2, True), Presence(event_id, 3, True), Presence(event_id, 4, True)],
        T0,
    )
    await redis_store.mark_presence([Presence(event_id, 3, False)], T0 + 1_000)  # back
    await redis_store.mark_presence([Presence(event_id, 4, True)], T0 + 30_000)  # first mark kept

    summary = await redis_store.admit(event_id, T0 + GRACE, 3, GRACE)
    assert (summary.admitted, summary.left, summary.serving, summary.reason) == (3, 2, 5, "empty")
    await ev.check()
    states = {seq: (await ev.ticket(seq)).status for seq in range(1, 6)}
    assert states == {1: "held", 2: "left", 3: "held", 4: "left", 5: "held"}
    [note] = await ev.notes()
    assert [type(o) for o in note.outcomes] == [Prompted, Left, Prompted, Left, Prompted]
    assert (await ev.stats())["left"] == 2

    # Left is final: coming back gets "left", and a later admission changes nothing.
    assert await ev.join("c2", now=T0 + GRACE + 1) == JoinResult(2, "left", 5, 2)
    assert (await ev.ticket(2)).status == "left"
    assert await redis_store.mark_presence([Presence(event_id, 2, False)], T0) == ["left"]


@pytest.mark.anyio
async def test_client_gone_less_than_the_grace_keeps_its_turn(
    redis_store: RedisStore, event_id: str
) -> None:
    """Within the grace period a disconnected client is still admitted in its turn."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, "")], now=T0)
    await redis_store.mark_presence([Presence(event_id, 1, True)], T0)
    summary = await redis_store.admit(event_id, T0 + GRACE - 1, 10, GRACE)
    assert (summary.admitted, summary.left) == (1, 0)
    assert (await ev.ticket(1)).status == "held"
