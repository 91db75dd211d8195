"""Sending webhook deliveries: a signed POST per log entry (or per batch of entries, for
a webhook registered batched), over HTTP/1.1 keep-alive
connections (:mod:`storage.http11`: anyio streams and h11, so on trio and asyncio alike,
without the bridge).

The signature: ``Booking-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC
keyed with the webhook's secret over ``<t>.<body>`` (the body's exact bytes). A
receiver recomputes it, compares in constant time, and refuses a ``t`` outside its
replay window (:func:`verify` is the reference). A single entry's POST names it in
``Booking-Entry: <event id>/<seq>``; a batch's body is ``{"entries": [...]}`` (the
entries' JSON in seq order, :func:`batch_body`), signed as one body, and named in
``Booking-Entries: <event id>/<first seq>-<last seq>``.

Why not httpx: a sale makes two deliveries per paid booking, and httpx spent most of the
sender's CPU on each (building a request model, cookies, auth and redirect handling, its
transport's pool, and the request's head and body written in two socket writes, each a
wake-up of the receiver on loopback), and h11's state machine most of what was left. Here
a delivery is its request written in one ``send`` on a connection kept for the next, and
its answer, when framed by ``Content-Length`` as most are, read by a few lines of code;
any other answer is parsed by h11 (:mod:`storage.http11`, which the Stripe adapter shares).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass

import anyio
import httpx

from storage.http11 import KeptConnections, Origin, parse_url

__all__ = ["SIGNATURE_HEADER", "WebhookClient", "batch_body", "sign", "unsendable", "verify"]

SIGNATURE_HEADER = "Booking-Signature"


def batch_body(entries: list[bytes]) -> bytes:
    """A batch's body: ``{"entries": [...]}``, the entries' exact JSON in the order given."""
    return b'{"entries":[' + b",".join(entries) + b"]}"


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


@dataclass(frozen=True)
class _Target:
    """A webhook URL as sent to (parsed once per URL, by the parser :func:`unsendable`
    uses)."""

    origin: Origin
    path: bytes
    proxied: bool  # an HTTP(S)_PROXY of the environment applies: sent through httpx


class WebhookClient:
    """POSTs signed entries; an answer other than 2xx, or none in time, is a failure.

    Each POST has ``timeout_s`` in all (connecting, sending, waiting and reading the
    answer), so a receiver trickling its answer cannot hold a sender longer. Redirects are
    not followed. The POSTs go over :mod:`storage.http11`'s kept connections (one kept per
    origin, for ``keepalive_s`` idle); any failure closes the connection. A proxy of the
    environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) is honoured, through
    httpx. A client serves one sender: its POSTs are not concurrent.
    """

    def __init__(self, timeout_s: float, *, keepalive_s: float = 5.0) -> None:
        self._timeout_s = timeout_s
        self._http = KeptConnections(
            keepalive_s=keepalive_s,
            max_idle=1,
            ssl_context=httpx.create_ssl_context,  # httpx's defaults: certifi's roots
        )
        self._targets: dict[str, _Target] = {}
        self._proxied: httpx.AsyncClient | None = None

    async def send(
        self,
        url: str,
        secret: str,
        body: bytes,
        *,
        webhook_id: str,
        event_id: str,
        seq: int,
        last_seq: int | None = None,
    ) -> str | None:
        """POST ``body`` to ``url``, signed; None when delivered, else why not. The body is
        entry ``seq`` of the event, or with ``last_seq`` a batch of entries ``seq`` to
        ``last_seq`` (:func:`batch_body`)."""
        named = (
            ("Booking-Entry", f"{event_id}/{seq}")
            if last_seq is None
            else ("Booking-Entries", f"{event_id}/{seq}-{last_seq}")
        )
        headers = (
            ("Content-Type", "application/json"),
            (SIGNATURE_HEADER, sign(secret, int(time.time()), body)),
            ("Booking-Webhook-Id", webhook_id),
            named,
        )
        status = None
        try:
            target = self._targets.get(url)
            if target is None:
                target = _Target(*parse_url(url))
                if len(self._targets) >= 1000:
                    self._targets.clear()
                self._targets[url] = target
            with anyio.move_on_after(self._timeout_s):
                if target.proxied:
                    status = await self._post_proxied(url, headers, body)
                else:
                    answer = await self._http.request(
                        target.origin,
                        b"POST",
                        target.path,
                        (("User-Agent", "booking-webhooks"), *headers),
                        body,
                    )
                    status = answer.status
        except Exception as exc:  # the endpoint's failure, whatever it is: never the sender's
            return f"{type(exc).__name__}: {exc}"[:500]
        if status is None:
            return f"no answer within {self._timeout_s:g} s"
        if 200 <= status < 300:
            return None
        return f"HTTP {status}"

    async def _post_proxied(
        self, url: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> int:
        if self._proxied is None:
            self._proxied = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        response = await self._proxied.post(url, content=body, headers=list(headers))
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._proxied is not None:
            await self._proxied.aclose()
