"""What a log line is about: fields set by the code paths, read by the log formatter.

Context variables follow a task on trio and on asyncio alike (each task starts
with a copy of its parent's), so a field set by the HTTP middleware or a
payment's path appears on every line logged under it, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = ["FIELDS", "REQUEST_ID", "TRACE_ID", "bind", "bound", "current"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TRACE_ID: ContextVar[str | None] = ContextVar("trace_id", default=None)
_EVENT: ContextVar[str | None] = ContextVar("event", default=None)
_TICKET: ContextVar[int | None] = ContextVar("ticket", default=None)
_HOLD: ContextVar[str | None] = ContextVar("hold", default=None)
_BOOKING: ContextVar[str | None] = ContextVar("booking", default=None)

#: Every context field, by the name it has in a log line.
FIELDS: dict[str, ContextVar[str | None] | ContextVar[int | None]] = {
    "request_id": REQUEST_ID,
    "trace_id": TRACE_ID,
    "event": _EVENT,
    "ticket": _TICKET,
    "hold": _HOLD,
    "booking": _BOOKING,
}


def current() -> dict[str, str | int]:
    """The fields known here (unset ones left out)."""
    out: dict[str, str | int] = {}
    for name, var in FIELDS.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


def bind(**fields: str | int | None) -> None:
    """Set context fields for the rest of the current task (a task's own context)."""
    for name, value in fields.items():
        if value is not None:
            FIELDS[name].set(value)  # type: ignore[arg-type]


@contextmanager
def bound(**fields: str | int | None) -> Iterator[None]:
    """Set context fields (by their log names) for the body of the ``with``; None leaves one as is."""
    tokens: list[tuple[ContextVar[str | None] | ContextVar[int | None], Token[object]]] = []
    for name, value in fields.items():
        if value is not None:
            var = FIELDS[name]
            tokens.append((var, var.set(value)))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)  # type: ignore[arg-type]
