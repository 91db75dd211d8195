"""What the waiting room tells of the wait, on the real system: a number only when there is one."""

from __future__ import annotations

import anyio
import httpx
import pytest

from realtime import protocol as p
from tests.api.helpers import create_event, expect, join, new_key, pay, recv, ws_connect
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio

HOLD_S = 60


async def _position_with(ws: object, basis: str, wait_s: float) -> p.Position:
    """The first ``position`` whose wait rests on ``basis``."""
    with anyio.fail_after(wait_s):
        while True:
            message = await recv(ws, wait_s)  # type: ignore[arg-type]
            if isinstance(message, p.Position) and message.eta_basis == basis:
                return message


async def test_a_stalled_checkout_is_told_as_such_never_as_a_day(http: httpx.AsyncClient) -> None:
    """One hold at a time: A is prompted and keeps the hold; the line then stands idle for
    6 s. B joins at position 1: its wait is a number from the caps, at most one hold time
    (never the 86,400 s an idle line used to measure). While A checks out nobody leaves the
    line: B is told ``stalled`` (no number, at most one hold time). A pays; B is prompted."""
    event = await create_event(http, max_active_holds=1, hold_seconds=HOLD_S)
    url = event["waitroom_url"]
    async with ws_connect(url) as a, ws_connect(url) as b:
        await join(a, "wait-a")
        prompt = await expect(a, p.Prompt)
        await anyio.sleep(6)  # the line is empty: the hub's ticks measure nothing
        queued = await join(b, "wait-b")
        assert queued.position == 1
        assert queued.eta_basis in ("caps", "measured"), queued
        assert queued.eta_s is not None and 0 <= queued.eta_s <= HOLD_S
        stalled = await _position_with(b, "stalled", wait_s=30)
        assert stalled.eta_s is None
        assert stalled.position == 1
        assert 0 < stalled.eta_high_s <= HOLD_S
        resp = await pay(http, prompt.hold_id, prompt.hold_token, new_key())
        assert resp.status_code == 200, resp.text
        await expect(b, p.Prompt)


async def test_a_paused_sale_is_told_as_paused(http: httpx.AsyncClient) -> None:
    """Joining a paused sale: no number, basis ``paused``; after resume the client is prompted."""
    event = await create_event(http)
    assert (await http.post(f"/v1/events/{event['id']}/pause", headers=admin_headers())).is_success
    async with ws_connect(event["waitroom_url"]) as ws:
        await anyio.sleep(2)  # a few ticks of a paused line: nothing is measured
        queued = await join(ws, "paused-1")
        assert (queued.position, queued.eta_s, queued.eta_basis) == (1, None, "paused")
        resume = await http.post(f"/v1/events/{event['id']}/resume", headers=admin_headers())
        assert resume.is_success
        await expect(ws, p.Prompt)
