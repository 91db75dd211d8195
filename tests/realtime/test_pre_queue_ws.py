"""The pre-queue over the WebSocket: told so on joining, then a drawn place once the sale opens."""

from __future__ import annotations

from contextlib import AsyncExitStack, aclosing
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from realtime import protocol as p
from tests.api.helpers import event_body, queued_in

pytestmark = pytest.mark.anyio


async def test_pre_queue_clients_learn_their_drawn_places_when_the_sale_opens(
    client: BookingClient,
) -> None:
    """Three clients joining before opens_at get queued with pre_queue and no position; at the
    opening one is prompted (one hold at a time) and the others get positions 1 and 2."""
    opens = datetime.now(UTC) + timedelta(seconds=3)
    event = await client.create_event(
        event_body(opens_at=opens.isoformat().replace("+00:00", "Z"), max_active_holds=1)
    )
    async with AsyncExitStack() as stack:
        rooms = []
        for i in range(3):
            room = await stack.enter_async_context(WaitingRoom.connect(event.waitroom_url))
            queued = await queued_in(room, f"early{i}")
            assert (queued.pre_queue, queued.position) == (True, 0)
            rooms.append(room)

        async def first_news(room: WaitingRoom) -> p.Prompt | p.Position:
            """The first position update, or the prompt if it comes first."""
            async with aclosing(room.until_prompt()) as updates:
                async for update in updates:
                    return update
            assert room.prompt is not None, await room.outcome()
            return room.prompt

        news: list[p.Prompt | p.Position] = []
        with anyio.fail_after(10):
            for room in rooms:
                news.append(await first_news(room))
    prompts = [m for m in news if isinstance(m, p.Prompt)]
    positions = sorted(m.position for m in news if isinstance(m, p.Position))
    assert len(prompts) == 1
    assert positions == [1, 2]
