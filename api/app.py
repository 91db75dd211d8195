"""The Starlette application: v1 REST routes, health, metrics."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import UTC
from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.errors import error_response, handle_booking_error
from api.pages import page_routes
from api.responses import json_response
from api.schemas import (
    AdmissionBody,
    AdmissionView,
    BookingView,
    CreatedEvent,
    EventView,
    PaymentBody,
    SectionAvailability,
    TicketView,
)
from api.services import Services
from engine.audit import audit_event
from engine.checkout import PaymentRequest, parse_hold_id
from engine.errors import (
    BookingError,
    Forbidden,
    HoldExpired,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unavailable,
)
from engine.events import EventSpec
from storage.errors import StorageError, StorageUnavailable
from storage.pg_records import BookingRow
from waitroom.tokens import Claims, InvalidToken, TokenExpired, TokenKind

__all__ = ["create_app", "create_ops_app"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <token>")
    return token.strip()


def _is_admin(services: Services, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), services.settings.admin_key.encode()
    )


def _require_admin(services: Services, request: Request) -> None:
    _bearer(request)
    if not _is_admin(services, request):
        raise Unauthorized("admin key required")


async def _body(request: Request, kind: type[T], limit: int) -> T:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise InvalidRequest(f"body larger than {limit} bytes")
    raw = b""
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            raw += chunk
            if len(raw) > limit:
                raise InvalidRequest(f"body larger than {limit} bytes")
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"invalid body: {exc}") from None


def _hold_claims(services: Services, request: Request, *, expired_ok: bool = False) -> Claims:
    """The claims of the request's genuine hold token; else 401.

    An expired token is refused too unless ``expired_ok``: a payment asks for it,
    to answer 409 ``hold_expired`` (the token outlives its hold by the payment window).
    """
    try:
        return services.signer.verify(
            _bearer(request), TokenKind.HOLD, services.clock.now_ms() / 1000
        )
    except InvalidToken as exc:
        if expired_ok and isinstance(exc, TokenExpired):
            return exc.claims
        raise Unauthorized(f"hold token refused: {exc}") from None


def _booking_view(row: BookingRow) -> BookingView:
    return BookingView(
        id=row.id,
        event_id=row.event_id,
        hold_id=row.hold_id,
        status=row.status,
        amount_cents=row.amount_cents,
        created_at=row.created_at.isoformat(),
        tickets=[TicketView(t.code, t.section, t.seat_row, t.seat_number) for t in row.tickets],
    )


def create_app(services: Services) -> Starlette:
    """The HTTP application over ``services``."""
    limit = services.settings.max_body_bytes

    async def create_event(request: Request) -> Response:
        _require_admin(services, request)
        spec = await _body(request, EventSpec, limit)
        event_id = await services.catalog.create(spec)
        return json_response(CreatedEvent(event_id, services.waitroom_url(event_id)), status=201)

    async def get_event(request: Request) -> Response:
        event_id = request.path_params["event_id"]
        spec = await services.catalog.get(event_id)
        snap = await services.redis.snapshot(event_id)
        if snap is None:
            raise NotFound(f"no event {event_id!r}")
        st = snap.stats
        return json_response(
            EventView(
                id=event_id,
                name=spec.name,
                state=snap.state,
                opens_at=spec.opens_at.astimezone(UTC).isoformat(),
                max_per_order=spec.max_per_order,
                hold_seconds=spec.hold_seconds,
                max_active_holds=int(snap.meta.get("max_active", spec.max_active_holds)),
                admissions_per_minute=int(snap.meta.get("rate_per_min", 0)),
                admitted=st.get("admitted", 0),
                queue_length=st.get("seq", 0) - st.get("serving", 0),
                active_holds=_active_holds(st),
                sections=[
                    SectionAvailability(
                        s.id,
                        s.price_cents,
                        st.get(f"capacity:{s.id}", 0),
                        st.get(f"free:{s.id}", 0),
                        st.get(f"held:{s.id}", 0),
                        st.get(f"sold:{s.id}", 0),
                    )
                    for s in spec.sections
                ],
                waitroom_url=services.waitroom_url(event_id),
            )
        )

    def admission(action: str) -> Handler:
        async def change(request: Request) -> Response:
            _require_admin(services, request)
            event_id = request.path_params["event_id"]
            await services.catalog.get(event_id)
            result = await services.redis.set_event_state(event_id, action, services.clock.now_ms())
            if not result.ok:
                return error_response(
                    409, "invalid_state", f"cannot {action} an event that is {result.state}"
                )
            return json_response({"id": event_id, "state": result.state})

        return change

    async def set_admission(request: Request) -> Response:
        _require_admin(services, request)
        event_id = request.path_params["event_id"]
        await services.catalog.get(event_id)
        body = await _body(request, AdmissionBody, limit)
        if body.max_active_holds is None and body.admissions_per_minute is None:
            raise InvalidRequest("send max_active_holds and/or admissions_per_minute")
        caps = await services.redis.set_admission(
            event_id, services.clock.now_ms(), body.max_active_holds, body.admissions_per_minute
        )
        return json_response(AdmissionView(event_id, caps.max_active, caps.rate_per_min))

    async def pay(request: Request) -> Response:
        claims = _hold_claims(services, request, expired_ok=True)
        event_id, seq = parse_hold_id(request.path_params["hold_id"])
        if (claims.event_id, claims.seq) != (event_id, seq):
            raise Forbidden("this token is for another hold")
        if claims.expires_s < services.clock.now_ms() / 1000:
            raise HoldExpired("the hold expired; its seats went back on sale")
        key = request.headers.get("idempotency-key", "")
        if not 1 <= len(key) <= 128 or not key.isprintable():
            raise InvalidRequest("send an Idempotency-Key header (1-128 printable characters)")
        body = await _body(request, PaymentBody, limit)
        booking = await services.checkout.pay(
            PaymentRequest(event_id, int(seq), key, body.card_token)
        )
        return json_response(_booking_view(booking))

    async def get_booking(request: Request) -> Response:
        booking = await services.checkout.booking(request.path_params["booking_id"])
        if not _is_admin(services, request):
            claims = _hold_claims(services, request)
            if f"{claims.event_id}.{claims.seq}" != booking.hold_id:
                raise Forbidden("this token is for another booking")
        return json_response(_booking_view(booking))

    async def audit(request: Request) -> Response:
        _require_admin(services, request)
        event_id = request.path_params["event_id"]
        await services.catalog.get(event_id)
        settled = request.query_params.get("settled") == "1"
        result = await audit_event(services.redis, services.pg, event_id, settled=settled)
        return json_response({"ok": result.ok, **msgspec.structs.asdict(result)})

    routes = [
        Route("/v1/events", create_event, methods=["POST"]),
        Route("/v1/events/{event_id}", get_event, methods=["GET"]),
        Route("/v1/events/{event_id}/pause", admission("pause"), methods=["POST"]),
        Route("/v1/events/{event_id}/resume", admission("resume"), methods=["POST"]),
        Route("/v1/events/{event_id}/admission", set_admission, methods=["PATCH"]),
        Route("/v1/events/{event_id}/audit", audit, methods=["GET"]),
        Route("/v1/holds/{hold_id}/payment", pay, methods=["POST"]),
        Route("/v1/bookings/{booking_id}", get_booking, methods=["GET"]),
        *page_routes(),
        *_ops_routes(services),
    ]

    async def storage_unavailable(request: Request, exc: Exception) -> Response:
        return handle_booking_error(
            request, Unavailable("a backing service is unreachable; retry shortly")
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        return error_response(
            code, "not_found" if code == 404 else "http_error", str(getattr(exc, "detail", ""))
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "something went wrong on our side")

    handlers: dict[Any, Any] = {
        Exception: unexpected,
        BookingError: handle_booking_error,
        StorageUnavailable: storage_unavailable,
        404: not_found,
        405: not_found,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    # A trailing slash (an id ending in an encoded "/") is a 404 JSON error, not a redirect.
    app.router.redirect_slashes = False
    return app


def _ops_routes(services: Services) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        try:
            await services.redis.ping()
            await services.pg.ping()
        except StorageError as exc:
            return error_response(503, "not_ready", str(exc))
        return PlainTextResponse("ready")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def create_ops_app(services: Services) -> Starlette:
    """Health and metrics only: what a worker serves."""
    return Starlette(routes=_ops_routes(services))


def _active_holds(stats: dict[str, int]) -> int:
    return stats.get("admitted", 0) - stats.get("expired", 0) - stats.get("confirmed", 0)
