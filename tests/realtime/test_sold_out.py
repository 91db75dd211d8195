"""Selling out: waiting clients hear that seats may come back, get them in order; once every
seat is sold they are told "sold out for now" and keep their places, and closing the sale
tells them all sold_out at once."""

from __future__ import annotations

from contextlib import AsyncExitStack, aclosing

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from realtime import protocol as p
from tests.api.helpers import (
    event_body,
    new_key,
    outcome_of,
    prompted,
    queued_in,
    told_sold_out_for_now,
)

pytestmark = pytest.mark.anyio

WAITING = 20


async def test_released_seats_go_in_order_then_the_line_waits_until_the_sale_closes(
    client: BookingClient,
) -> None:
    """With every seat held, waiting clients get seats_may_return; an expired hold's seats go
    to the next in line; when the last seats are paid, all 20 still waiting are told sold
    out for now (places kept, nobody told sold_out); closing the sale tells all 20 sold_out."""
    event = await client.create_event(
        event_body(
            sections=[{"id": "GA", "price_cents": 1_000, "capacity": 2}],
            hold_seconds=3,  # spans at least two position ticks (1 s) after everyone joined
            max_per_order=2,
        )
    )
    url = event.waitroom_url
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(WaitingRoom.connect(url))
        await queued_in(first, "first", 2)
        await prompted(first)  # every seat held: first lets the hold run out
        second = await stack.enter_async_context(WaitingRoom.connect(url))
        await queued_in(second, "second", 2)
        rest = []
        for i in range(WAITING):
            room = await stack.enter_async_context(WaitingRoom.connect(url))
            await queued_in(room, f"rest{i}", 1)
            rest.append(room)

        told = None
        with anyio.fail_after(8):  # told while the hold is open that seats may come back
            async with aclosing(second.until_prompt()) as updates:
                async for update in updates:
                    if update.seats_may_return:
                        told = update
                        break
        assert told is not None and second.prompt is None, "admitted before the hold ended"
        assert isinstance(await outcome_of(first), p.Expired)
        prompt = await prompted(second)  # the released seats, to the next in line
        assert len(prompt.seats) == 2
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("second"))
        assert paid.status == "confirmed"
        assert await outcome_of(second) == p.Confirmed(booking_id=paid.id)
        for room in rest:
            await told_sold_out_for_now(room)
        assert (await client.event(event.id)).state == "sold_out"
        await client.close(event.id)
        with anyio.fail_after(5):
            for room in rest:
                assert isinstance(await room.outcome(), p.SoldOut)
