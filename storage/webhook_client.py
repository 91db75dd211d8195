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
import ipaddress
import time

import anyio
import httpx

__all__ = ["SIGNATURE_HEADER", "WebhookClient", "sign", "unsendable", "verify"]

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


def unsendable(url: str) -> str | None:
    """Why no request could be sent to ``url`` (None when one could): it must be an
    absolute http(s) URL of a host name (each label 1 to 63 characters, IDNA) or an IP
    address, on a port from 1 to 65535, without control characters. The same parser the
    sender uses decides, so a URL accepted here never fails before it reaches the network.
    """
    try:
        parsed = httpx.URL(url)
        port = parsed.port  # None: the scheme's own
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    host = parsed.host
    if not host:
        return "the URL has no host"
    if port is not None and not 1 <= port <= 65535:
        return "the port must be from 1 to 65535"
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        return "the URL has control or space characters"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            ascii_host = host.encode("idna")  # what name resolution will encode it to
        except UnicodeError:
            return "the host is not a valid host name"
        labels = ascii_host.rstrip(b".").split(b".")
        if len(ascii_host) > 253 or not all(0 < len(label) <= 63 for label in labels):
            return "the host is not a valid host name"
    return None


class WebhookClient:
    """POSTs signed entries; an answer other than 2xx, or none in time, is a failure.

    Each POST has ``timeout_s`` in all (connecting, sending, waiting and reading the
    answer), so a receiver trickling its answer cannot hold a sender longer.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
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
        response = None
        try:
            with anyio.move_on_after(self._timeout_s):
                response = await self._client.post(url, content=body, headers=headers)
        except Exception as exc:  # the endpoint's failure, whatever it is: never the sender's
            return f"{type(exc).__name__}: {exc}"[:500]
        if response is None:
            return f"no answer within {self._timeout_s:g} s"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def aclose(self) -> None:
        await self._client.aclose()
