"""Sending webhook deliveries: a signed POST per log entry (or per batch of entries, for
a webhook registered batched), over HTTP/1.1 keep-alive
connections of its own (anyio streams and h11, so on trio and asyncio alike, without the
bridge).

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
any other answer is parsed by h11.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import select
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import httpx

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
    if any(b <= 0x20 or b == 0x7F for b in parsed.raw_path + parsed.netloc):
        raise ValueError("the URL has control or space characters")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    proxied = bool(proxy) and not urllib.request.proxy_bypass(parsed.host)
    return _Target(
        (parsed.scheme, parsed.raw_host.decode("ascii"), port),
        parsed.raw_path,
        parsed.netloc,
        proxied,
    )


#: The longest answer head read (status line and headers).
_MAX_HEAD = 65536


def _plain_head(head: bytes) -> tuple[int, int, bool] | None:
    """(status, body length, connection kept) of an HTTP/1.1 final answer framed by one
    ``Content-Length`` (or a status without a body); None for anything else (1xx, chunked,
    read to the close, HTTP/1.0, folded or malformed headers), which h11 parses."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version != b"HTTP/1.1" or len(code) != 3 or not code.isdigit() or rest[3:4] not in b" ":
        return None
    status = int(code)
    if status < 200:
        return None
    length = 0 if status in (204, 304) else None
    keep = True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or name[:1] in b" \t":
            return None
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection" and b"close" in value.lower():
            keep = False
    if length is None:
        return None
    return status, length, keep


class _Connection:
    """One HTTP/1.1 connection to an origin."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.idle_since = 0.0
        self._socket: socket.socket | None
        try:
            self._socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        except anyio.TypedAttributeLookupError:
            self._socket = None

    def reusable(self, keepalive_s: float) -> bool:
        """Whether it may carry another request: idle for less than ``keepalive_s`` and
        not closed (nor written to) by the receiver meanwhile."""
        if self._socket is None or time.monotonic() - self.idle_since > keepalive_s:
            return False
        poller = select.poll()
        poller.register(self._socket, select.POLLIN)
        return not poller.poll(0)  # readable while idle: closed, or answering out of turn

    async def post(self, target: _Target, head: bytes, body: bytes) -> tuple[int, bool]:
        """Send one request (head and body in one write) and read its whole answer: its
        status, and whether the connection may carry another request."""
        await self.stream.send(head + body)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > _MAX_HEAD:
                raise ValueError("the answer's head is too long")
            data += await self.stream.receive(65536)  # EndOfStream: no answer, a failure
        plain = _plain_head(data[:end])
        if plain is None:
            return await self._read_with_h11(target, len(body), data), False
        status, length, keep = plain
        received = len(data) - end - 4
        while received < length:
            received += len(await self.stream.receive(65536))
        return status, keep and received == length

    async def _read_with_h11(self, target: _Target, length: int, data: bytes) -> int:
        """Any other answer, parsed by h11 from its first bytes ``data`` to its end (the
        connection is not kept after it)."""
        http = h11.Connection(h11.CLIENT)
        headers = [(b"Host", target.host_header), (b"Content-Length", str(length).encode())]
        http.send(h11.Request(method=b"POST", target=target.path, headers=headers))
        http.send(h11.Data(data=b"\0" * length))  # sent already: only h11's state moves on
        http.send(h11.EndOfMessage())
        http.receive_data(data)
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


def _header_safe(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value with a line break")
    return value


class WebhookClient:
    """POSTs signed entries; an answer other than 2xx, or none in time, is a failure.

    Each POST has ``timeout_s`` in all (connecting, sending, waiting and reading the
    answer), so a receiver trickling its answer cannot hold a sender longer. Redirects are
    not followed. A request is written in one ``send``; the common answer (HTTP/1.1,
    ``Content-Length``) is read without a parser's state machine, any other by h11. A
    connection whose answer was read in full is kept for the origin's next POST (one per
    origin, for ``keepalive_s`` idle); any failure closes it. A proxy of the environment
    (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) is honoured, through httpx. A client
    serves one sender: its POSTs are not concurrent.
    """

    def __init__(self, timeout_s: float, *, keepalive_s: float = 5.0) -> None:
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], _Connection] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
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

    async def _post(
        self, target: _Target, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> int:
        lines = "".join(f"{name}: {_header_safe(value)}\r\n" for name, value in headers)
        head = b"".join(
            (
                b"POST ",
                target.path,
                b" HTTP/1.1\r\nHost: ",
                target.host_header,
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\nUser-Agent: booking-webhooks\r\n",
                lines.encode(),
                b"\r\n",
            )
        )
        conn = self._idle.pop(target.origin, None)
        if conn is not None and not conn.reusable(self._keepalive_s):
            await anyio.aclose_forcefully(conn.stream)
            conn = None
        if conn is None:
            conn = _Connection(await self._connect(target))
        kept = False
        try:
            status, keep = await conn.post(target, head, body)
            if keep:
                conn.idle_since = time.monotonic()
                if (old := self._idle.pop(target.origin, None)) is not None:
                    await anyio.aclose_forcefully(old.stream)
                self._idle[target.origin] = conn
                kept = True
            return status
        finally:
            if not kept:  # failed, cut off, or not to be reused: closed
                await anyio.aclose_forcefully(conn.stream)

    async def _connect(self, target: _Target) -> anyio.abc.ByteStream:
        scheme, host, port = target.origin
        if scheme == "http":
            return await anyio.connect_tcp(host, port)
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # httpx's defaults: certifi's roots
        return await anyio.connect_tcp(host, port, tls=True, ssl_context=self._ssl)

    async def _post_proxied(
        self, url: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> int:
        if self._proxied is None:
            self._proxied = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        response = await self._proxied.post(url, content=body, headers=list(headers))
        return response.status_code

    async def aclose(self) -> None:
        for conn in self._idle.values():
            await anyio.aclose_forcefully(conn.stream)
        self._idle.clear()
        if self._proxied is not None:
            await self._proxied.aclose()
