"""The pre-queue over the WebSocket: told so on joining, then a drawn place once the sale opens."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest

from realtime import protocol as p
from tests.api.helpers import create_event, join, recv, ws_connect

pytestmark = pytest.mark.anyio


async def test_pre_queue_clients_learn_their_drawn_places_when_the_sale_opens(
    http: httpx.AsyncClient,
) -> None:
    """Three clients joining before opens_at get queued with pre_queue and no position; at the
    opening one is prompted (one hold at a time) and the others get positions 1 and 2."""
    opens = datetime.now(UTC) + timedelta(seconds=3)
    event = await create_event(
        http, opens_at=opens.isoformat().replace("+00:00", "Z"), max_active_holds=1
    )
    async with AsyncExitStack() as stack:
        sockets = []
        for i in range(3):
            ws = await stack.enter_async_context(ws_connect(event["waitroom_url"]))
            queued = await join(ws, f"early{i}")
            assert (queued.pre_queue, queued.position) == (True, 0)
            sockets.append(ws)

        async def first_news(ws: object) -> p.ServerMessage:
            while True:
                message = await recv(ws, 10)  # type: ignore[arg-type]
                if isinstance(message, p.Prompt | p.Position):
                    return message

        news: list[p.ServerMessage] = []
        with anyio.fail_after(10):
            for ws in sockets:
                news.append(await first_news(ws))
    prompts = [m for m in news if isinstance(m, p.Prompt)]
    positions = sorted(m.position for m in news if isinstance(m, p.Position))
    assert len(prompts) == 1
    assert positions == [1, 2]
