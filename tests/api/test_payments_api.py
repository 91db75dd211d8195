"""Paying for holds over WS + REST: success, idempotency, declines, credentials, expiry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest

from api.client.ws import WsConnection
from api.wiring import Services
from realtime import protocol as p
from tests.api.helpers import (
    FUTURE,
    assert_error,
    count_bookings,
    create_event,
    expect,
    get_event,
    join,
    new_key,
    pay,
    sections_by_id,
    sign,
    ws_connect,
)
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def _hold(
    ws: WsConnection, client_id: str, quantity: int = 2, section: str = "A"
) -> tuple[p.Queued, p.Prompt]:
    """Join and wait for the prompt: the client then holds seats."""
    queued = await join(ws, client_id, quantity, section)
    prompt = await expect(ws, p.Prompt)
    return queued, prompt


def _seats(booking: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(t["section"], t["row"], t["number"]) for t in booking["tickets"]]


def _prompt_seats(prompt: p.Prompt) -> list[tuple[str, str, int]]:
    return [(s.section, s.row, s.number) for s in prompt.seats]


async def _availability(
    http: httpx.AsyncClient, event_id: str, section: str = "A"
) -> tuple[int, ...]:
    view = await get_event(http, event_id)
    s = sections_by_id(view)[section]
    return s["free"], s["held"], s["sold"], view["active_holds"]


async def test_full_payment_path(services: Services, http: httpx.AsyncClient) -> None:
    """Join, get a prompt, pay tok_visa: 200 booking of the prompt's seats, readable, confirmed on WS."""
    event = await create_event(http)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        queued, prompt = await _hold(ws, "buyer-1", 2, "A")
        assert prompt.hold_id == f"{event_id}.{queued.ticket}"
        assert prompt.amount_cents == 5_000
        assert _prompt_seats(prompt) == [("A", "R1", 1), ("A", "R1", 2)]
        assert await _availability(http, event_id) == (6, 2, 0, 1)

        resp = await pay(http, prompt.hold_id, prompt.hold_token, new_key("full-path"))
        assert resp.status_code == 200, resp.text
        booking = resp.json()
        assert booking["id"].startswith("bk")
        assert booking["event_id"] == event_id
        assert booking["hold_id"] == prompt.hold_id
        assert booking["status"] == "confirmed"
        assert booking["amount_cents"] == 5_000
        assert datetime.fromisoformat(booking["created_at"]).tzinfo is not None
        assert _seats(booking) == _prompt_seats(prompt)
        codes = [t["code"] for t in booking["tickets"]]
        assert len(set(codes)) == 2 and all(codes)

        confirmed = await expect(ws, p.Confirmed)
        assert confirmed.booking_id == booking["id"]

    read = await http.get(
        f"/v1/bookings/{booking['id']}", headers={"Authorization": f"Bearer {prompt.hold_token}"}
    )
    assert read.status_code == 200, read.text
    assert read.json()["id"] == booking["id"]
    assert read.json()["hold_id"] == prompt.hold_id
    assert _seats(read.json()) == _prompt_seats(prompt)
    assert sorted(t["code"] for t in read.json()["tickets"]) == sorted(codes)

    assert await _availability(http, event_id) == (6, 0, 2, 0)
    assert await count_bookings(services, event_id) == 1
    audit = await http.get(f"/v1/events/{event_id}/audit?settled=1", headers=admin_headers())
    assert audit.status_code == 200
    assert audit.json()["ok"] is True, audit.json()


async def test_same_idempotency_key_replays_the_booking(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Paying again with the same Idempotency-Key answers 200 with the same booking, no second one."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        key = new_key("replay")
        first = await pay(http, prompt.hold_id, prompt.hold_token, key)
        second = await pay(http, prompt.hold_id, prompt.hold_token, key)
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert _seats(second.json()) == _seats(first.json())
    assert await count_bookings(services, event["id"]) == 1
    assert await _availability(http, event["id"]) == (6, 0, 2, 0)


async def test_other_key_after_payment_is_already_paid(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A different Idempotency-Key on a paid hold answers 409 already_paid and books nothing."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        assert (await pay(http, prompt.hold_id, prompt.hold_token, new_key("1"))).status_code == 200
        again = await pay(http, prompt.hold_id, prompt.hold_token, new_key("2"))
    assert_error(again, 409, "already_paid")
    assert await count_bookings(services, event["id"]) == 1
    assert await _availability(http, event["id"]) == (6, 0, 2, 0)


async def test_idempotency_key_reused_on_another_hold_does_not_leak_its_booking(
    services: Services, http: httpx.AsyncClient
) -> None:
    """An Idempotency-Key already used for hold A, sent for hold B, never answers with A's booking."""
    event = await create_event(http)
    key = new_key("shared")
    async with ws_connect(event["waitroom_url"]) as ws_a, ws_connect(event["waitroom_url"]) as ws_b:
        _, hold_a = await _hold(ws_a, "buyer-a", 2, "A")
        _, hold_b = await _hold(ws_b, "buyer-b", 1, "GA")
        paid_a = await pay(http, hold_a.hold_id, hold_a.hold_token, key)
        assert paid_a.status_code == 200, paid_a.text
        reused = await pay(http, hold_b.hold_id, hold_b.hold_token, key)
    if reused.status_code == 200:
        # Acceptable only as hold B's own booking of hold B's seats.
        assert reused.json()["hold_id"] == hold_b.hold_id, reused.json()
        assert reused.json()["id"] != paid_a.json()["id"], reused.json()
        assert _seats(reused.json()) == _prompt_seats(hold_b)
    else:
        assert 400 <= reused.status_code < 500
        assert_error(reused, reused.status_code)
    audit = await http.get(f"/v1/events/{event['id']}/audit?settled=1", headers=admin_headers())
    assert audit.json()["ok"] is True, audit.json()


async def test_concurrent_payments_book_once(services: Services, http: httpx.AsyncClient) -> None:
    """Two simultaneous payments of one hold with different keys: one 200, the other 409."""
    event = await create_event(http)
    results: dict[str, httpx.Response] = {}
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")

        async def attempt(key: str) -> None:
            results[key] = await pay(http, prompt.hold_id, prompt.hold_token, key)

        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, new_key("a"))
            tg.start_soon(attempt, new_key("b"))
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409], {k: (r.status_code, r.text) for k, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 409)
    assert loser.json()["error"] in ("already_paid", "payment_in_progress")
    assert await count_bookings(services, event["id"]) == 1


async def test_declined_card_keeps_the_hold_payable(
    services: Services, http: httpx.AsyncClient
) -> None:
    """tok_declined answers 402 and books nothing; the hold stays held and tok_visa then succeeds."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        declined = await pay(http, prompt.hold_id, prompt.hold_token, new_key("d1"), "tok_declined")
        assert_error(declined, 402, "payment_declined")
        unknown_card = await pay(
            http, prompt.hold_id, prompt.hold_token, new_key("d2"), "tok_bogus"
        )
        assert_error(unknown_card, 402, "payment_declined")
        assert await count_bookings(services, event["id"]) == 0
        assert await _availability(http, event["id"]) == (6, 2, 0, 1)

        ok = await pay(http, prompt.hold_id, prompt.hold_token, new_key("d3"), "tok_visa")
        assert ok.status_code == 200, ok.text
        assert _seats(ok.json()) == _prompt_seats(prompt)
        assert (await expect(ws, p.Confirmed)).booking_id == ok.json()["id"]
    assert await count_bookings(services, event["id"]) == 1


@pytest.mark.parametrize(
    "key",
    [None, "k" * 129, "tab\there"],
    ids=["missing", "too-long", "not-printable"],
)
async def test_bad_idempotency_key_is_400(
    services: Services, http: httpx.AsyncClient, key: str | None
) -> None:
    """A missing or malformed Idempotency-Key answers 400 and leaves the hold untouched."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        resp = await pay(http, prompt.hold_id, prompt.hold_token, key)
        assert_error(resp, 400, "invalid_request")
        assert await _availability(http, event["id"]) == (6, 2, 0, 1)
        assert (await pay(http, prompt.hold_id, prompt.hold_token, new_key())).status_code == 200
    assert await count_bookings(services, event["id"]) == 1


async def test_missing_forged_or_garbage_token_is_401(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Without a genuine hold token the payment answers 401 and nothing is paid."""
    event = await create_event(http)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        queued, prompt = await _hold(ws, "buyer-1")
        seq = queued.ticket
        genuine = prompt.hold_token
        tampered = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
        bad_tokens = {
            "garbage": "garbage",
            "five-parts-unsigned": f"h.{event_id}.{seq}.9999999999.sig",
            "other-secret": sign(event_id, seq, secret="another-secret-0123456789abc"),
            "queue-token": queued.token,
            "tampered": tampered,
            "other-seq-same-signature": genuine.replace(f".{seq}.", f".{seq + 1}.", 1),
        }
        for name, token in bad_tokens.items():
            resp = await pay(http, prompt.hold_id, token, new_key(name))
            assert_error(resp, 401, "unauthorized")
            assert resp.headers.get("www-authenticate") == "Bearer", name
        no_header = await pay(http, prompt.hold_id, None, new_key("none"))
        assert_error(no_header, 401, "unauthorized")
        basic = await http.post(
            f"/v1/holds/{prompt.hold_id}/payment",
            headers={"Authorization": f"Basic {genuine}", "Idempotency-Key": new_key("basic")},
            json={"card_token": "tok_visa"},
        )
        assert_error(basic, 401, "unauthorized")
    assert await count_bookings(services, event_id) == 0
    assert await _availability(http, event_id) == (6, 2, 0, 1)


async def test_expired_hold_token_is_409_hold_expired(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A genuine hold token past its time pays nothing: 409 ``hold_expired`` for its own
    hold, 403 for another's; reading a booking with it is 401."""
    event = await create_event(http)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        queued, prompt = await _hold(ws, "buyer-1")
        expired = sign(event_id, queued.ticket, ttl_s=-60)
        resp = await pay(http, prompt.hold_id, expired, new_key("expired"))
        assert_error(resp, 409, "hold_expired")
        other = sign(event_id, queued.ticket + 1, ttl_s=-60)
        assert_error(await pay(http, prompt.hold_id, other, new_key("other")), 403, "forbidden")
        assert await count_bookings(services, event_id) == 0
        assert await _availability(http, event_id) == (6, 2, 0, 1)
        paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key("live"))
        assert paid.status_code == 200, paid.text
    read = await http.get(
        f"/v1/bookings/{paid.json()['id']}", headers={"Authorization": f"Bearer {expired}"}
    )
    assert_error(read, 401, "unauthorized")


async def test_token_of_another_hold_is_403(services: Services, http: httpx.AsyncClient) -> None:
    """A genuine hold token used on another hold (pay or read its booking) answers 403."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws1, ws_connect(event["waitroom_url"]) as ws2:
        _, mine = await _hold(ws1, "buyer-1")
        _, theirs = await _hold(ws2, "buyer-2")
        assert mine.hold_id != theirs.hold_id

        stolen = await pay(http, theirs.hold_id, mine.hold_token, new_key("steal"))
        assert_error(stolen, 403, "forbidden")
        assert await count_bookings(services, event["id"]) == 0

        paid = await pay(http, theirs.hold_id, theirs.hold_token, new_key("theirs"))
        assert paid.status_code == 200, paid.text
    booking_url = f"/v1/bookings/{paid.json()['id']}"

    other = await http.get(booking_url, headers={"Authorization": f"Bearer {mine.hold_token}"})
    assert_error(other, 403, "forbidden")
    assert_error(await http.get(booking_url), 401, "unauthorized")
    garbage = await http.get(booking_url, headers={"Authorization": "Bearer garbage"})
    assert_error(garbage, 401, "unauthorized")
    own = await http.get(booking_url, headers={"Authorization": f"Bearer {theirs.hold_token}"})
    assert own.status_code == 200
    admin = await http.get(booking_url, headers=admin_headers())
    assert admin.status_code == 200
    assert admin.json()["id"] == paid.json()["id"]


async def test_token_for_path_that_names_no_hold_is_404(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A genuine token sent to a path that cannot name a hold answers 404."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        for path_id in (f"{event['id']}.x", f"{event['id']}.-1", event["id"], "nothing"):
            resp = await pay(http, path_id, prompt.hold_token, new_key("1"))
            assert_error(resp, 404, "not_found")
    assert await count_bookings(services, event["id"]) == 0


@pytest.mark.parametrize(
    "seq", ["\u00b2", "\u2460", "1\u00b2"], ids=["superscript-2", "circled-1", "1-superscript-2"]
)
async def test_hold_path_with_non_decimal_digit_seq_is_refused(
    services: Services, http: httpx.AsyncClient, seq: str
) -> None:
    """A hold path whose seq is a Unicode digit but not a number (e.g. '²') is 404, not 500."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        resp = await pay(http, f"{event['id']}.{seq}", prompt.hold_token, new_key(), "tok_declined")
        assert_error(resp, 404, "not_found")
    assert await count_bookings(services, event["id"]) == 0


async def test_payment_body_with_invalid_utf8_is_400(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A payment body whose JSON string holds invalid UTF-8 answers 400 and pays nothing."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        resp = await http.post(
            f"/v1/holds/{prompt.hold_id}/payment",
            content=b'{"card_token": "tok_visa\xff"}',
            headers={
                "Authorization": f"Bearer {prompt.hold_token}",
                "Idempotency-Key": new_key(),
                "Content-Type": "application/json",
            },
        )
        assert_error(resp, 400, "invalid_request")
        assert await _availability(http, event["id"]) == (6, 2, 0, 1)
    assert await count_bookings(services, event["id"]) == 0


async def test_unknown_hold_is_404(services: Services, http: httpx.AsyncClient) -> None:
    """A genuine token for a hold that does not exist (no ticket, no seats yet, no event) is 404."""
    event = await create_event(http, opens_at=FUTURE)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        queued = await join(ws, "buyer-1")  # in line, never admitted: no hold yet
        cases = [(event_id, 999), (event_id, queued.ticket), ("evnosuchevent", 1)]
        for ev, seq in cases:
            resp = await pay(http, f"{ev}.{seq}", sign(ev, seq), new_key())
            assert_error(resp, 404, "not_found")
    view = await get_event(http, event_id)
    assert view["queue_length"] == 1
    assert await count_bookings(services, event_id) == 0


async def test_unknown_booking_is_404(http: httpx.AsyncClient) -> None:
    """GET of a booking that does not exist answers 404 not_found."""
    resp = await http.get("/v1/bookings/bk0000000000000000", headers=admin_headers())
    assert_error(resp, 404, "not_found")


async def test_expired_hold_is_409_hold_expired(
    services: Services, http: httpx.AsyncClient
) -> None:
    """After the hold runs out (WS says expired) paying answers 409 hold_expired; seats are free."""
    event = await create_event(http, hold_seconds=1)
    async with ws_connect(event["waitroom_url"]) as ws:
        _, prompt = await _hold(ws, "buyer-1")
        await expect(ws, p.Expired, wait_s=15)  # the worker's sweep, ~1 s of real time
    resp = await pay(http, prompt.hold_id, prompt.hold_token, new_key("late"))
    assert_error(resp, 409, "hold_expired")
    assert await count_bookings(services, event["id"]) == 0
    assert await _availability(http, event["id"]) == (8, 0, 0, 0)
