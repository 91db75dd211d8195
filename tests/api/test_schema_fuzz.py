"""Hypothesis-generated bad input for every REST route and WS message type, sent concurrently.

Each input starts from a valid instance of a wire schema (EventSpec, PaymentBody, CancelBody,
CheckinBody, WebhookBody, Join, Resume) and is broken by one mutation drawn by hypothesis: a field dropped, a field's
value replaced by an arbitrary JSON value, an unknown field added, or the whole body
replaced. Inputs the schema would still accept are filtered out, so every answer must
be a 4xx ``{"error", "message"}`` (REST) or an ``error`` message (WS), with no state
change and the server still answering. Together the tests send 11,700 inputs.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.client import solve_challenge
from api.http.schemas import (
    CancelBody,
    ChallengeBody,
    CheckinBody,
    EmailCodeBody,
    EmailVerifyBody,
    PaymentBody,
    WebhookBody,
)
from api.wiring import Services
from engine.errors import BookingError
from engine.events import EventSpec, validate_event
from realtime import protocol as p
from tests.api.helpers import (
    BASE_EVENT,
    FUTURE,
    count_bookings,
    count_events,
    create_event,
    event_body,
    event_state,
    get_event,
    pg_value,
    recv,
    send,
    sign,
    ws_connect,
)
from tests.api.test_bad_input import _response_problem as response_problem
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio

# The REST fuzz tests are marked ``once``: what they try is the routes' validation, which is
# the same code on both runtimes, and they cost a minute and a half a pass. The WS ones run on
# both, since each runtime has its own WebSocket server under the same protocol code.

T = TypeVar("T")

#: Inputs per test (sum: 11,000).
EVENT_BODIES = 2_500
PAYMENT_BODIES = 2_000
CANCEL_BODIES = 1_000
CHECKIN_BODIES = 1_000
WEBHOOK_BODIES = 500
PATH_IDS = 2_500
WS_FRAMES = 3_000
CONCURRENCY = 8  # requests in flight (REST) / sockets (WS)
MAX_FRAME = 4_000  # under the server's frame limit, above which it closes the socket

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=4,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (dict keys and list indices)."""
    out: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        out.append((*prefix, key))
        out += _paths(child, (*prefix, key))
    return out


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` (a valid JSON value) broken by one hypothesis-drawn mutation."""
    obj = copy.deepcopy(base)
    paths = _paths(obj)
    kind = draw(st.sampled_from(["drop", "replace", "replace", "add", "whole"]))
    if kind == "whole" or not paths:
        return draw(json_values)
    path = draw(st.sampled_from(paths))
    parent = _parent(obj, path)
    if kind == "drop":
        del parent[path[-1]]
    elif kind == "replace":
        parent[path[-1]] = draw(json_values)
    else:
        target = parent if isinstance(parent, dict) else obj
        target[draw(st.text(min_size=1, max_size=12)).strip() or "extra"] = draw(json_values)
    return obj


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _event_is_invalid(body: bytes) -> bool:
    try:
        validate_event(msgspec.json.decode(body, type=EventSpec))
    except (msgspec.ValidationError, msgspec.DecodeError, BookingError):
        return True
    return False


def _payment_is_invalid(body: bytes) -> bool:
    try:
        msgspec.json.decode(body, type=PaymentBody)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    return False


def _invalid_as(kind: type[Any]) -> Callable[[bytes], bool]:
    def invalid(body: bytes) -> bool:
        try:
            msgspec.json.decode(body, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return True
        return False

    return invalid


def _cancel_is_invalid(body: bytes) -> bool:
    """True unless the body would cancel: it does not decode, or names no or a repeated ticket."""
    try:
        decoded = msgspec.json.decode(body, type=CancelBody)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    tickets = decoded.tickets
    return tickets is not None and (not tickets or len(set(tickets)) != len(tickets))


def _checkin_is_invalid(body: bytes) -> bool:
    try:
        msgspec.json.decode(body, type=CheckinBody)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    return False


SECTIONS = {s["id"] for s in BASE_EVENT["sections"]}


def _frame_is_bad(frame: bytes) -> bool:
    """True unless the frame is a join the server would accept (a resume needs a real token)."""
    if len(frame) > MAX_FRAME:
        return False
    try:
        msg = p.client_decoder.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    if isinstance(msg, p.Join):
        return msg.quantity > BASE_EVENT["max_per_order"] or (
            msg.section is not None and msg.section not in SECTIONS
        )
    return True


def draw_many(strategy: st.SearchStrategy[list[T]], batches: int) -> list[T]:
    """Run hypothesis over ``strategy`` (lists of inputs) ``batches`` times; every input drawn."""
    drawn: list[T] = []

    @settings(
        max_examples=batches,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(batch: list[T]) -> None:
        drawn.extend(batch)

    collect()
    return drawn


def bodies(base: Any, invalid: Callable[[bytes], bool], count: int) -> list[bytes]:
    """``count`` (about) encoded mutations of ``base`` that ``invalid`` confirms are bad."""
    one = mutated(base).map(_encode).filter(invalid)
    return draw_many(st.lists(one, min_size=25, max_size=25), count // 25)


async def _send_all(
    http: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, str], bytes]]
) -> list[str]:
    """Send every (method, url, headers, body) over CONCURRENCY tasks; the broken answers."""
    problems: list[str] = []
    pending = iter(requests)

    async def sender() -> None:
        for method, url, headers, body in pending:
            resp = await http.request(method, url, headers=headers, content=body)
            problem = response_problem(resp, None)
            if problem:
                problems.append(f"{problem} <- {method} {url} {body!r:.160}")

    async with anyio.create_task_group() as tg:
        for _ in range(CONCURRENCY):
            tg.start_soon(sender)
    return problems


@pytest.mark.once
async def test_generated_event_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """2,500 schema-mutated POST /v1/events bodies: all 4xx JSON, no event created."""
    started = time.monotonic()
    cases = bodies(event_body(), _event_is_invalid, EVENT_BODIES)
    headers = {**admin_headers(), "Content-Type": "application/json"}
    before = await count_events(services)
    problems = await _send_all(http, [("POST", "/v1/events", headers, b) for b in cases])
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert len(cases) >= EVENT_BODIES
    assert await count_events(services) == before
    assert (await http.get("/healthz")).status_code == 200
    assert time.monotonic() - started < 60


@pytest.mark.once
async def test_generated_payment_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """2,000 schema-mutated payment bodies with a valid token and key: all 4xx, nothing paid."""
    event = await create_event(http, opens_at=FUTURE)
    event_id = event["id"]
    cases = bodies(
        {"card_token": "tok_visa", "email": "buyer@example.com"},
        _payment_is_invalid,
        PAYMENT_BODIES,
    )
    before = await event_state(http, event_id)
    requests = [
        (
            "POST",
            f"/v1/holds/{event_id}.1/payment",
            {
                "Authorization": f"Bearer {sign(event_id, 1)}",
                "Idempotency-Key": f"fuzz-{i}",
                "Content-Type": "application/json",
            },
            b,
        )
        for i, b in enumerate(cases)
    ]
    problems = await _send_all(http, requests)
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert len(cases) >= PAYMENT_BODIES
    assert await event_state(http, event_id) == before
    assert await count_bookings(services, event_id) == 0


@pytest.mark.once
async def test_generated_cancel_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """1,000 schema-mutated cancel bodies from the booking's own holder: all 4xx, the booking
    and the seats untouched."""
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        await ws.send(p.encode(p.Join(quantity=2, client_id="fuzz-cx", section="A")).decode())
        while not isinstance(prompt := await recv(ws), p.Prompt):
            pass
    headers = {"Authorization": f"Bearer {prompt.hold_token}", "Idempotency-Key": "fuzz-pay"}
    paid = await http.post(
        f"/v1/holds/{prompt.hold_id}/payment", json={"card_token": "tok_visa"}, headers=headers
    )
    assert paid.status_code == 200, paid.text
    booking = paid.json()
    codes = [t["code"] for t in booking["tickets"]]
    cases = bodies({"tickets": codes}, _cancel_is_invalid, CANCEL_BODIES)
    before = await event_state(http, event["id"])
    requests = [
        (
            "POST",
            f"/v1/bookings/{booking['id']}/cancel",
            {
                "Authorization": f"Bearer {prompt.hold_token}",
                "Idempotency-Key": f"fuzz-{i}",
                "Content-Type": "application/json",
            },
            b,
        )
        for i, b in enumerate(cases)
    ]
    problems = await _send_all(http, requests)
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert len(cases) >= CANCEL_BODIES
    assert await event_state(http, event["id"]) == before
    got = await http.get(f"/v1/bookings/{booking['id']}", headers=admin_headers())
    assert got.json()["status"] == "confirmed" and all(t["live"] for t in got.json()["tickets"])


@pytest.mark.once
async def test_generated_checkin_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """1,000 schema-mutated check-in bodies with a genuine staff key: all 4xx (422), nobody
    let in."""
    event = await create_event(http)
    made = await http.post(
        f"/v1/events/{event['id']}/staff-keys", json={"label": "Fuzz"}, headers=admin_headers()
    )
    assert made.status_code == 201, made.text
    cases = bodies({"code": "T-0000-0000", "gate": "North"}, _checkin_is_invalid, CHECKIN_BODIES)
    headers = {"Authorization": f"Bearer {made.json()['key']}", "Content-Type": "application/json"}
    problems = await _send_all(http, [("POST", "/v1/checkin", headers, b) for b in cases])
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert len(cases) >= CHECKIN_BODIES
    logged = await pg_value(
        services, "SELECT count(*) FROM event_log WHERE kind = 'ticket_checked_in' AND "
        "event_id = $1", event["id"],
    )  # fmt: skip
    assert logged == 0


@pytest.mark.once
async def test_generated_webhook_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """500 schema-mutated webhook bodies (``url`` and ``batch``) from the admin: all 400,
    no webhook registered, nothing logged."""
    event = await create_event(http)
    url = f"/v1/events/{event['id']}/webhooks"
    base = {"url": "https://integrator.example/hook", "batch": True}
    cases = bodies(base, _invalid_as(WebhookBody), WEBHOOK_BODIES)
    headers = {**admin_headers(), "Content-Type": "application/json"}
    problems = await _send_all(http, [("POST", url, headers, b) for b in cases])
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert len(cases) >= WEBHOOK_BODIES
    assert (await http.get(url, headers=admin_headers())).json() == {"webhooks": []}
    logged = await pg_value(
        services,
        "SELECT count(*) FROM event_log WHERE event_id = $1 AND kind LIKE 'webhook%'",
        event["id"],
    )
    assert logged == 0


@pytest.mark.once
async def test_generated_ids_in_every_route_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """2,500 generated ids in each route's path (events, admission, close, audit, paying for
    and releasing holds, bookings and their cancellation, cancelling events, their PDF and QR
    codes, ticket keys, staff keys, webhooks, check-in counts, reports) and generated ``limit``s of the
    list of events: all 4xx JSON."""
    event = await create_event(http)
    ids = draw_many(st.lists(st.text(min_size=1, max_size=40), min_size=25, max_size=25), 100)
    admin = admin_headers()
    routes = [
        ("GET", "/v1/events/{}", {}),
        ("POST", "/v1/events/{}/pause", admin),
        ("POST", "/v1/events/{}/resume", admin),
        ("POST", "/v1/events/{}/close", admin),
        ("GET", "/v1/events/{}/audit", admin),
        ("POST", "/v1/holds/{}/payment", {"Authorization": f"Bearer {sign(event['id'], 1)}"}),
        ("DELETE", "/v1/holds/{}", {"Authorization": f"Bearer {sign(event['id'], 1)}"}),
        ("GET", "/v1/bookings/{}", {}),
        ("POST", "/v1/bookings/{}/cancel", {**admin, "Idempotency-Key": "fuzz"}),
        ("POST", "/v1/events/{}/cancel", admin),
        ("GET", "/v1/events/{}/cancellation", admin),
        ("GET", "/v1/events/{}/staff-keys", admin),
        ("POST", "/v1/events/{}/staff-keys", admin),
        ("DELETE", f"/v1/events/{event['id']}/staff-keys/{{}}", admin),
        ("DELETE", "/v1/events/{}/staff-keys/sknosuchkey", admin),
        ("GET", "/v1/events/{}/webhooks", admin),
        ("POST", "/v1/events/{}/webhooks", admin),
        ("DELETE", f"/v1/events/{event['id']}/webhooks/{{}}", admin),
        ("POST", f"/v1/events/{event['id']}/webhooks/{{}}/redeliver", admin),
        ("DELETE", "/v1/events/{}/webhooks/whnosuchhook", admin),
        ("GET", "/v1/events/{}/checkins", admin),
        ("GET", "/v1/events/{}/report", admin),
        ("GET", "/v1/events/{}/report", {}),
        ("GET", "/v1/bookings/{}/tickets.pdf", {}),
        ("GET", "/v1/bookings/{}/tickets/T1.x/qr.svg", admin),
        ("GET", "/v1/events/{}/ticket-key", {}),
        ("POST", "/v1/events/{}/identity/email", {}),
        ("GET", "/v1/events/{}/challenge", {}),
        ("PUT", "/v1/events/{}/challenge", admin),
        ("POST", "/v1/events/{}/identity/verify", {}),
    ]
    before = await count_events(services)
    requests = [
        (method, template.format(quote(i, safe="")), headers, b"{}")
        for n, i in enumerate(ids)
        for method, template, headers in [routes[n % len(routes)]]
    ]
    # The list of events takes no id; its one parameter is ``limit`` (1-100).
    requests += [
        ("GET", f"/v1/events?limit={quote(i, safe='')}", {}, b"")
        for i in ids[:250]
        if not (i.isascii() and i.isdigit() and 1 <= int(i) <= 100)
    ]
    problems = await _send_all(http, requests)
    assert problems == [], f"{len(problems)} of {len(requests)}:\n" + "\n".join(problems[:5])
    assert len(requests) >= PATH_IDS
    assert await count_events(services) == before
    assert (await get_event(http, event["id"]))["state"] == "open"


async def test_generated_ws_messages_get_error_answers(
    services: Services, http: httpx.AsyncClient
) -> None:
    """3,000 schema-mutated join and resume frames: each answered with an error, no place taken."""
    event = await create_event(http, opens_at=FUTURE)
    join = {"type": "join", "quantity": 2, "client_id": "fuzz", "section": "A"}
    resume = {"type": "resume", "token": "t" * 40}
    one = st.one_of(mutated(join), mutated(resume)).map(_encode).filter(_frame_is_bad)
    frames = draw_many(st.lists(one, min_size=25, max_size=25), WS_FRAMES // 25)
    before = await event_state(http, event["id"])
    problems: list[str] = []

    async def talk(chunk: list[bytes]) -> None:
        async with ws_connect(event["waitroom_url"]) as ws:
            for frame in chunk:
                await ws.send(frame.decode(), text=True)
                answer = await recv(ws, wait_s=10)
                if not (isinstance(answer, p.Error) and answer.code and answer.message):
                    problems.append(f"answered {answer!r:.120} <- {frame!r:.160}")

    async with anyio.create_task_group() as tg:
        for k in range(CONCURRENCY):
            tg.start_soon(talk, frames[k::CONCURRENCY])
    assert problems == [], f"{len(problems)} of {len(frames)}:\n" + "\n".join(problems[:5])
    assert len(frames) >= WS_FRAMES
    assert await event_state(http, event["id"]) == before


IDENTITY_FRAMES = 500


async def test_generated_identity_joins_get_error_answers(
    services: Services, http: httpx.AsyncClient
) -> None:
    """500 mutations of a join carrying a valid identity token, to an event that requires
    one (checked with a PEM key): each answered with an error, no place taken."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    identity = {"kind": "jwt", "issuer": "https://shop", "audience": "fuzz", "public_key": pem}
    event = await create_event(http, opens_at=FUTURE, identity=identity)
    claims = {"sub": "p", "iss": "https://shop", "aud": "fuzz", "exp": int(time.time()) + 3600}
    valid = jwt.encode(claims, key, algorithm="ES256")

    def is_bad(frame: bytes) -> bool:
        if not _frame_is_bad(frame):
            return p.client_decoder.decode(frame).identity != valid  # type: ignore[union-attr]
        return True

    join = {"type": "join", "quantity": 2, "client_id": "fuzz", "identity": valid}
    frames = draw_many(
        st.lists(mutated(join).map(_encode).filter(is_bad), min_size=25, max_size=25),
        IDENTITY_FRAMES // 25,
    )
    before = await event_state(http, event["id"])
    problems: list[str] = []

    async def talk(chunk: list[bytes]) -> None:
        async with ws_connect(event["waitroom_url"]) as ws:
            for frame in chunk:
                await ws.send(frame.decode(), text=True)
                answer = await recv(ws, wait_s=10)
                if not (isinstance(answer, p.Error) and answer.code and answer.message):
                    problems.append(f"answered {answer!r:.120} <- {frame!r:.160}")

    async with anyio.create_task_group() as tg:
        for k in range(CONCURRENCY):
            tg.start_soon(talk, frames[k::CONCURRENCY])
    assert problems == [], f"{len(problems)} of {len(frames)}:\n" + "\n".join(problems[:5])
    assert len(frames) >= IDENTITY_FRAMES
    assert await event_state(http, event["id"]) == before


IDENTITY_BODIES = 500


@pytest.mark.once
async def test_generated_email_identity_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """500 schema-mutated bodies of each email identity route, to an event that verifies
    addresses: all 400, no code kept."""
    event = await create_event(http, identity={"kind": "email"})
    base = f"/v1/events/{event['id']}/identity"
    headers = {"Content-Type": "application/json"}
    sends = bodies({"email": "a@example.org"}, _invalid_as(EmailCodeBody), IDENTITY_BODIES)
    verifies = bodies(
        {"email": "a@example.org", "code": "123456"}, _invalid_as(EmailVerifyBody), IDENTITY_BODIES
    )
    requests = [("POST", f"{base}/email", headers, b) for b in sends]
    requests += [("POST", f"{base}/verify", headers, b) for b in verifies]
    problems = await _send_all(http, requests)
    assert problems == [], f"{len(problems)} of {len(requests)}:\n" + "\n".join(problems[:5])
    assert len(sends) >= IDENTITY_BODIES and len(verifies) >= IDENTITY_BODIES


@pytest.mark.once
async def test_generated_challenge_bodies_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """500 schema-mutated bodies of PUT /v1/events/{id}/challenge: all 400, the difficulty
    unchanged; 200 generated join frames carrying a challenge field are refused (or, a
    join left without a solution, handed a challenge); none takes a place."""
    event = await create_event(http, challenge_difficulty=1_000)
    url = f"/v1/events/{event['id']}/challenge"
    headers = {**admin_headers(), "Content-Type": "application/json"}
    cases = bodies({"difficulty": 5}, _invalid_as(ChallengeBody), IDENTITY_BODIES)
    problems = await _send_all(http, [("PUT", url, headers, b) for b in cases])
    assert problems == [], f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:5])
    assert (await http.get(url)).json()["difficulty"] == 1_000
    join = {"type": "join", "quantity": 1, "client_id": "fuzz", "challenge": "x" * 40}
    frames = draw_many(st.lists(mutated(join).map(_encode), min_size=25, max_size=25), 8)
    async with ws_connect(event["waitroom_url"]) as ws:
        for frame in frames:
            await ws.send(frame.decode(), text=True)
            answer = await recv(ws, wait_s=10)
            if _unsolved_join(frame):
                assert isinstance(answer, p.Challenge), (answer, frame)
                continue
            assert isinstance(answer, p.Error) and answer.code and answer.message, (answer, frame)
    assert (await get_event(http, event["id"]))["queue_length"] == 0


def _unsolved_join(frame: bytes) -> bool:
    """The frame is a well-formed join bringing no solution (answered with a challenge)."""
    try:
        message = p.client_decoder.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return isinstance(message, p.Join) and message.challenge is None


@pytest.mark.once
async def test_generated_joins_with_a_handed_out_solution_are_refused_and_leave_it_unused(
    http: httpx.AsyncClient,
) -> None:
    """A join without a solution is handed a challenge over the WebSocket; 200 generated
    frames breaking the join sent again with its genuine solution are refused with an
    ``error``, take no place and do not use the solution up: the join then takes the place
    with it."""
    event = await create_event(http, challenge_difficulty=1_000)
    async with ws_connect(event["waitroom_url"]) as ws:
        await send(ws, p.Join(quantity=1, client_id="fuzz"))
        handed = await recv(ws)
        assert isinstance(handed, p.Challenge), handed
        join = {"type": "join", "quantity": 1, "client_id": "fuzz"}
        join["challenge"] = await solve_challenge(handed)
        broken = mutated(join).map(_encode).filter(_invalid_as(p.ClientMessage))
        for frame in draw_many(st.lists(broken, min_size=25, max_size=25), 8):
            await ws.send(frame.decode(), text=True)
            answer = await recv(ws, wait_s=10)
            assert isinstance(answer, p.Error) and answer.code and answer.message, (answer, frame)
        assert (await get_event(http, event["id"]))["queue_length"] == 0
        await ws.send(_encode(join).decode(), text=True)
        queued = await recv(ws)
        assert isinstance(queued, p.Queued) and queued.ticket == 1, queued
