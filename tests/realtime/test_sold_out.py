"""Selling out: waiting clients hear that seats may come back, then either get them in order
or are all told sold_out at once."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import httpx
import pytest

from realtime import protocol as p
from tests.api.helpers import create_event, expect, join, new_key, pay, recv, ws_connect

pytestmark = pytest.mark.anyio

WAITING = 20


async def test_released_seats_go_in_order_then_everyone_waiting_is_sold_out(
    http: httpx.AsyncClient,
) -> None:
    """With every seat held, waiting clients get seats_may_return; an expired hold's seats go
    to the next in line; when the last seats are paid, all 20 still waiting get sold_out."""
    event = await create_event(
        http,
        sections=[{"id": "GA", "price_cents": 1_000, "capacity": 2}],
        hold_seconds=3,  # spans at least two position ticks (1 s) after everyone joined
        max_per_order=2,
    )
    url = event["waitroom_url"]
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(ws_connect(url))
        await join(first, "first", 2)
        await expect(first, p.Prompt)  # every seat held: first lets the hold run out
        second = await stack.enter_async_context(ws_connect(url))
        await join(second, "second", 2)
        rest = []
        for i in range(WAITING):
            ws = await stack.enter_async_context(ws_connect(url))
            await join(ws, f"rest{i}", 1)
            rest.append(ws)

        with anyio.fail_after(8):
            while True:  # told while the hold is open that seats may come back
                message = await recv(second)
                if isinstance(message, p.Position) and message.seats_may_return:
                    break
                assert not isinstance(message, p.Prompt), "admitted before the hold ended"
        await expect(first, p.Expired)
        prompt = await expect(second, p.Prompt)  # the released seats, to the next in line
        assert len(prompt.seats) == 2
        paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key("second"))
        assert paid.status_code == 200, paid.text
        await expect(second, p.Confirmed)
        with anyio.fail_after(5):
            for ws in rest:
                await expect(ws, p.SoldOut)
