"""DELETE /v1/holds/{id}: the holder gives its seats back before the deadline."""

from __future__ import annotations

import httpx
import pytest

from realtime import protocol as p
from tests.api.helpers import (
    assert_error,
    create_event,
    expect,
    get_event,
    join,
    new_key,
    pay,
    sections_by_id,
    ws_connect,
)

pytestmark = pytest.mark.anyio


async def test_the_holder_releases_and_the_next_in_line_gets_the_seats(
    http: httpx.AsyncClient,
) -> None:
    """One hold at a time: A is prompted, B waits. Without A's token the release is refused
    (401, 403 with B's own token later) and changes nothing; with it, A is told ``expired``,
    B is prompted for the same seats, and releasing again is 409 hold_expired."""
    event = await create_event(http, max_active_holds=1)
    async with ws_connect(event["waitroom_url"]) as a, ws_connect(event["waitroom_url"]) as b:
        await join(a, "rel-a", 2, "A")
        held = await expect(a, p.Prompt)
        await join(b, "rel-b", 2, "A")
        url = f"/v1/holds/{held.hold_id}"
        assert_error(await http.delete(url), 401, "unauthorized")
        assert_error(await http.delete(url, headers={"Authorization": "Bearer forged"}), 401)
        before = sections_by_id(await get_event(http, event["id"]))["A"]
        assert (before["held"], before["free"]) == (2, 6)

        resp = await http.delete(url, headers={"Authorization": f"Bearer {held.hold_token}"})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"hold_id": held.hold_id, "status": "released"}
        await expect(a, p.Expired)
        offered = await expect(b, p.Prompt)
        assert [(s.row, s.number) for s in offered.seats] == [(s.row, s.number) for s in held.seats]
        other = await http.delete(
            f"/v1/holds/{offered.hold_id}", headers={"Authorization": f"Bearer {held.hold_token}"}
        )
        assert_error(other, 403, "forbidden")
        again = await http.delete(url, headers={"Authorization": f"Bearer {held.hold_token}"})
        assert_error(again, 409, "hold_expired")
        late = await pay(http, held.hold_id, held.hold_token, new_key())
        assert late.status_code == 409, late.text
    after = (await get_event(http, event["id"]))["admitted"]
    assert after == 2


async def test_a_paid_hold_cannot_be_released(http: httpx.AsyncClient) -> None:
    """Once paid, the seats are sold: releasing is 409 and nothing changes."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        await join(ws, "rel-paid", 1)
        held = await expect(ws, p.Prompt)
        assert (await pay(http, held.hold_id, held.hold_token, new_key())).status_code == 200
        resp = await http.delete(
            f"/v1/holds/{held.hold_id}", headers={"Authorization": f"Bearer {held.hold_token}"}
        )
        assert_error(resp, 409, "hold_expired")
    sold = sum(s["sold"] for s in (await get_event(http, event["id"]))["sections"])
    assert sold == 1
