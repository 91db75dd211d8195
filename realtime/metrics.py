"""Prometheus metrics of the realtime channel."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge

__all__ = [
    "CONNECTIONS",
    "MESSAGES_SENT",
    "OPEN_SOCKETS",
    "POSITIONS_SENT",
    "PROMPTS_PENDING",
    "messages_sent",
]

OPEN_SOCKETS = Gauge("booking_ws_connections", "WebSocket connections open on this server.")
CONNECTIONS = Gauge("booking_ws_clients_in_line", "Connected clients attached to a ticket.")
MESSAGES_SENT = Counter(
    "booking_ws_messages_total", "Messages queued to clients by type.", ["type"]
)


@functools.cache
def messages_sent(kind: str) -> Counter:
    """The ``MESSAGES_SENT`` child of one message type, looked up once, not per message."""
    return MESSAGES_SENT.labels(kind)


#: Position updates (the bulk of the frames; bounded by the server's budget).
POSITIONS_SENT = MESSAGES_SENT.labels("position")
#: What this server last reported to admission (realtime/delivery.py).
PROMPTS_PENDING = Gauge(
    "booking_ws_prompts_pending",
    "Prompts routed to this server's clients and not yet written, per event.",
    ["event"],
)
