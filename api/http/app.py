"""The Starlette application: v1 REST routes, pages, health, metrics.

Routes are a list of plain handlers; each maps HTTP to one engine call and the
engine's answer to a response body. What every handler needs (the engine, the
admin key, limits) is the lifespan's state, built once by the wiring point.
Domain errors become statuses in ``api/http/errors.py``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

import anyio
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from api.http.docs import docs_page
from api.http.errors import error_response, handle_booking_error
from api.http.openapi import TEXT, openapi_document, operation, waitroom_schema
from api.http.pages import not_found_page, page_routes, wants_html
from api.http.responses import json_response
from api.http.schemas import (
    AdmissionBody,
    AdmissionView,
    AuditView,
    BookingView,
    CancelBody,
    CancellationView,
    ChallengeBody,
    ChallengeView,
    CheckedInBeforeBody,
    CheckinBody,
    CheckinCountsView,
    CheckinView,
    CreatedEvent,
    CreatedStaffKey,
    CreatedWebhook,
    EmailCodeBody,
    EmailCodeSent,
    EmailVerifyBody,
    EventCancellationView,
    EventList,
    EventReport,
    EventSummary,
    EventView,
    IdentityTokenView,
    PaymentBody,
    ReleasedView,
    ReportMinute,
    ReportSection,
    ReportTotals,
    SectionAvailability,
    StaffKeyBody,
    StaffKeyList,
    StaffKeyView,
    StateView,
    TicketKeyView,
    TicketView,
    WebhookBody,
    WebhookList,
    WebhookView,
)
from engine.bookings import Booking
from engine.cancellation import Cancellation, CancellationStatus, EventCancellation
from engine.challenge import JoinChallenges
from engine.checkin import StaffKey
from engine.checkout import PaymentRequest
from engine.email_identity import EmailIdentity
from engine.errors import (
    AlreadyCheckedIn,
    BookingError,
    InvalidRequest,
    NotFound,
    RateLimited,
    StorageUnavailable,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from engine.eventlog import Actor
from engine.events import EventSpec
from engine.interface import Engine
from engine.readmodels import ReportRows
from engine.sales import Sales, SaleStatus
from engine.ticket_codes import CODE_VERSION
from engine.webhooks import WebhookRow
from plumbing.client_ip import AddressPolicy
from plumbing.log_context import REQUEST_ID
from waitroom.limits import RouteLimiter, identity
from waitroom.records import EventState

__all__ = ["API_VERSION", "OPS_ROUTES", "ROUTES", "HttpState", "create_app", "create_ops_app"]

#: The interface's version, as the OpenAPI document states it.
API_VERSION = "1.0.0"

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpState:
    """What the routes need: the engine and the edge's own settings."""

    engine: Engine
    #: Bearer key of admin routes.
    admin_key: str
    #: Largest accepted request body, bytes.
    max_body_bytes: int
    #: Where clients of an event open their WebSocket: (event id, the request's Host header).
    waitroom_url: Callable[[str, str | None], str]
    #: Token buckets of the routes (None: unlimited).
    limiter: RouteLimiter | None = None
    #: Trusted proxies, and the client addresses per-IP limits spare.
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    #: Longest a request body may take to arrive, seconds.
    body_timeout_s: float = 10.0
    #: Codes mailed to buyers' addresses and their identity tokens (None: not served).
    email_identity: EmailIdentity | None = None
    #: Join challenges (proof of work) and their difficulty (None: not served).
    challenges: JoinChallenges | None = None


class BodyTimeout(Exception):
    """The request body did not arrive in time."""


def _state(request: Request) -> HttpState:
    state: HttpState = request.state.http
    return state


def client_ip(request: Request) -> str:
    """The client's address: the peer, or behind trusted proxies from X-Forwarded-For."""
    peer = request.client.host if request.client is not None else ""
    return _state(request).addresses.client(peer, request.headers.getlist("x-forwarded-for"))


async def _limit(
    request: Request, route: str, *, hold: str | None = None, admin: bool = False
) -> None:
    """Take a token of ``route`` for the client's address, and for its hold or admin key;
    RateLimited (429) when a bucket is empty. An exempt address (loopback unless
    configured otherwise: operators and the bench) takes none."""
    state = _state(request)
    ip = client_ip(request)
    if state.limiter is None or state.addresses.exempt(ip):
        return
    key = identity(_bearer(request)) if admin else ""
    wait = await state.limiter.take(route, ip=ip, hold=hold, admin=key)
    if wait:
        raise RateLimited(f"too many {route} requests; retry in {wait} s", wait)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <token>")
    return token.strip()


def _is_admin(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), _state(request).admin_key.encode()
    )


async def _require_admin(request: Request) -> None:
    """Admin credentials, within the admin routes' limits (per address, then per key)."""
    await _limit(request, "admin")
    _bearer(request)
    if not _is_admin(request):
        raise Unauthorized("admin key required")
    await _limit(request, "admin_key", admin=True)


def _admin_actor(request: Request) -> Actor:
    """Who an admin request's change is logged as: the admin key's holder, the request's id
    and the address it came from (behind trusted proxies, the client's)."""
    return Actor(who="admin", request_id=REQUEST_ID.get(), client_ip=client_ip(request))


def _buyer_actor(request: Request) -> Actor:
    """Who a buyer's change (made with the booking's hold or booking token) is logged as:
    the buyer, the request's id and the address it came from."""
    return Actor(who="buyer", request_id=REQUEST_ID.get(), client_ip=client_ip(request))


async def _body(request: Request, kind: type[T], empty: T | None = None) -> T:
    limit = _state(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise InvalidRequest(f"body larger than {limit} bytes")
    raw = b""
    with anyio.move_on_after(_state(request).body_timeout_s) as scope:
        async with aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                raw += chunk
                if len(raw) > limit:
                    raise InvalidRequest(f"body larger than {limit} bytes")
    if scope.cancelled_caught:
        raise BodyTimeout
    if not raw and empty is not None:  # no body at all: the operation's default
        return empty
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"invalid body: {exc}") from None


async def _booking_view(engine: Engine, booking: Booking) -> BookingView:
    return BookingView(
        id=booking.id,
        event_id=booking.event_id,
        hold_id=booking.hold_id,
        status=booking.status,
        amount_cents=booking.amount_cents,
        created_at=booking.created_at.isoformat(),
        tickets=[TicketView(t.code, t.section, t.row, t.number, t.live) for t in booking.tickets],
        booking_token=engine.holds.booking_token(booking.hold_id, booking.token_expires_s),
        booking_token_expires_s=booking.token_expires_s,
        currency=await engine.tickets.currency(booking),
    )


def _cancellation_view(cancellation: Cancellation) -> CancellationView:
    completed = cancellation.completed_at
    return CancellationView(
        id=cancellation.id,
        booking_id=cancellation.booking_id,
        status=cancellation.status,
        tickets=cancellation.tickets,
        amount_cents=cancellation.amount_cents,
        refund_reference=cancellation.refund_reference,
        booking_status=cancellation.booking_status,
        requested_at=cancellation.requested_at.astimezone(UTC).isoformat(),
        completed_at=None if completed is None else completed.astimezone(UTC).isoformat(),
    )


def _event_cancellation_view(progress: EventCancellation) -> EventCancellationView:
    completed = progress.completed_at
    return EventCancellationView(
        event_id=progress.event_id,
        status=progress.status,
        bookings=progress.bookings,
        refunded=progress.refunded,
        pending=progress.pending,
        refused=progress.refused,
        refunded_cents=progress.refunded_cents,
        requested_at=progress.requested_at.astimezone(UTC).isoformat(),
        completed_at=None if completed is None else completed.astimezone(UTC).isoformat(),
    )


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key", "")
    if not 1 <= len(key) <= 128 or not key.isprintable():
        raise InvalidRequest("send an Idempotency-Key header (1-128 printable characters)")
    return key


def _event_view(sale: SaleStatus, waitroom_url: str, difficulty: int) -> EventView:
    spec = sale.spec
    return EventView(
        id=sale.event_id,
        name=spec.name,
        state=sale.state,
        opens_at=spec.opens_at.astimezone(UTC).isoformat(),
        max_per_order=spec.max_per_order,
        hold_seconds=spec.hold_seconds,
        max_active_holds=sale.max_active_holds,
        admissions_per_minute=sale.admissions_per_minute,
        admitted=sale.admitted,
        queue_length=sale.queue_length,
        active_holds=sale.active_holds,
        sections=[
            SectionAvailability(s.id, s.price_cents, s.capacity, s.free, s.held, s.sold)
            for s in sale.sections
        ],
        waitroom_url=waitroom_url,
        currency=spec.currency,
        buyer_refunds=spec.buyer_refunds,
        refund_until=None
        if spec.refund_until is None
        else spec.refund_until.astimezone(UTC).isoformat(),
        identity=None if spec.identity is None else spec.identity.kind,
        max_per_person=spec.max_per_person,
        challenge_difficulty=difficulty,
    )


def _event_summary(sale: SaleStatus) -> EventSummary:
    prices = [s.price_cents for s in sale.sections]
    return EventSummary(
        id=sale.event_id,
        name=sale.spec.name,
        state=sale.state,
        opens_at=sale.spec.opens_at.astimezone(UTC).isoformat(),
        currency=sale.spec.currency,
        min_price_cents=min(prices),
        max_price_cents=max(prices),
        capacity=sum(s.capacity for s in sale.sections),
        free=sum(s.free for s in sale.sections),
        held=sum(s.held for s in sale.sections),
        sold=sum(s.sold for s in sale.sections),
        queue_length=sale.queue_length,
    )


#: Events listed at most, and by default.
_LIST_MAX, _LIST_DEFAULT = 100, 50


#: What a created event's id leads to (for clients and for stateful testing).
_EVENT_LINKS = {
    name: (target, {"event_id": "$response.body#/id"})
    for name, target in (
        ("GetEvent", "get_event"),
        ("Pause", "pause"),
        ("Resume", "resume"),
        ("Close", "close"),
        ("SetAdmission", "set_admission"),
        ("Audit", "audit"),
        ("WaitroomPage", "waitroom_page"),
        ("TicketKey", "ticket_key"),
    )
}


@operation(
    request=EventSpec,
    answers={201: CreatedEvent},
    errors=[400, 401, 408, 429, 503],
    credentials="admin",
    links=_EVENT_LINKS,
    example={
        "name": "Evening concert",
        "opens_at": "2030-06-01T18:00:00Z",
        "max_per_order": 4,
        "hold_seconds": 120,
        "max_active_holds": 500,
        "sections": [
            {"id": "stalls", "price_cents": 4500, "rows": [{"label": "A", "seats": 20}]},
            {"id": "standing", "price_cents": 2500, "capacity": 300},
        ],
    },
)
async def create_event(request: Request) -> Response:
    """``POST /v1/events``: create an event; its id and WebSocket URL."""
    await _require_admin(request)
    state = _state(request)
    spec = await _body(request, EventSpec)
    event_id = await state.engine.sales.create(spec, _admin_actor(request))
    return json_response(
        CreatedEvent(event_id, state.waitroom_url(event_id, request.headers.get("host"))),
        status=201,
    )


@operation(
    answers={200: EventList},
    errors=[400, 503],
    query={"limit": f"how many events, newest first: 1-{_LIST_MAX} (default {_LIST_DEFAULT})"},
)
async def list_events(request: Request) -> Response:
    """``GET /v1/events``: the newest events with their state, prices and seats (aggregates)."""
    raw = request.query_params.get("limit", str(_LIST_DEFAULT))
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= _LIST_MAX):
        raise InvalidRequest(f"limit must be a whole number from 1 to {_LIST_MAX}")
    sales = await _state(request).engine.sales.newest(int(raw))
    return json_response(EventList([_event_summary(sale) for sale in sales]))


@operation(answers={200: EventView}, errors=[404, 503])
async def get_event(request: Request) -> Response:
    """``GET /v1/events/{id}``: the event's sale now: state, caps, line, seats per section,
    and what a join must bring (identity, proof of work at its live difficulty)."""
    state = _state(request)
    event_id = request.path_params["event_id"]
    sale = await state.engine.sales.status(event_id)
    difficulty = (
        sale.spec.challenge_difficulty
        if state.challenges is None
        else await state.challenges.difficulty(event_id)
    )
    url = state.waitroom_url(event_id, request.headers.get("host"))
    return json_response(_event_view(sale, url, difficulty))


async def _change_state(
    request: Request, change: Callable[[Sales, str, Actor], Awaitable[EventState]]
) -> Response:
    """Pause, resume or close the event of the path (admin only): its new state."""
    await _require_admin(request)
    event_id = request.path_params["event_id"]
    new_state = await change(_state(request).engine.sales, event_id, _admin_actor(request))
    return json_response(StateView(event_id, new_state))


@operation(answers={200: StateView}, errors=[401, 404, 409, 429, 503], credentials="admin")
async def pause(request: Request) -> Response:
    """``POST /v1/events/{id}/pause``: stop admission (409 unless the event is open)."""
    return await _change_state(request, Sales.pause)


@operation(answers={200: StateView}, errors=[401, 404, 409, 429, 503], credentials="admin")
async def resume(request: Request) -> Response:
    """``POST /v1/events/{id}/resume``: restart admission (409 unless the event is paused)."""
    return await _change_state(request, Sales.resume)


@operation(answers={200: StateView}, errors=[401, 404, 409, 429, 503], credentials="admin")
async def close(request: Request) -> Response:
    """``POST /v1/events/{id}/close``: end the sale: no more joins or admissions (409 if closed)."""
    return await _change_state(request, Sales.close)


@operation(
    request=AdmissionBody,
    answers={200: AdmissionView},
    example={"max_active_holds": 300, "admissions_per_minute": 6000},
    errors=[400, 401, 404, 408, 429, 503],
    credentials="admin",
)
async def set_admission(request: Request) -> Response:
    """``PATCH /v1/events/{id}/admission``: change the admission caps; the caps in force."""
    await _require_admin(request)
    engine = _state(request).engine
    event_id = request.path_params["event_id"]
    await engine.catalog.get(event_id)  # an unknown event is a 404 whatever the body
    body = await _body(request, AdmissionBody)
    caps = await engine.sales.set_admission(
        event_id,
        max_active_holds=body.max_active_holds,
        admissions_per_minute=body.admissions_per_minute,
        actor=_admin_actor(request),
    )
    return json_response(AdmissionView(event_id, caps.max_active, caps.rate_per_min))


def _challenges(request: Request) -> JoinChallenges:
    challenges = _state(request).challenges
    if challenges is None:
        raise Unavailable("join challenges are not served here", retry_after_s=60)
    return challenges


@operation(answers={200: ChallengeView}, errors=[404, 429, 503])
async def get_challenge(request: Request) -> Response:
    """``GET /v1/events/{id}/challenge``: a new proof-of-work challenge to solve before
    joining (ALTCHA v2, SHA-256; ``difficulty`` 0: joins need none now). It expires in 5
    minutes and its solution joins once."""
    await _limit(request, "challenge")
    event_id = request.path_params["event_id"]
    await _state(request).engine.catalog.get(event_id)
    challenge, difficulty = await _challenges(request).issue(event_id)
    return json_response(
        ChallengeView(challenge, difficulty), headers={"Cache-Control": "no-store"}
    )


@operation(
    request=ChallengeBody,
    answers={200: ChallengeBody},
    example={"difficulty": 200_000},
    errors=[400, 401, 404, 408, 429, 503],
    credentials="admin",
)
async def set_challenge(request: Request) -> Response:
    """``PUT /v1/events/{id}/challenge``: change the join challenge's difficulty live (its
    counter range: about 0.75 x this many SHA-256 hashes per join; 0: none). Every
    process applies it within a second."""
    await _require_admin(request)
    event_id = request.path_params["event_id"]
    await _state(request).engine.catalog.get(event_id)
    body = await _body(request, ChallengeBody)
    await _challenges(request).set_difficulty(event_id, body.difficulty)
    return json_response(body)


@operation(
    answers={200: AuditView},
    errors=[401, 404, 429, 503],
    credentials="admin",
    query={"settled": "1: also require PostgreSQL to agree with Redis (no payment in flight)"},
)
async def audit(request: Request) -> Response:
    """``GET /v1/events/{id}/audit``: the event's invariants checked now."""
    await _require_admin(request)
    event_id = request.path_params["event_id"]
    settled = request.query_params.get("settled") == "1"
    result = await _state(request).engine.sales.audit(event_id, settled=settled)
    return json_response(AuditView(ok=result.ok, **msgspec.structs.asdict(result)))


@operation(
    request=PaymentBody,
    answers={200: BookingView},
    example={"card_token": "tok_visa", "email": "buyer@example.com"},
    links={
        "GetBooking": ("get_booking", {"booking_id": "$response.body#/id"}),
        "TicketsPdf": ("tickets_pdf", {"booking_id": "$response.body#/id"}),
    },
    errors=[400, 401, 402, 403, 404, 408, 409, 429, 503, 504],
    credentials="hold",
    headers={"Idempotency-Key": "1-128 printable characters; a retry with the same key pays once"},
)
async def pay(request: Request) -> Response:
    """``POST /v1/holds/{id}/payment``: pay for a hold; the booking is durable before the answer.

    The answer's ``booking_token`` reads the booking long after the hold token ran out;
    with an ``email`` the confirmation mail and PDF tickets go there (sent after the answer).
    """
    engine = _state(request).engine
    await _limit(request, "payment")
    hold = request.path_params["hold_id"]
    event_id, seq = engine.holds.authorize_payment(_bearer(request), hold)
    key = request.headers.get("idempotency-key", "")
    if not 1 <= len(key) <= 128 or not key.isprintable():
        raise InvalidRequest("send an Idempotency-Key header (1-128 printable characters)")
    body = await _body(request, PaymentBody)
    await _limit(request, "payment_hold", hold=hold)  # what reaches the gateway, per hold
    booking = await engine.checkout.pay(
        PaymentRequest(event_id, seq, key, body.card_token, email=body.email)
    )
    return json_response(await _booking_view(engine, booking))


@operation(answers={200: ReleasedView}, errors=[401, 403, 404, 409, 429, 503], credentials="hold")
async def release_hold(request: Request) -> Response:
    """``DELETE /v1/holds/{id}``: give the seats back before the deadline (the holder only);
    they go to the next in line, and the holder is told ``expired`` on the WebSocket."""
    engine = _state(request).engine
    await _limit(request, "release")
    hold = request.path_params["hold_id"]
    event_id, seq = engine.holds.authorize_payment(_bearer(request), hold)
    await _limit(request, "release_hold", hold=hold)
    await engine.checkout.release(event_id, seq)
    return json_response(ReleasedView(hold, "released"))


@operation(
    answers={200: BookingView}, errors=[401, 403, 404, 429, 503], credentials="admin_or_hold"
)
async def get_booking(request: Request) -> Response:
    """``GET /v1/bookings/{id}``: a booking and its tickets, to its holder or an admin."""
    engine = _state(request).engine
    booking = await _readable_booking(request)
    return json_response(await _booking_view(engine, booking))


async def _readable_booking(request: Request, route: str = "booking") -> Booking:
    """The booking of the path, if the caller is an admin or holds its hold or booking token.

    Within ``route``'s limits (per address, then per hold or admin key), and credentials
    before the lookup: an unknown id must not answer differently."""
    engine = _state(request).engine
    await _limit(request, route)
    if _is_admin(request):
        await _limit(request, f"{route}_admin", admin=True)
        return await engine.bookings.get(request.path_params["booking_id"])
    token = _bearer(request)
    hold = engine.holds.reader(token)
    await _limit(request, f"{route}_hold", hold=hold)
    booking = await engine.bookings.get(request.path_params["booking_id"])
    engine.holds.authorize_reading(token, booking.hold_id)
    return booking


# -- tickets in the buyer's hands ------------------------------------------------------

_PDF = "application/pdf"
_SVG = "image/svg+xml"


@operation(answers={200: TicketKeyView}, errors=[404, 503])
async def ticket_key(request: Request) -> Response:
    """``GET /v1/events/{id}/ticket-key``: the Ed25519 public key that verifies the event's
    ticket codes offline (a scanner keeps it; no call per scan)."""
    engine = _state(request).engine
    event_id = request.path_params["event_id"]
    await engine.catalog.get(event_id)  # an unknown event is a 404
    return json_response(
        TicketKeyView(
            event_id=event_id,
            algorithm="Ed25519",
            public_key=engine.tickets.public_key,
            code_format=f"{CODE_VERSION}.<event>.<booking>.<section>.<position>.<signature>",
        )
    )


@operation(answers={200: _PDF}, errors=[401, 403, 404, 429, 503], credentials="admin_or_hold")
async def tickets_pdf(request: Request) -> Response:
    """``GET /v1/bookings/{id}/tickets.pdf``: the printable tickets, one page per ticket with
    its QR code, to its holder (hold or booking token) or an admin."""
    booking = await _readable_booking(request)
    pdf = await _state(request).engine.tickets.pdf(booking)
    return Response(
        pdf,
        media_type=_PDF,
        headers={"Content-Disposition": f'inline; filename="tickets-{booking.id}.pdf"'},
    )


@operation(answers={200: _SVG}, errors=[401, 403, 404, 429, 503], credentials="admin_or_hold")
async def ticket_qr(request: Request) -> Response:
    """``GET /v1/bookings/{id}/tickets/{code}/qr.svg``: a ticket's QR code (SVG, to inline),
    to the booking's holder or an admin."""
    booking = await _readable_booking(request)
    code = request.path_params["code"]
    if code not in {t.code for t in booking.tickets}:
        raise NotFound("no such ticket in this booking")
    return Response(await _state(request).engine.tickets.qr_svg(code), media_type=_SVG)


# -- check-in at the door ------------------------------------------------------------


def _staff_key_view(key: StaffKey) -> StaffKeyView:
    revoked = key.revoked_at.astimezone(UTC).isoformat() if key.revoked_at else None
    created = key.created_at.astimezone(UTC).isoformat()
    return StaffKeyView(key.id, key.event_id, key.label, created, revoked)


@operation(
    request=StaffKeyBody,
    answers={201: CreatedStaffKey},
    errors=[400, 401, 404, 429, 503],
    credentials="admin",
    example={"label": "North gate"},
    links={
        "RevokeStaffKey": (
            "revoke_staff_key",
            {"event_id": "$response.body#/event_id", "key_id": "$response.body#/id"},
        )
    },
)
async def create_staff_key(request: Request) -> Response:
    """``POST /v1/events/{id}/staff-keys``: a staff key of the event for the door (the key is
    in this answer only; it opens the event's check-in and nothing else)."""
    await _require_admin(request)
    engine = _state(request).engine
    event_id = request.path_params["event_id"]
    await engine.catalog.get(event_id)  # an unknown event is a 404 whatever the body
    body = await _body(request, StaffKeyBody)
    made = await engine.checkin.create_key(event_id, body.label, _admin_actor(request))
    view = _staff_key_view(made.staff_key)
    created = CreatedStaffKey(view.id, view.event_id, view.label, view.created_at, made.key)
    return json_response(created, status=201)


def _email_identity(request: Request) -> EmailIdentity:
    email = _state(request).email_identity
    if email is None:
        raise Unavailable("email identity is not served here", retry_after_s=60)
    return email


@operation(
    request=EmailCodeBody,
    answers={202: EmailCodeSent},
    errors=[400, 404, 409, 429, 503],
    example={"email": "buyer@example.org"},
)
async def send_email_code(request: Request) -> Response:
    """``POST /v1/events/{id}/identity/email``: mail a one-time code to the address (an event
    whose ``identity`` is ``email``; an earlier code is replaced). 409 for an event that
    does not verify addresses, or a deployment without an SMTP server; 503 when the SMTP
    server did not take the mail."""
    await _limit(request, "identity_email")
    event_id = request.path_params["event_id"]
    await _state(request).engine.catalog.get(event_id)  # an unknown event is a 404
    body = await _body(request, EmailCodeBody)
    ttl_s = await _email_identity(request).send_code(event_id, body.email)
    return json_response(EmailCodeSent(ttl_s), status=202)


@operation(
    request=EmailVerifyBody,
    answers={200: IdentityTokenView},
    errors=[400, 401, 404, 409, 429, 503],
    example={"email": "buyer@example.org", "code": "042917"},
)
async def verify_email_code(request: Request) -> Response:
    """``POST /v1/events/{id}/identity/verify``: the code mailed to the address, exchanged for
    an identity token (the ``join`` message's ``identity``). 401 ``code_invalid`` for a wrong
    code, ``code_expired`` when none waits (expired, used, or out of its tries)."""
    await _limit(request, "identity_verify")
    event_id = request.path_params["event_id"]
    await _state(request).engine.catalog.get(event_id)
    body = await _body(request, EmailVerifyBody)
    made = await _email_identity(request).verify(event_id, body.email, body.code)
    expires_at = datetime.fromtimestamp(made.expires_s, UTC).isoformat()
    return json_response(IdentityTokenView(made.token, expires_at))


@operation(answers={200: StaffKeyList}, errors=[401, 404, 429, 503], credentials="admin")
async def list_staff_keys(request: Request) -> Response:
    """``GET /v1/events/{id}/staff-keys``: the event's staff keys in force (labels, never keys)."""
    await _require_admin(request)
    keys = await _state(request).engine.checkin.keys(request.path_params["event_id"])
    return json_response(StaffKeyList([_staff_key_view(k) for k in keys]))


@operation(answers={200: StaffKeyView}, errors=[401, 404, 429, 503], credentials="admin")
async def revoke_staff_key(request: Request) -> Response:
    """``DELETE /v1/events/{id}/staff-keys/{key_id}``: revoke a staff key at once (again: no
    change)."""
    await _require_admin(request)
    path = request.path_params
    key = await _state(request).engine.checkin.revoke_key(
        path["event_id"], path["key_id"], _admin_actor(request)
    )
    return json_response(_staff_key_view(key))


@operation(
    request=CheckinBody,
    answers={200: CheckinView, 409: CheckedInBeforeBody},
    errors=[401, 404, 410, 422, 429, 503],
    credentials="staff",
    example={"code": "T-8KQ2-ZJ4M", "gate": "North"},
)
async def checkin(request: Request) -> Response:
    """``POST /v1/checkin``: let a ticket in with a staff key of its event; its seat.

    409 ``already_checked_in`` with when and at which gate it came in; 404 for a code the
    key's event has no ticket of; 410 ``ticket_cancelled``, or ``cancellation_pending``
    while a cancellation of the ticket is under way (its refund not made yet); 422 for a
    body that is not a code and a gate."""
    await _limit(request, "checkin")
    staff_key = _bearer(request)
    await _limit(request, "checkin_key", admin=True)
    try:
        body = await _body(request, CheckinBody)
    except InvalidRequest as exc:
        raise Unprocessable(exc.message) from None
    try:
        done = await _state(request).engine.checkin.check_in(staff_key, body.code, body.gate)
    except AlreadyCheckedIn as exc:
        at = exc.checked_in_at.astimezone(UTC).isoformat()
        before = CheckedInBeforeBody(exc.code, exc.message, at, exc.gate, *exc.seat)
        return json_response(before, status=409)
    at = done.checked_in_at.astimezone(UTC).isoformat()
    view = CheckinView(done.code, done.event_id, done.section, done.row, done.number, done.gate, at)
    return json_response(view)


@operation(
    answers={200: CheckinCountsView}, errors=[401, 403, 404, 429, 503], credentials="admin_or_staff"
)
async def checkin_counts(request: Request) -> Response:
    """``GET /v1/events/{id}/checkins``: the event at the door: live tickets, how many are
    in, how many came in at each gate. To the admin, or with a staff key of the event (403
    for another event's key)."""
    event_id = request.path_params["event_id"]
    engine = _state(request).engine
    if _is_admin(request):
        await _require_admin(request)
    else:
        await _limit(request, "checkin_counts")
        staff_key = _bearer(request)
        await _limit(request, "checkin_counts_key", admin=True)
        await engine.checkin.authorize_counts(event_id, staff_key)
    counts = await engine.checkin.counts(event_id)
    return json_response(
        CheckinCountsView(counts.event_id, counts.live_tickets, counts.checked_in, counts.gates)
    )


# -- the report: read models projected from the event log ------------------------------


def _report_view(event_id: str, rows: ReportRows) -> EventReport:
    t = rows.totals
    totals = ReportTotals(
        bookings=t.bookings if t else 0,
        tickets_sold=t.tickets_sold if t else 0,
        revenue_cents=t.revenue_cents if t else 0,
        cancellations=t.cancellations if t else 0,
        bookings_cancelled=t.bookings_cancelled if t else 0,
        tickets_cancelled=t.tickets_cancelled if t else 0,
        refunded_cents=t.refunded_cents if t else 0,
        net_revenue_cents=(t.revenue_cents - t.refunded_cents) if t else 0,
        refunds_refused=t.refunds_refused if t else 0,
        checked_in=t.checked_in if t else 0,
        joined=t.joined if t else 0,
        admitted=t.admitted if t else 0,
        expired=t.expired if t else 0,
        confirmed=t.confirmed if t else 0,
    )
    sections = [
        ReportSection(
            section=s.section,
            capacity=s.capacity,
            price_cents=s.price_cents,
            tickets_sold=s.tickets_sold,
            revenue_cents=s.revenue_cents,
            tickets_cancelled=s.tickets_cancelled,
            refunded_cents=s.refunded_cents,
            net_revenue_cents=s.revenue_cents - s.refunded_cents,
            checked_in=s.checked_in,
        )
        for s in rows.sections
    ]
    minutes = [
        ReportMinute(
            minute=m.minute.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            bookings=m.bookings,
            tickets_sold=m.tickets_sold,
            revenue_cents=m.revenue_cents,
            cancellations=m.cancellations,
            tickets_cancelled=m.tickets_cancelled,
            refunded_cents=m.refunded_cents,
            checked_in=m.checked_in,
            joined=m.joined,
            admitted=m.admitted,
            expired=m.expired,
            confirmed=m.confirmed,
        )
        for m in rows.minutes
    ]
    return EventReport(
        event_id=event_id,
        name=t.name if t else "",
        currency=t.currency if t else "",
        state=t.state if t else "",
        as_of_seq=rows.applied_seq,
        log_seq=rows.log_seq,
        totals=totals,
        sections=sections,
        minutes=minutes,
    )


@operation(answers={200: EventReport}, errors=[401, 404, 429, 503], credentials="admin")
async def event_report(request: Request) -> Response:
    """``GET /v1/events/{id}/report``: the event's sales, revenue, refunds, cancellations,
    check-ins and admissions, in total, per section and per minute (money in minor units of
    ``currency``), from the read models the workers project from its event log."""
    await _require_admin(request)
    event_id = request.path_params["event_id"]
    rows = await _state(request).engine.reports.report(event_id)
    return json_response(_report_view(event_id, rows))


# -- webhooks: the event log POSTed to integrators --------------------------------------


def _webhook_view(row: WebhookRow) -> WebhookView:
    created = row.created_at.astimezone(UTC).isoformat()
    return WebhookView(
        row.id,
        row.event_id,
        row.url,
        row.state,
        created,
        row.pending,
        row.dead,
        row.delivered,
        row.batch,
    )


@operation(
    request=WebhookBody,
    answers={201: CreatedWebhook},
    errors=[400, 401, 404, 408, 429, 503],
    credentials="admin",
    example={"url": "https://integrator.example/booking-events", "batch": True},
    links={
        "RemoveWebhook": (
            "remove_webhook",
            {"event_id": "$response.body#/event_id", "webhook_id": "$response.body#/id"},
        )
    },
)
async def create_webhook(request: Request) -> Response:
    """``POST /v1/events/{id}/webhooks``: POST the event's log to a URL, each entry signed
    (``Booking-Signature``) with the secret in this answer, shown this once only; with
    ``"batch": true``, up to 50 entries per POST (``{"entries": [...]}``, signed as one)."""
    await _require_admin(request)
    engine = _state(request).engine
    event_id = request.path_params["event_id"]
    await engine.catalog.get(event_id)  # an unknown event is a 404 whatever the body
    body = await _body(request, WebhookBody)
    row = await engine.webhooks.register(
        event_id, body.url, _admin_actor(request), batch=body.batch
    )
    view = _webhook_view(row)
    created = CreatedWebhook(
        view.id, view.event_id, view.url, view.state, view.created_at, row.secret or "", row.batch
    )
    return json_response(created, status=201)


@operation(answers={200: WebhookList}, errors=[401, 404, 429, 503], credentials="admin")
async def list_webhooks(request: Request) -> Response:
    """``GET /v1/events/{id}/webhooks``: the event's webhooks and their queues (no secrets)."""
    await _require_admin(request)
    rows = await _state(request).engine.webhooks.list(request.path_params["event_id"])
    return json_response(WebhookList([_webhook_view(r) for r in rows]))


@operation(answers={200: WebhookView}, errors=[401, 404, 429, 503], credentials="admin")
async def remove_webhook(request: Request) -> Response:
    """``DELETE /v1/events/{id}/webhooks/{webhook_id}``: stop sending to a webhook (what it
    has not been sent is dropped)."""
    await _require_admin(request)
    path = request.path_params
    row = await _state(request).engine.webhooks.remove(
        path["event_id"], path["webhook_id"], _admin_actor(request)
    )
    return json_response(_webhook_view(row))


@operation(answers={200: WebhookView}, errors=[401, 404, 429, 503], credentials="admin")
async def redeliver_webhook(request: Request) -> Response:
    """``POST /v1/events/{id}/webhooks/{webhook_id}/redeliver``: send a dead webhook's queue
    again, in order, from its first undelivered entry (no change for a webhook not dead)."""
    await _require_admin(request)
    path = request.path_params
    row = await _state(request).engine.webhooks.redeliver(
        path["event_id"], path["webhook_id"], _admin_actor(request)
    )
    return json_response(_webhook_view(row))


@operation(
    request=CancelBody,
    answers={200: CancellationView, 202: CancellationView},
    example={"tickets": ["<ticket code>"]},
    errors=[400, 401, 403, 404, 408, 409, 422, 429, 503],
    credentials="admin_or_hold",
    headers={
        "Idempotency-Key": "1-128 printable characters; a retry with the same key cancels "
        "and refunds once, and answers the same"
    },
)
async def cancel_booking(request: Request) -> Response:
    """``POST /v1/bookings/{id}/cancel``: cancel the booking, or the tickets named, and refund
    their prices; 200 once refunded (seats back on sale), 202 while the refund is retried."""
    engine = _state(request).engine
    booking = await _readable_booking(request, "cancel")
    admin = _is_admin(request)
    key = _idempotency_key(request)
    body = await _body(request, CancelBody, CancelBody())
    actor = _admin_actor(request) if admin else _buyer_actor(request)
    cancellation = await engine.cancellations.cancel(
        booking, key, body.tickets, by_admin=admin, actor=actor
    )
    status = 202 if cancellation.status is CancellationStatus.PENDING else 200
    return json_response(_cancellation_view(cancellation), status=status)


@operation(
    answers={202: EventCancellationView},
    errors=[401, 404, 429, 503],
    credentials="admin",
    links={"Progress": ("event_cancellation", {"event_id": "$response.body#/event_id"})},
)
async def cancel_event(request: Request) -> Response:
    """``POST /v1/events/{id}/cancel``: cancel the whole event: the sale closes and the workers
    cancel and refund every live booking (asking again changes nothing); the progress."""
    await _require_admin(request)
    progress = await _state(request).engine.cancellations.cancel_event(
        request.path_params["event_id"], _admin_actor(request)
    )
    return json_response(_event_cancellation_view(progress), status=202)


@operation(answers={200: EventCancellationView}, errors=[401, 404, 429, 503], credentials="admin")
async def event_cancellation(request: Request) -> Response:
    """``GET /v1/events/{id}/cancellation``: how far the event's cancellation got (refunded n
    of m bookings); 404 when the event is not being cancelled."""
    await _require_admin(request)
    progress = await _state(request).engine.cancellations.event_progress(
        request.path_params["event_id"]
    )
    return json_response(_event_cancellation_view(progress))


@operation(answers={200: TEXT})
async def healthz(request: Request) -> Response:
    """``GET /healthz``: the process is alive."""
    return PlainTextResponse("ok")


@operation(answers={200: TEXT}, errors=[503])
async def readyz(request: Request) -> Response:
    """``GET /readyz``: Redis and PostgreSQL answer (503 ``not_ready`` otherwise)."""
    await _state(request).engine.sales.check_ready()
    return PlainTextResponse("ready")


@operation(answers={200: TEXT})
async def metrics(request: Request) -> Response:
    """``GET /metrics``: this process's Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@operation(answers={200: "application/json"})
async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``: this interface as an OpenAPI 3.1 document."""
    return json_response(_documents()[0])


@operation(answers={200: "application/json"})
async def waitroom_schema_json(request: Request) -> Response:
    """``GET /v1/waitroom/schema.json``: the waiting room's WebSocket messages (JSON Schema)."""
    return json_response(_documents()[1])


@operation(answers={200: "text/html"})
async def docs(request: Request) -> Response:
    """``GET /docs``: this interface, to read."""
    return HTMLResponse(_documents()[2])


@cache
def _documents() -> tuple[dict[str, Any], dict[str, Any], str]:
    """The OpenAPI document, the WebSocket schema and the docs page (made once)."""
    document = openapi_document(ROUTES, title="Booking engine", version=API_VERSION)
    schema = waitroom_schema()
    return document, schema, docs_page(document, schema)


OPS_ROUTES = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]

ROUTES = [
    Route("/v1/events", create_event, methods=["POST"]),
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{event_id}", get_event, methods=["GET"]),
    Route("/v1/events/{event_id}/pause", pause, methods=["POST"]),
    Route("/v1/events/{event_id}/resume", resume, methods=["POST"]),
    Route("/v1/events/{event_id}/close", close, methods=["POST"]),
    Route("/v1/events/{event_id}/admission", set_admission, methods=["PATCH"]),
    Route("/v1/events/{event_id}/audit", audit, methods=["GET"]),
    Route("/v1/holds/{hold_id}/payment", pay, methods=["POST"]),
    Route("/v1/holds/{hold_id}", release_hold, methods=["DELETE"]),
    Route("/v1/bookings/{booking_id}", get_booking, methods=["GET"]),
    # check-in at the door
    Route("/v1/events/{event_id}/challenge", get_challenge, methods=["GET"]),
    Route("/v1/events/{event_id}/challenge", set_challenge, methods=["PUT"]),
    Route("/v1/events/{event_id}/identity/email", send_email_code, methods=["POST"]),
    Route("/v1/events/{event_id}/identity/verify", verify_email_code, methods=["POST"]),
    Route("/v1/events/{event_id}/staff-keys", create_staff_key, methods=["POST"]),
    Route("/v1/events/{event_id}/staff-keys", list_staff_keys, methods=["GET"]),
    Route("/v1/events/{event_id}/staff-keys/{key_id}", revoke_staff_key, methods=["DELETE"]),
    Route("/v1/events/{event_id}/checkins", checkin_counts, methods=["GET"]),
    Route("/v1/events/{event_id}/webhooks", create_webhook, methods=["POST"]),
    Route("/v1/events/{event_id}/webhooks", list_webhooks, methods=["GET"]),
    Route("/v1/events/{event_id}/report", event_report, methods=["GET"]),
    Route("/v1/events/{event_id}/webhooks/{webhook_id}", remove_webhook, methods=["DELETE"]),
    Route(
        "/v1/events/{event_id}/webhooks/{webhook_id}/redeliver",
        redeliver_webhook,
        methods=["POST"],
    ),
    Route("/v1/checkin", checkin, methods=["POST"]),
    Route("/v1/events/{event_id}/ticket-key", ticket_key, methods=["GET"]),
    Route("/v1/bookings/{booking_id}/tickets.pdf", tickets_pdf, methods=["GET"]),
    Route("/v1/bookings/{booking_id}/tickets/{code}/qr.svg", ticket_qr, methods=["GET"]),
    Route("/v1/bookings/{booking_id}/cancel", cancel_booking, methods=["POST"]),
    Route("/v1/events/{event_id}/cancel", cancel_event, methods=["POST"]),
    Route("/v1/events/{event_id}/cancellation", event_cancellation, methods=["GET"]),
    Route("/v1/waitroom/schema.json", waitroom_schema_json, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    *page_routes(),
    *OPS_ROUTES,
]


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    return handle_booking_error(
        request, Unavailable("a backing service is unreachable; retry shortly")
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 404)
    if code == 404 and request.method == "GET" and wants_html(request):
        return not_found_page()
    return error_response(
        code, "not_found" if code == 404 else "http_error", str(getattr(exc, "detail", ""))
    )


async def _body_timeout(request: Request, exc: Exception) -> Response:
    # CloseEarlyAnswers closes the connection: the body never came to its end.
    return error_response(408, "body_timeout", "the request body did not arrive in time")


async def _client_left(request: Request, exc: Exception) -> Response:
    # Not an error: the client went away mid-body. Nobody reads this answer.
    logger.debug("%s %s: the client disconnected mid-body", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client disconnected")


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "something went wrong on our side")


_HANDLERS: dict[Any, Any] = {
    Exception: _unexpected,
    BookingError: handle_booking_error,
    StorageUnavailable: _storage_unavailable,
    BodyTimeout: _body_timeout,
    ClientDisconnect: _client_left,
    404: _not_found,
    405: _not_found,
}


class CloseEarlyAnswers:
    """Closes the connection after an answer sent before the request body was read to
    its end (an early 400/401/408/429), and reads the unread rest away meanwhile.

    Without this, hypercorn waits for the body forever: its queue of body chunks for the
    application fills once the handler stops reading, and ending the answer (which
    queues a disconnect behind them) then waits for room that never comes.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = True  # no body: no Content-Length (or 0) and no Transfer-Encoding
        for name, value in scope["headers"]:
            if name == b"transfer-encoding" or (
                name == b"content-length" and value not in (b"0", b"")
            ):
                body_done = False

        async def tracked_receive() -> Any:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def drain() -> None:
            """Discard what the client still sends until the connection closes (bounded)."""
            with anyio.move_on_after(_DRAIN_S):
                while (await receive())["type"] != "http.disconnect":
                    pass

        async def closing_send(message: Any) -> None:
            if body_done:  # the usual case: the whole body was read before the answer
                await send(message)
            elif message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                await send({**message, "headers": headers})
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # The server takes the answer's end only once the unread body is out of
                # its way: the rest is read away meanwhile (a task group only here).
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain)
                    await send(message)
            else:
                await send(message)

        await self.app(scope, tracked_receive, closing_send)


#: Longest the rest of an unread body is read away after an early answer, seconds.
_DRAIN_S = 5


def _starlette(routes: list[Route], state: HttpState) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"http": state}

    app = Starlette(
        routes=routes,
        exception_handlers=_HANDLERS,
        lifespan=lifespan,
        middleware=[Middleware(CloseEarlyAnswers)],
    )
    # A trailing slash (an id ending in an encoded "/") is a 404 JSON error, not a redirect.
    app.router.redirect_slashes = False
    return app


def create_app(state: HttpState) -> Starlette:
    """The HTTP application: v1 routes, pages, health and metrics."""
    return _starlette(ROUTES, state)


def create_ops_app(state: HttpState) -> Starlette:
    """Health and metrics only: what a worker serves."""
    return _starlette(OPS_ROUTES, state)
