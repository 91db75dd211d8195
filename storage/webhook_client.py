"""Sending webhook deliveries: a signed POST per log entry, with httpx (through anyio, so
on trio and asyncio alike, without the bridge).

The signature: ``Booking-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC
keyed with the webhook's secret over ``<t>.<body>`` (the body's exact bytes). A
receiver recomputes it, compares in constant time, and refuses a ``t`` outside its
replay window (:func:`verify` is the reference).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

__all__ = ["SIGNATURE_HEADER", "WebhookClient", "sign", "verify"]

SIGNATURE_HEADER = "Booking-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Booking-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookClient:
    """POSTs signed entries; an answer other than 2xx, or none in time, is a failure."""

    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(
        self, url: str, secret: str, body: bytes, *, webhook_id: str, event_id: str, seq: int
    ) -> str | None:
        """POST ``body`` to ``url``, signed; None when delivered, else why not."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            "Booking-Webhook-Id": webhook_id,
            "Booking-Entry": f"{event_id}/{seq}",
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # A URL the client cannot send to (a host name IDNA refuses) fails like a refusal:
            # the sender must never die of one endpoint.
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def aclose(self) -> None:
        await self._client.aclose()
