"""The domain's errors; the API maps each to an HTTP status in one place.

Exception tree::

    BookingError
    ├── InvalidRequest       bad input (400/422)
    │   └── Unprocessable    well-formed, but not a valid request of the operation (422)
    ├── Unauthorized         missing or forged credentials (401)
    │   └── IdentityRefused  an identity token or email code not accepted (``code`` says why)
    ├── Forbidden            valid credentials, not yours (403)
    │   └── ChallengeRefused a join's proof of work missing, wrong, expired or replayed
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
    │   ├── KeyReused             an idempotency key sent again with another request
    │   └── AlreadyCheckedIn a ticket scanned again at the door
    ├── Gone                 the resource exists but is no longer valid (410)
    │   ├── TicketNotLive    a cancelled ticket scanned at the door
    │   └── TicketBeingCancelled  a ticket scanned while its cancellation is pending
    ├── PaymentDeclined      the gateway refused the card (402)
    ├── PaymentTimeout       the gateway did not answer in time (504)
    ├── RateLimited          too many requests from this client or for this hold (429)
    └── Unavailable          a backing service is down; retry later (503)
        └── NotReady         this process cannot serve yet (readiness)

    StorageError             a store failed (from ``storage/``, re-exported here so that
    └── StorageUnavailable   the edges catch them without importing a store): mapped to 503
"""

from __future__ import annotations

from datetime import datetime

from storage.errors import StorageError, StorageUnavailable

__all__ = [
    "AlreadyCancelled",
    "AlreadyCheckedIn",
    "AlreadyPaid",
    "BookingError",
    "CancellationInProgress",
    "ChallengeRefused",
    "Conflict",
    "Forbidden",
    "Gone",
    "HoldExpired",
    "IdentityRefused",
    "InvalidRequest",
    "InvalidState",
    "KeyReused",
    "NotFound",
    "NotReady",
    "PaymentDeclined",
    "PaymentInProgress",
    "PaymentTimeout",
    "RateLimited",
    "RefundNotAllowed",
    "RefundRefused",
    "StorageError",
    "StorageUnavailable",
    "TicketBeingCancelled",
    "TicketCheckedIn",
    "TicketNotInBooking",
    "TicketNotLive",
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
    """Well-formed HTTP, but not a valid request of the operation: a body that does not
    decode as one, or asks for something meaningless (an empty list) (422)."""

    code = "unprocessable"


class Unauthorized(BookingError):
    """Credentials are missing, forged or expired."""

    code = "unauthorized"


class IdentityRefused(Unauthorized):
    """The proof of who the buyer is was refused; ``code`` says why: ``identity_required``,
    ``identity_invalid`` (malformed, forged, unknown key), ``identity_expired``,
    ``identity_wrong_audience``, ``identity_wrong_issuer``, ``identity_unavailable`` (its
    keys could not be fetched: retry), ``code_invalid`` / ``code_expired`` (email codes)."""

    code = "identity_invalid"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # why, as the stable machine-readable name


class Forbidden(BookingError):
    """Credentials are valid but do not cover this resource."""

    code = "forbidden"


class ChallengeRefused(Forbidden):
    """A join's proof of work was refused; ``code`` says why: ``challenge_required`` (the
    WebSocket answers it by handing the join a challenge),
    ``challenge_invalid`` (unreadable, wrong, or another event's), ``challenge_expired``,
    ``challenge_replayed`` (its solution was used already)."""

    code = "challenge_invalid"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # why, as the stable machine-readable name


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


class AlreadyCheckedIn(Conflict):
    """The ticket was let in already: when and at which gate."""

    code = "already_checked_in"

    def __init__(
        self, message: str, *, checked_in_at: datetime, gate: str, seat: tuple[str, str, int]
    ) -> None:
        super().__init__(message)
        self.checked_in_at = checked_in_at  # the first scan
        self.gate = gate  # where the first scan was
        self.seat = seat  # section, row, number


class Gone(BookingError):
    """The resource exists but is no longer valid."""

    code = "gone"


class TicketNotLive(Gone):
    """The ticket was cancelled: it lets nobody in."""

    code = "ticket_cancelled"


class TicketBeingCancelled(Gone):
    """A ticket scanned at the door while a cancellation of it is pending (its refund under
    way): it lets nobody in. Should the refund be refused for good, it is live again."""

    code = "cancellation_pending"


class PaymentDeclined(BookingError):
    """The payment gateway declined the card."""

    code = "payment_declined"


class PaymentTimeout(BookingError):
    """The payment gateway did not answer in time; nothing was booked."""

    code = "payment_timeout"


class RateLimited(BookingError):
    """Too many requests from one client address or for one identity; wait and retry."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # what the client should wait before retrying


class Unavailable(BookingError):
    """Redis or PostgreSQL is unreachable; the request changed nothing durable."""

    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # what the client should wait before retrying


class NotReady(Unavailable):
    """Redis or PostgreSQL does not answer: this process cannot serve requests yet."""

    code = "not_ready"
