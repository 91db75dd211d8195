"""The domain's errors; the API maps each to an HTTP status in one place.

Exception tree::

    BookingError
    ├── InvalidRequest       bad input (400)
    │   └── Unprocessable    well-formed, but meaningless (422)
    ├── Unauthorized         missing or forged credentials (401)
    ├── Forbidden            valid credentials, not yours (403)
    ├── NotFound             no such event, hold or booking (404)
    ├── Conflict             the state forbids it (409)
    │   ├── InvalidState     an event's state forbids the change
    │   ├── HoldExpired
    │   ├── PaymentInProgress
    │   ├── AlreadyPaid
    │   ├── AlreadyCancelled      no live ticket of the booking (or this one) is left
    │   ├── TicketNotInBooking
    │   ├── TicketCheckedIn       a ticket used at the door is not cancelled
    │   ├── CancellationInProgress
    │   ├── RefundNotAllowed      the event's refund policy refuses the buyer
    │   ├── RefundRefused         the gateway refused the refund for good
    │   └── KeyReused             an idempotency key sent again with another request
    ├── PaymentDeclined      the gateway refused the card (402)
    ├── PaymentTimeout       the gateway did not answer in time (504)
    └── Unavailable          a backing service is down; retry later (503)
        └── NotReady         this process cannot serve yet (readiness)

    StorageError             a store failed (from ``storage/``, re-exported here so that
    └── StorageUnavailable   the edges catch them without importing a store): mapped to 503
"""

from __future__ import annotations

from storage.errors import StorageError, StorageUnavailable

__all__ = [
    "AlreadyCancelled",
    "AlreadyPaid",
    "BookingError",
    "CancellationInProgress",
    "Conflict",
    "Forbidden",
    "HoldExpired",
    "InvalidRequest",
    "InvalidState",
    "KeyReused",
    "NotFound",
    "NotReady",
    "PaymentDeclined",
    "PaymentInProgress",
    "PaymentTimeout",
    "RefundNotAllowed",
    "RefundRefused",
    "StorageError",
    "StorageUnavailable",
    "TicketCheckedIn",
    "TicketNotInBooking",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
]


class BookingError(Exception):
    """Base of every domain error; ``code`` is the stable machine-readable name."""

    code = "booking_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message  # shown to the client


class InvalidRequest(BookingError):
    """The request is malformed or out of range."""

    code = "invalid_request"


class Unprocessable(InvalidRequest):
    """The request is well-formed but asks for something meaningless (an empty list)."""

    code = "unprocessable"


class Unauthorized(BookingError):
    """Credentials are missing, forged or expired."""

    code = "unauthorized"


class Forbidden(BookingError):
    """Credentials are valid but do not cover this resource."""

    code = "forbidden"


class NotFound(BookingError):
    """The named resource does not exist."""

    code = "not_found"


class Conflict(BookingError):
    """The resource's state does not allow this."""

    code = "conflict"


class InvalidState(Conflict):
    """The event's state does not allow this change (e.g. pausing a closed event)."""

    code = "invalid_state"


class HoldExpired(Conflict):
    """The hold ran out before payment began."""

    code = "hold_expired"


class PaymentInProgress(Conflict):
    """Another payment for this hold is running."""

    code = "payment_in_progress"


class AlreadyPaid(Conflict):
    """The hold was paid with another idempotency key."""

    code = "already_paid"

    def __init__(self, message: str, booking_id: str | None) -> None:
        super().__init__(message)
        self.booking_id = booking_id  # the booking that paid it


class AlreadyCancelled(Conflict):
    """The booking, or a ticket asked for, was cancelled already."""

    code = "already_cancelled"


class TicketNotInBooking(Conflict):
    """A ticket code asked for is not one of the booking's tickets."""

    code = "ticket_not_in_booking"


class TicketCheckedIn(Conflict):
    """A ticket asked for was used at the door already: it cannot be cancelled."""

    code = "ticket_checked_in"


class CancellationInProgress(Conflict):
    """Another cancellation of the same tickets is under way."""

    code = "cancellation_in_progress"


class RefundNotAllowed(Conflict):
    """The event's refund policy does not let a buyer cancel (now)."""

    code = "refund_not_allowed"


class RefundRefused(Conflict):
    """The payment provider refused the refund for good; the tickets stay live."""

    code = "refund_refused"


class KeyReused(Conflict):
    """The idempotency key was used before for another request."""

    code = "idempotency_key_reused"


class PaymentDeclined(BookingError):
    """The payment gateway declined the card."""

    code = "payment_declined"


class PaymentTimeout(BookingError):
    """The payment gateway did not answer in time; nothing was booked."""

    code = "payment_timeout"


class Unavailable(BookingError):
    """Redis or PostgreSQL is unreachable; the request changed nothing durable."""

    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # what the client should wait before retrying


class NotReady(Unavailable):
    """Redis or PostgreSQL does not answer: this process cannot serve requests yet."""

    code = "not_ready"
