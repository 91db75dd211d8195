"""Domain errors to HTTP answers: the one place statuses are chosen."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.http.responses import json_response
from api.http.schemas import ErrorBody
from engine.errors import (
    BookingError,
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    PaymentDeclined,
    PaymentTimeout,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
)

__all__ = ["STATUS", "error_response", "handle_booking_error"]

#: HTTP status of each error class (the first listed the error is an instance of: subclasses
#: come before their base).
STATUS: dict[type[BookingError], int] = {
    Unprocessable: 422,
    InvalidRequest: 400,
    Unauthorized: 401,
    PaymentDeclined: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    Unavailable: 503,
    PaymentTimeout: 504,
    RateLimited: 429,
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error answer ``{"error": code, "message": message}``."""
    return json_response(ErrorBody(error=code, message=message), status=status, headers=headers)


def handle_booking_error(request: Request, exc: Exception) -> Response:
    """Answer a domain error with its status."""
    assert isinstance(exc, BookingError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    headers = None
    if isinstance(exc, Unavailable | RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, exc.code, exc.message, headers)
