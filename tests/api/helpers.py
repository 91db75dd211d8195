"""Shared helpers of the API and waiting-room tests: event bodies, a WebSocket client, PG reads."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import anyio
import asyncpg
import httpx

from api.client import Outcome, WaitingRoom
from api.client.ws import WsConnection, connect_ws
from api.wiring import Services
from realtime import protocol as p
from storage.bridge import open_bridge
from tests.conftest import SECRET, admin_headers
from waitroom.tokens import TokenKind, TokenSigner

M = TypeVar("M")

#: Opening times: long past (the event opens at once) and far future (nobody is admitted).
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"

#: A valid event: seated section A (two rows of 4), general admission GA (10 places).
BASE_EVENT: dict[str, Any] = {
    "name": "Flash sale test",
    "opens_at": PAST,
    "sections": [
        {
            "id": "A",
            "price_cents": 2_500,
            "rows": [{"label": "R1", "seats": 4}, {"label": "R2", "seats": 4}],
        },
        {"id": "GA", "price_cents": 1_000, "capacity": 10},
    ],
    "max_per_order": 4,
    "hold_seconds": 120,
}


def event_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/events body (a deep copy of BASE_EVENT) with ``overrides`` applied."""
    body = copy.deepcopy(BASE_EVENT)
    body.update(overrides)
    return body


async def create_event(http: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Create an event (asserting 201) and return the answer body."""
    resp = await http.post("/v1/events", json=event_body(**overrides), headers=admin_headers())
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def get_event(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    """GET an event (asserting 200) and return its view."""
    resp = await http.get(f"/v1/events/{event_id}")
    assert resp.status_code == 200, resp.text
    view: dict[str, Any] = resp.json()
    return view


async def event_state(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    """What bad input must leave unchanged: the event's state, line, holds and seats."""
    view = await get_event(http, event_id)
    return {k: view[k] for k in ("state", "queue_length", "active_holds", "sections")}


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an error answer: ``status``, JSON ``{"error", "message"}`` (and ``code``)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str), body
    if code is not None:
        assert body["error"] == code, body
    return body


def new_key(label: str = "key") -> str:
    """A fresh Idempotency-Key (keys are global to the deployment, so never reused by tests)."""
    return f"{label}-{uuid.uuid4().hex}"


def sign(
    event_id: str,
    seq: int,
    *,
    kind: TokenKind = TokenKind.HOLD,
    secret: str = SECRET,
    ttl_s: int = 3_600,
) -> str:
    """A token for ticket ``seq`` of ``event_id`` signed with ``secret`` (the server's by default)."""
    return TokenSigner(secret.encode()).issue(kind, event_id, seq, int(time.time()) + ttl_s)


async def pay(
    http: httpx.AsyncClient,
    hold_id: str,
    token: str | None,
    key: str | None,
    card: str = "tok_visa",
) -> httpx.Response:
    """POST a payment for ``hold_id`` (headers omitted when None)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post(
        f"/v1/holds/{hold_id}/payment", headers=headers, json={"card_token": card}
    )


async def gateway_ledger(url: str) -> dict[str, int]:
    """The sandbox gateway's ledger: charged, refunded, balance (cents), charges, refunds."""
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as http:
        answer = await http.get("/v1/ledger", headers={"Authorization": "Bearer sk_test_ledger"})
        answer.raise_for_status()
        ledger: dict[str, int] = answer.json()
        return ledger


# -- the waiting-room WebSocket --------------------------------------------------------


@asynccontextmanager
async def ws_connect(url: str) -> AsyncIterator[WsConnection]:
    """A WebSocket connection to ``url`` configured like the bench client."""
    async with connect_ws(url, open_timeout=10) as ws:
        yield ws


async def send(ws: WsConnection, message: p.ClientMessage) -> None:
    """Send a client message as a text frame, on a raw connection."""
    await ws.send(p.encode(message).decode())


async def recv(ws: WsConnection, wait_s: float = 10) -> p.ServerMessage:
    """The next server message (positions included)."""
    with anyio.fail_after(wait_s):
        raw = await ws.recv()
    message: p.ServerMessage = p.server_decoder.decode(raw)
    return message


async def expect(ws: WsConnection, kind: type[M], wait_s: float = 10) -> M:
    """The next message that is not a position update or heartbeat; it must be a ``kind``."""
    with anyio.fail_after(wait_s):
        while True:
            message = await recv(ws, wait_s)
            if not isinstance(message, p.Position | p.Heartbeat):
                break
    assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
    return message


async def expect_error(ws: WsConnection, code: str, wait_s: float = 10) -> p.Error:
    """The next non-position message must be an ``error`` with ``code``."""
    error = await expect(ws, p.Error, wait_s)
    assert error.code == code, error
    assert error.message, error
    return error


async def join(
    ws: WsConnection, client_id: str, quantity: int = 1, section: str | None = None
) -> p.Queued:
    """Join the line and return the ``queued`` answer."""
    await ws.send(
        p.encode(p.Join(quantity=quantity, client_id=client_id, section=section)).decode()
    )
    return await expect(ws, p.Queued)


# -- the waiting room through the typed client: what a test asserts of each step ------------

#: Longest wait for one step of the waiting room, s: generous, as a busy machine slows the
#: system but never changes what it says.
STEP_S = 20


async def queued_in(
    room: WaitingRoom, client_id: str, quantity: int = 1, section: str | None = None
) -> p.Queued:
    """Join the line: the answer must be a place (``queued``, not ``sold_out``)."""
    with anyio.fail_after(STEP_S):
        answer = await room.join(client_id, quantity, section)
    assert isinstance(answer, p.Queued), answer
    return answer


async def prompted(room: WaitingRoom, wait_s: float = STEP_S) -> p.Prompt:
    """Wait for the prompt (at most ``wait_s``): it must come before the place ends."""
    with anyio.fail_after(wait_s):
        async for _ in room.until_prompt():
            pass
    assert room.prompt is not None, f"no prompt: {await room.outcome()!r}"
    return room.prompt


async def told_sold_out_for_now(room: WaitingRoom, wait_s: float = STEP_S) -> None:
    """Wait (at most ``wait_s``) until the room says the event is sold out for now; the
    place must still be waiting then (no prompt, no outcome). The ``queued`` answer may
    have said so already, when the event sold out before the join was placed."""
    with anyio.fail_after(wait_s):
        if not room.sold_out_for_now:
            async with aclosing(room.until_prompt()) as updates:
                async for _ in updates:
                    if room.sold_out_for_now:
                        break
    assert room.sold_out_for_now, f"not told sold out for now: {await room.outcome()!r}"
    assert room.prompt is None


async def outcome_of(room: WaitingRoom, wait_s: float = STEP_S) -> Outcome:
    """How the place ended (waited for at most ``wait_s``)."""
    with anyio.fail_after(wait_s):
        return await room.outcome()


async def refused(room: WaitingRoom, message: p.ClientMessage, code: str) -> p.Error:
    """Send ``message``: the next message (positions and heartbeats aside) must be an
    ``error`` with ``code`` and a message."""
    await room.send(message)
    with anyio.fail_after(STEP_S):
        while isinstance(answer := await room.receive(), p.Position | p.Heartbeat | p.Pong):
            pass
    assert isinstance(answer, p.Error) and answer.code == code and answer.message, answer
    return answer


# -- PostgreSQL, read directly ---------------------------------------------------------


async def pg_value(services: Services, sql: str, *args: Any) -> Any:
    """One value read straight from the system's PostgreSQL."""
    url = services.settings.database_url
    assert url is not None
    async with open_bridge() as bridge:
        conn = await bridge.call(asyncpg.connect, url)
        try:
            return await bridge.call(conn.fetchval, sql, *args)
        finally:
            await bridge.call(conn.close)


async def count_events(services: Services) -> tuple[int, int]:
    """Events known to PostgreSQL and to Redis."""
    in_pg = await pg_value(services, "SELECT count(*) FROM events")
    return int(in_pg), len(await services.redis.event_ids())


async def count_bookings(services: Services, event_id: str) -> int:
    """Bookings of an event in PostgreSQL."""
    return int(
        await pg_value(services, "SELECT count(*) FROM bookings WHERE event_id = $1", event_id)
    )
