"""Sending webhook deliveries: a signed POST per log entry, over HTTP/1.1 keep-alive
connections of its own (anyio streams and h11, so on trio and asyncio alike, without the
bridge).

The signature: ``Booking-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC
keyed with the webhook's secret over ``<t>.<body>`` (the body's exact bytes). A
receiver recomputes it, compares in constant time, and refuses a ``t`` outside its
replay window (:func:`verify` is the reference).

Why not httpx: a sale makes two deliveries per paid booking, and httpx spent most of the
sender's CPU on each (building a request model, cookies, auth and redirect handling, its
transport's pool, and the request's head and body written in two socket writes, each a
wake-up of the receiver on loopback). Here a delivery is its request written in one
``send`` and the answer parsed by h11 on a connection kept for the next.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import select
import ssl
import time
import urllib.request
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
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


@dataclass(frozen=True)
class _Target:
    """A webhook URL as sent to: where to connect and what the request line and ``Host``
    header say (parsed once per URL, by the parser :func:`unsendable` uses)."""

    origin: tuple[str, str, int]  # scheme, host (IDNA, IPv6 without brackets), port
    path: bytes
    host_header: bytes
    proxied: bool  # an HTTP(S)_PROXY of the environment applies: sent through httpx


def _target(url: str) -> _Target:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("not an absolute http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    proxied = bool(proxy) and not urllib.request.proxy_bypass(parsed.host)
    return _Target(
        (parsed.scheme, parsed.raw_host.decode("ascii"), port),
        parsed.raw_path,
        parsed.netloc,
        proxied,
    )


class _Connection:
    """One HTTP/1.1 connection to an origin, with its h11 state."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def reusable(self, keepalive_s: float) -> bool:
        """Whether it may carry another request: idle for less than ``keepalive_s`` and
        not closed (nor written to) by the receiver meanwhile."""
        if time.monotonic() - self.idle_since > keepalive_s:
            return False
        try:
            sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        except anyio.TypedAttributeLookupError:
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)  # readable while idle: closed, or answering out of turn

    async def post(self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        """Send one request (in one write) and read its whole answer; its status."""
        http = self.http
        request = h11.Request(method=b"POST", target=path, headers=headers)
        await self.stream.send(
            b"".join(
                (
                    http.send(request) or b"",
                    http.send(h11.Data(data=body)) or b"",
                    http.send(h11.EndOfMessage()) or b"",
                )
            )
        )
        status = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                try:
                    http.receive_data(await self.stream.receive(65536))
                except anyio.EndOfStream:
                    http.receive_data(b"")
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the receiver closed the connection")
            # an informational answer (1xx) or the body's data: read on


class WebhookClient:
    """POSTs signed entries; an answer other than 2xx, or none in time, is a failure.

    Each POST has ``timeout_s`` in all (connecting, sending, waiting and reading the
    answer), so a receiver trickling its answer cannot hold a sender longer. Redirects are
    not followed. A connection whose answer was read in full is kept for the origin's next
    POST (one per origin, for ``keepalive_s`` idle); any failure closes it. A proxy of the
    environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) is honoured, through httpx.
    A client serves one sender: its POSTs are not concurrent.
    """

    def __init__(self, timeout_s: float, *, keepalive_s: float = 5.0) -> None:
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], _Connection] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._proxied: httpx.AsyncClient | None = None

    async def send(
        self, url: str, secret: str, body: bytes, *, webhook_id: str, event_id: str, seq: int
    ) -> str | None:
        """POST ``body`` to ``url``, signed; None when delivered, else why not."""
        headers = [
            (b"Content-Type", b"application/json"),
            (SIGNATURE_HEADER.encode(), sign(secret, int(time.time()), body).encode()),
            (b"Booking-Webhook-Id", webhook_id.encode()),
            (b"Booking-Entry", f"{event_id}/{seq}".encode()),
        ]
        status = None
        try:
            target = self._targets.get(url)
            if target is None:
                target = _target(url)
                if len(self._targets) >= 1000:
                    self._targets.clear()
                self._targets[url] = target
            with anyio.move_on_after(self._timeout_s):
                if target.proxied:
                    status = await self._post_proxied(url, headers, body)
                else:
                    status = await self._post(target, headers, body)
        except Exception as exc:  # the endpoint's failure, whatever it is: never the sender's
            return f"{type(exc).__name__}: {exc}"[:500]
        if status is None:
            return f"no answer within {self._timeout_s:g} s"
        if 200 <= status < 300:
            return None
        return f"HTTP {status}"

    async def _post(self, target: _Target, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        conn = self._idle.pop(target.origin, None)
        if conn is not None and not conn.reusable(self._keepalive_s):
            await anyio.aclose_forcefully(conn.stream)
            conn = None
        if conn is None:
            conn = _Connection(await self._connect(target))
        headers = [
            (b"Host", target.host_header),
            (b"Content-Length", str(len(body)).encode()),
            (b"User-Agent", b"booking-webhooks"),
            *headers,
        ]
        kept = False
        try:
            status = await conn.post(target.path, headers, body)
            http = conn.http
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()
                conn.idle_since = time.monotonic()
                if (old := self._idle.pop(target.origin, None)) is not None:
                    await anyio.aclose_forcefully(old.stream)
                self._idle[target.origin] = conn
                kept = True
            return status
        finally:
            if not kept:  # failed, cut off, or the receiver closes it: never reused
                await anyio.aclose_forcefully(conn.stream)

    async def _connect(self, target: _Target) -> anyio.abc.ByteStream:
        scheme, host, port = target.origin
        if scheme == "http":
            return await anyio.connect_tcp(host, port)
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # httpx's defaults: certifi's roots
        return await anyio.connect_tcp(host, port, tls=True, ssl_context=self._ssl)

    async def _post_proxied(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        if self._proxied is None:
            self._proxied = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        response = await self._proxied.post(url, content=body, headers=headers)
        return response.status_code

    async def aclose(self) -> None:
        for conn in self._idle.values():
            await anyio.aclose_forcefully(conn.stream)
        self._idle.clear()
        if self._proxied is not None:
            await self._proxied.aclose()
