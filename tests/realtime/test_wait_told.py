"""What the waiting room tells of the wait, on the real system: a number only when there is one."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from realtime import protocol as p
from tests.api.helpers import event_body, new_key, prompted, queued_in

pytestmark = pytest.mark.anyio

HOLD_S = 60


async def _position_with(room: WaitingRoom, basis: str, wait_s: float) -> p.Position:
    """The first ``position`` whose wait rests on ``basis`` (before any prompt)."""
    with anyio.fail_after(wait_s):
        async with aclosing(room.until_prompt()) as updates:
            async for update in updates:
                if update.eta_basis == basis:
                    return update
    pytest.fail(f"no position with basis {basis!r} before {room.prompt or await room.outcome()!r}")


async def test_a_stalled_checkout_is_told_as_such_never_as_a_day(client: BookingClient) -> None:
    """One hold at a time: A is prompted and keeps the hold; the line then stands idle for
    6 s. B joins at position 1: its wait is a number from the caps, at most one hold time
    (never the 86,400 s an idle line used to measure). While A checks out nobody leaves the
    line: B is told ``stalled`` (no number, at most one hold time). A pays; B is prompted."""
    event = await client.create_event(event_body(max_active_holds=1, hold_seconds=HOLD_S))
    url = event.waitroom_url
    async with WaitingRoom.connect(url) as a, WaitingRoom.connect(url) as b:
        await queued_in(a, "wait-a")
        prompt = await prompted(a)
        await anyio.sleep(6)  # the line is empty: the hub's ticks measure nothing
        queued = await queued_in(b, "wait-b")
        assert queued.position == 1
        assert queued.eta_basis in ("caps", "measured"), queued
        assert queued.eta_s is not None and 0 <= queued.eta_s <= HOLD_S
        stalled = await _position_with(b, "stalled", wait_s=30)
        assert stalled.eta_s is None
        assert stalled.position == 1
        assert 0 < stalled.eta_high_s <= HOLD_S
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
        assert paid.status == "confirmed"
        await prompted(b)


async def test_a_paused_sale_is_told_as_paused(client: BookingClient) -> None:
    """Joining a paused sale: no number, basis ``paused``; after resume the client is prompted."""
    event = await client.create_event(event_body())
    assert (await client.pause(event.id)).state == "paused"
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await anyio.sleep(2)  # a few ticks of a paused line: nothing is measured
        queued = await queued_in(room, "paused-1")
        assert (queued.position, queued.eta_s, queued.eta_basis) == (1, None, "paused")
        assert (await client.resume(event.id)).state == "open"
        await prompted(room)
