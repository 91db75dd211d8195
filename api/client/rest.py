"""The v1 REST interface, typed: one method per operation, answers decoded into the wire structs."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import anyio
import msgspec

from api.client.transport import HttpTransport, Response
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
    ErrorBody,
    EventCancellationView,
    EventList,
    EventReport,
    EventView,
    IdentityTokenView,
    PaymentBody,
    ReleasedView,
    StaffKeyBody,
    StaffKeyList,
    StaffKeyView,
    StateView,
    TicketKeyView,
    WebhookBody,
    WebhookList,
    WebhookView,
)

__all__ = ["AlreadyCheckedIn", "ApiError", "BookingClient"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_error_decoder = msgspec.json.Decoder(ErrorBody)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}

#: Longest wait between retries of an answer ``503 unavailable``, s (whatever Retry-After says).
MAX_RETRY_WAIT_S = 2.0


class ApiError(Exception):
    """An error answer of the server: its HTTP ``status`` and the body's ``code`` and ``message``.

    ``retry_after_s``: the Retry-After of a 503 (None when absent).
    """

    def __init__(
        self, status: int, code: str, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class AlreadyCheckedIn(ApiError):
    """409 ``already_checked_in`` of a check-in: the ticket came in before; ``before`` says
    when and at which gate (and the seat)."""

    def __init__(self, before: CheckedInBeforeBody) -> None:
        super().__init__(409, before.error, before.message)
        self.before = before  # the first scan: when, at which gate, the seat


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder


def _error(response: Response) -> ApiError:
    retry_after = None
    if response.retry_after is not None:
        try:
            retry_after = float(response.retry_after)
        except ValueError:
            retry_after = None
    try:
        body = _error_decoder.decode(response.content)
    except msgspec.DecodeError:  # not the interface's error shape (a proxy's page, say)
        text = response.content.decode(errors="replace")[:200]
        return ApiError(response.status, "http_error", text, retry_after)
    return ApiError(response.status, body.error, body.message, retry_after)


def _segment(value: str) -> str:
    return quote(value, safe="")


class BookingClient:
    """A client of one deployment's REST interface.

    ``admin_key`` authorises the admin operations (the server answers 401 without
    it). ``unavailable_retries``: how often a payment or a read answered ``503``
    (Redis or PostgreSQL restarting) is sent again, after its Retry-After (at most
    2 s): payments are idempotent by key and reads change nothing; other operations
    are never retried. Every error answer raises :class:`ApiError`; a connection
    that cannot be made raises ``ConnectionError``; a call longer than ``timeout_s``
    (None: no limit) raises ``TimeoutError``.

    Use it as an async context manager (or call :meth:`aclose`), on trio or asyncio.
    """

    def __init__(
        self,
        base_url: str,
        *,
        admin_key: str | None = None,
        max_connections: int = 64,
        timeout_s: float | None = 60.0,
        unavailable_retries: int = 0,
    ) -> None:
        self._transport = HttpTransport(base_url, max_connections)
        self._admin = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._timeout_s = timeout_s
        self._retries = unavailable_retries

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: Any = None,
        headers: Mapping[str, str] = {},
        retry: bool = False,
    ) -> T:
        response = await self._request(method, path, body=body, headers=headers, retry=retry)
        if response.status >= 300:
            raise _error(response)
        return _decoder(answer).decode(response.content)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] = {},
        retry: bool = False,
    ) -> Response:
        encoded = None if body is None else _encoder.encode(body)
        retries = self._retries if retry else 0
        while True:
            if self._timeout_s is None:  # the bench's path: no cancel scope per request
                response = await self._transport.request(method, path, encoded, headers)
            else:
                with anyio.fail_after(self._timeout_s):
                    response = await self._transport.request(method, path, encoded, headers)
            if response.status != 503 or retries <= 0:
                return response
            retries -= 1  # a backing service is restarting: wait as told, then the same request
            wait = _error(response).retry_after_s
            await anyio.sleep(min(wait if wait is not None else 1.0, MAX_RETRY_WAIT_S))

    # -- events (admin) ----------------------------------------------------------------

    async def create_event(self, spec: Mapping[str, Any] | msgspec.Struct) -> CreatedEvent:
        """``POST /v1/events``: create an event from its spec (the shape of the OpenAPI
        document's ``EventSpec``: name, opens_at, sections, ...); its id and WebSocket URL."""
        return await self._call("POST", "/v1/events", CreatedEvent, body=spec, headers=self._admin)

    async def events(self, *, limit: int = 20) -> EventList:
        """``GET /v1/events?limit=N``: the newest events (1-100) with state, prices and seats."""
        return await self._call("GET", f"/v1/events?limit={limit}", EventList, retry=True)

    async def event(self, event_id: str) -> EventView:
        """``GET /v1/events/{id}``: the sale now: state, caps, line, seats per section."""
        return await self._call("GET", f"/v1/events/{_segment(event_id)}", EventView, retry=True)

    async def pause(self, event_id: str) -> StateView:
        """``POST /v1/events/{id}/pause``: stop admission (409 ``invalid_state`` unless open)."""
        path = f"/v1/events/{_segment(event_id)}/pause"
        return await self._call("POST", path, StateView, headers=self._admin)

    async def resume(self, event_id: str) -> StateView:
        """``POST /v1/events/{id}/resume``: restart admission (409 unless paused)."""
        path = f"/v1/events/{_segment(event_id)}/resume"
        return await self._call("POST", path, StateView, headers=self._admin)

    async def close(self, event_id: str) -> StateView:
        """``POST /v1/events/{id}/close``: end the sale for good (409 once it is over)."""
        path = f"/v1/events/{_segment(event_id)}/close"
        return await self._call("POST", path, StateView, headers=self._admin)

    async def set_admission(
        self,
        event_id: str,
        *,
        max_active_holds: int | None = None,
        admissions_per_minute: int | None = None,
    ) -> AdmissionView:
        """``PATCH /v1/events/{id}/admission``: change the caps (None keeps one); the caps in force."""
        body = AdmissionBody(max_active_holds, admissions_per_minute)  # null: keep
        path = f"/v1/events/{_segment(event_id)}/admission"
        return await self._call("PATCH", path, AdmissionView, body=body, headers=self._admin)

    async def audit(self, event_id: str, *, settled: bool = False) -> AuditView:
        """``GET /v1/events/{id}/audit``: the invariants checked now (``settled``: PostgreSQL
        must also agree with Redis, so no payment may be in flight)."""
        path = f"/v1/events/{_segment(event_id)}/audit" + ("?settled=1" if settled else "")
        return await self._call("GET", path, AuditView, headers=self._admin, retry=True)

    async def cancel_event(self, event_id: str) -> EventCancellationView:
        """``POST /v1/events/{id}/cancel``: cancel the whole event; the workers refund every
        live booking. Asking again changes nothing; the progress so far."""
        path = f"/v1/events/{_segment(event_id)}/cancel"
        return await self._call("POST", path, EventCancellationView, headers=self._admin)

    async def event_cancellation(self, event_id: str) -> EventCancellationView:
        """``GET /v1/events/{id}/cancellation``: how far the event's cancellation got."""
        path = f"/v1/events/{_segment(event_id)}/cancellation"
        return await self._call("GET", path, EventCancellationView, headers=self._admin, retry=True)

    # -- holds and bookings --------------------------------------------------------------

    async def pay(
        self,
        hold_id: str,
        hold_token: str,
        card_token: str,
        idempotency_key: str,
        *,
        traceparent: str | None = None,
        email: str | None = None,
    ) -> BookingView:
        """``POST /v1/holds/{id}/payment``: pay a hold with the token of its prompt.

        The booking is durable when this returns; its ``booking_token`` reads it later.
        Paying again with the same ``idempotency_key`` answers the same booking; a
        declined card raises ``ApiError`` 402 and the hold stays payable.
        ``traceparent``: the prompt's, when the server traces (the payment joins the
        booking's trace). ``email``: where the confirmation mail with the tickets goes.
        """
        headers = {"Authorization": f"Bearer {hold_token}", "Idempotency-Key": idempotency_key}
        if traceparent:
            headers["traceparent"] = traceparent
        return await self._call(
            "POST",
            f"/v1/holds/{_segment(hold_id)}/payment",
            BookingView,
            body=PaymentBody(card_token, email),
            headers=headers,
            retry=True,
        )

    async def release(self, hold_id: str, hold_token: str) -> ReleasedView:
        """``DELETE /v1/holds/{id}``: give a hold's seats back before its deadline (409
        ``payment_in_progress`` or ``hold_expired`` when it is too late)."""
        path = f"/v1/holds/{_segment(hold_id)}"
        headers = {"Authorization": f"Bearer {hold_token}"}
        return await self._call("DELETE", path, ReleasedView, headers=headers)

    async def booking(self, booking_id: str, *, hold_token: str | None = None) -> BookingView:
        """``GET /v1/bookings/{id}``: a booking and its tickets, read with the hold's token
        or the booking token (its holder) or, without one, the admin key."""
        headers = {"Authorization": f"Bearer {hold_token}"} if hold_token else self._admin
        path = f"/v1/bookings/{_segment(booking_id)}"
        return await self._call("GET", path, BookingView, headers=headers, retry=True)

    # -- proof of work and identity ------------------------------------------------------

    async def challenge(self, event_id: str) -> ChallengeView:
        """``GET /v1/events/{id}/challenge``: a join challenge to solve (``solve_challenge``)."""
        path = f"/v1/events/{_segment(event_id)}/challenge"
        return await self._call("GET", path, ChallengeView, retry=True)

    async def set_challenge(self, event_id: str, difficulty: int) -> ChallengeBody:
        """``PUT /v1/events/{id}/challenge``: the join challenge's difficulty, live (0: none)."""
        path = f"/v1/events/{_segment(event_id)}/challenge"
        return await self._call(
            "PUT", path, ChallengeBody, body=ChallengeBody(difficulty), headers=self._admin
        )

    async def send_email_code(self, event_id: str, email: str) -> EmailCodeSent:
        """``POST /v1/events/{id}/identity/email``: mail a one-time code to ``email`` (an
        event whose identity is ``email``)."""
        path = f"/v1/events/{_segment(event_id)}/identity/email"
        return await self._call("POST", path, EmailCodeSent, body=EmailCodeBody(email))

    async def verify_email_code(self, event_id: str, email: str, code: str) -> IdentityTokenView:
        """``POST /v1/events/{id}/identity/verify``: the mailed code exchanged for an identity
        token to join with (ApiError 401 ``code_invalid`` / ``code_expired`` otherwise)."""
        path = f"/v1/events/{_segment(event_id)}/identity/verify"
        return await self._call("POST", path, IdentityTokenView, body=EmailVerifyBody(email, code))

    async def cancel(
        self,
        booking_id: str,
        idempotency_key: str,
        *,
        tickets: list[str] | None = None,
        hold_token: str | None = None,
    ) -> CancellationView:
        """``POST /v1/bookings/{id}/cancel``: cancel the booking (or the ``tickets`` named by
        code) and refund them, as its holder (``hold_token``) or, without one, the admin.

        ``status`` is ``refunded`` once done (the seats are back on sale) or ``pending``
        while the refund is retried; the same ``idempotency_key`` again answers the same
        cancellation. Refusals raise ``ApiError`` (409 ``already_cancelled``,
        ``ticket_not_in_booking``, ``refund_not_allowed``, ...)."""
        headers = {"Authorization": f"Bearer {hold_token}"} if hold_token else dict(self._admin)
        headers["Idempotency-Key"] = idempotency_key
        path = f"/v1/bookings/{_segment(booking_id)}/cancel"
        return await self._call(
            "POST", path, CancellationView, body=CancelBody(tickets), headers=headers, retry=True
        )

    # -- check-in at the door ------------------------------------------------------------

    async def create_staff_key(self, event_id: str, label: str) -> CreatedStaffKey:
        """``POST /v1/events/{id}/staff-keys``: a staff key for the event's door; its ``key``
        is in this answer only."""
        path = f"/v1/events/{_segment(event_id)}/staff-keys"
        return await self._call(
            "POST", path, CreatedStaffKey, body=StaffKeyBody(label), headers=self._admin
        )

    async def staff_keys(self, event_id: str) -> StaffKeyList:
        """``GET /v1/events/{id}/staff-keys``: the event's staff keys in force (no keys)."""
        path = f"/v1/events/{_segment(event_id)}/staff-keys"
        return await self._call("GET", path, StaffKeyList, headers=self._admin, retry=True)

    async def revoke_staff_key(self, event_id: str, key_id: str) -> StaffKeyView:
        """``DELETE /v1/events/{id}/staff-keys/{key_id}``: revoke a staff key at once."""
        path = f"/v1/events/{_segment(event_id)}/staff-keys/{_segment(key_id)}"
        return await self._call("DELETE", path, StaffKeyView, headers=self._admin)

    async def report(self, event_id: str) -> EventReport:
        """``GET /v1/events/{id}/report``: the event's sales, revenue, refunds, cancellations,
        check-ins and admissions, in total, per section and per minute (minor units)."""
        path = f"/v1/events/{_segment(event_id)}/report"
        return await self._call("GET", path, EventReport, headers=self._admin, retry=True)

    # -- webhooks -------------------------------------------------------------------------

    async def create_webhook(
        self, event_id: str, url: str, *, batch: bool = False
    ) -> CreatedWebhook:
        """``POST /v1/events/{id}/webhooks``: POST the event's log to ``url`` (with
        ``batch``, up to 50 entries per POST); the signing ``secret`` is in this answer
        only."""
        path = f"/v1/events/{_segment(event_id)}/webhooks"
        return await self._call(
            "POST", path, CreatedWebhook, body=WebhookBody(url, batch), headers=self._admin
        )

    async def webhooks(self, event_id: str) -> WebhookList:
        """``GET /v1/events/{id}/webhooks``: the event's webhooks and their queues."""
        path = f"/v1/events/{_segment(event_id)}/webhooks"
        return await self._call("GET", path, WebhookList, headers=self._admin, retry=True)

    async def remove_webhook(self, event_id: str, webhook_id: str) -> WebhookView:
        """``DELETE /v1/events/{id}/webhooks/{webhook_id}``: stop sending to a webhook."""
        path = f"/v1/events/{_segment(event_id)}/webhooks/{_segment(webhook_id)}"
        return await self._call("DELETE", path, WebhookView, headers=self._admin)

    async def redeliver_webhook(self, event_id: str, webhook_id: str) -> WebhookView:
        """``POST /v1/events/{id}/webhooks/{webhook_id}/redeliver``: send a dead webhook's
        queue again, in order."""
        path = f"/v1/events/{_segment(event_id)}/webhooks/{_segment(webhook_id)}/redeliver"
        return await self._call("POST", path, WebhookView, headers=self._admin)

    async def checkin(self, staff_key: str, code: str, gate: str) -> CheckinView:
        """``POST /v1/checkin``: let the ticket ``code`` in at ``gate``; its seat.

        Raises :class:`AlreadyCheckedIn` (409, with when and at which gate) for a ticket in
        already, and ``ApiError`` 404 (no such ticket for the key's event), 410
        (``ticket_cancelled``, or ``cancellation_pending`` while its refund is under way),
        401 (not a staff key in force) or 422 (bad code or gate). A scan is not retried:
        the door scans again.
        """
        headers = {"Authorization": f"Bearer {staff_key}"}
        response = await self._request(
            "POST", "/v1/checkin", body=CheckinBody(code, gate), headers=headers
        )
        if response.status == 409:
            try:
                before = _decoder(CheckedInBeforeBody).decode(response.content)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise _error(response) from None
            raise AlreadyCheckedIn(before)
        if response.status >= 300:
            raise _error(response)
        return _decoder(CheckinView).decode(response.content)

    async def checkins(self, event_id: str, *, staff_key: str | None = None) -> CheckinCountsView:
        """``GET /v1/events/{id}/checkins``: live tickets, how many are in, and by gate; with
        the admin key, or ``staff_key`` (a staff key of the event)."""
        path = f"/v1/events/{_segment(event_id)}/checkins"
        headers = self._admin if staff_key is None else {"Authorization": f"Bearer {staff_key}"}
        return await self._call("GET", path, CheckinCountsView, headers=headers, retry=True)

    # -- tickets -------------------------------------------------------------------------

    async def ticket_key(self, event_id: str) -> TicketKeyView:
        """``GET /v1/events/{id}/ticket-key``: the Ed25519 public key that verifies the
        event's ticket codes offline (``engine.ticket_codes.verify_ticket_code``)."""
        path = f"/v1/events/{_segment(event_id)}/ticket-key"
        return await self._call("GET", path, TicketKeyView, retry=True)

    async def tickets_pdf(self, booking_id: str, *, token: str | None = None) -> bytes:
        """``GET /v1/bookings/{id}/tickets.pdf``: the printable tickets (one page each),
        with the booking or hold token or, without one, the admin key."""
        headers = {"Authorization": f"Bearer {token}"} if token else self._admin
        path = f"/v1/bookings/{_segment(booking_id)}/tickets.pdf"
        return await self._content("GET", path, headers)

    async def ticket_qr(self, booking_id: str, code: str, *, token: str | None = None) -> str:
        """``GET /v1/bookings/{id}/tickets/{code}/qr.svg``: a ticket's QR code as SVG."""
        headers = {"Authorization": f"Bearer {token}"} if token else self._admin
        path = f"/v1/bookings/{_segment(booking_id)}/tickets/{_segment(code)}/qr.svg"
        return (await self._content("GET", path, headers)).decode()

    async def _content(self, method: str, path: str, headers: Mapping[str, str]) -> bytes:
        response = await self._request(method, path, headers=headers, retry=True)
        if response.status >= 300:
            raise _error(response)
        return response.content

    # -- operations ----------------------------------------------------------------------

    async def ready(self) -> bool:
        """``GET /readyz``: whether Redis and PostgreSQL answer (False on ``503 not_ready``)."""
        response = await self._request("GET", "/readyz")
        if response.status == 503:
            return False
        if response.status != 200:
            raise _error(response)
        return True

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text of the process that answers."""
        response = await self._request("GET", "/metrics")
        if response.status != 200:
            raise _error(response)
        return response.content.decode()
