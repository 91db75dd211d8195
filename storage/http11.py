"""HTTP/1.1 requests over connections kept for the next request (anyio streams and h11, so
on trio and asyncio alike, without the bridge): the transport of the webhook sender and of
the Stripe adapter.

A request is written in one ``send`` (its head and body together: one wake-up of the
receiver, not two). Its answer, when it is HTTP/1.1 framed by one ``Content-Length`` as
most are, is read by a few lines of code; any other (chunked, read to the close, 1xx
first, HTTP/1.0) is parsed by h11, and its connection is not kept. A connection whose
answer was read in full goes back to its origin's idle connections, and is taken again
only while it has been idle less than the keep-alive and its socket is not readable (the
server closed it, or wrote out of turn): a connection found closed that way is dropped
before a byte of the request is written, so taking another is no retry. Whatever fails
after the request was written is raised to the caller, who alone knows whether the
request may be sent again.

Why not httpx or httpcore: httpx's ``AsyncClient`` builds a request model, extracts
cookies and handles auth and redirects per request; httpcore writes a request's head and
body in two sends, and its pool scans every connection it keeps (a readable-socket syscall
for each idle one) for every request. Here a request costs its two socket calls and the
answer's parse; an origin's idle connections are a stack whose top is taken.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import httpx

__all__ = ["Answer", "Headers", "KeptConnections", "Origin", "parse_url"]

#: The longest answer head read (status line and headers).
MAX_HEAD = 65536


@dataclass(frozen=True)
class Origin:
    """Where requests go: the scheme, the host to connect to (IDNA, an IPv6 address without
    brackets), the port, and the ``Host`` header's value."""

    scheme: str
    host: str
    port: int
    host_header: bytes


def parse_url(url: str) -> tuple[Origin, bytes, bool]:
    """``url``'s origin, its path (with the query) as the request line says it, and whether
    a proxy of the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) applies;
    ValueError for anything but an absolute http(s) URL without control or space
    characters."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("not an absolute http(s) URL")
    if any(b <= 0x20 or b == 0x7F for b in parsed.raw_path + parsed.netloc):
        raise ValueError("the URL has control or space characters")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    proxied = bool(proxy) and not urllib.request.proxy_bypass(parsed.host)
    origin = Origin(parsed.scheme, parsed.raw_host.decode("ascii"), port, parsed.netloc)
    return origin, parsed.raw_path, proxied


class Headers(Mapping[str, str]):
    """An answer's headers, looked up whatever the case of the name (the last of a
    repeated one)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items  # names lower-cased

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


def _plain_head(head: bytes) -> tuple[int, int, bool, dict[str, str]] | None:
    """(status, body length, connection kept, headers) of an HTTP/1.1 final answer framed
    by one ``Content-Length`` (or a status without a body); None for anything else (1xx,
    chunked, read to the close, HTTP/1.0, folded or malformed headers), which h11 parses."""
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
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or name[:1] in b" \t":
            return None
        name = name.lower()
        value = value.strip()
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection" and b"close" in value.lower():
            keep = False
        headers[name.decode("latin-1")] = value.decode("latin-1")
    if length is None:
        return None
    return status, length, keep, headers


def _header_safe(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header name or value with a line break")
    return value


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
        not closed (nor written to) by the server meanwhile."""
        if self._socket is None or time.monotonic() - self.idle_since > keepalive_s:
            return False
        poller = select.poll()
        poller.register(self._socket, select.POLLIN)
        return not poller.poll(0)  # readable while idle: closed, or answering out of turn

    async def exchange(
        self, origin: Origin, method: bytes, path: bytes, head: bytes, body: bytes | None
    ) -> tuple[Answer, bool]:
        """Send one request (head and body in one write) and read its whole answer; the
        answer, and whether the connection may carry another request."""
        await self.stream.send(head if body is None else head + body)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > MAX_HEAD:
                raise ValueError("the answer's head is too long")
            data += await self.stream.receive(65536)  # EndOfStream: no answer, a failure
        plain = None if method == b"HEAD" else _plain_head(data[:end])
        if plain is None:
            return await self._read_with_h11(origin, method, path, body, data), False
        status, length, keep, headers = plain
        content = data[end + 4 :]
        while len(content) < length:
            content += await self.stream.receive(65536)
        return Answer(status, Headers(headers), content[:length]), keep and len(content) == length

    async def _read_with_h11(
        self, origin: Origin, method: bytes, path: bytes, body: bytes | None, data: bytes
    ) -> Answer:
        """Any other answer, parsed by h11 from its first bytes ``data`` to its end (the
        connection is not kept after it)."""
        http = h11.Connection(h11.CLIENT)
        headers = [(b"Host", origin.host_header)]
        if body is not None:
            headers.append((b"Content-Length", str(len(body)).encode()))
        http.send(h11.Request(method=method, target=path, headers=headers))
        if body:
            http.send(h11.Data(data=body))  # sent already: only h11's state moves on
        http.send(h11.EndOfMessage())
        http.receive_data(data)
        status, answer_headers, content = 0, {}, []
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                try:
                    http.receive_data(await self.stream.receive(65536))
                except anyio.EndOfStream:
                    http.receive_data(b"")
            elif isinstance(event, h11.Response):
                status = event.status_code
                answer_headers = {
                    k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers
                }
            elif isinstance(event, h11.Data):
                content.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, Headers(answer_headers), b"".join(content))
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the server closed the connection")
            # an informational answer (1xx): read on


class KeptConnections:
    """Requests to any origin over HTTP/1.1 connections kept for the next request.

    ``max_idle`` connections an origin may keep idle, each for ``keepalive_s``; with
    ``max_connections``, requests to one origin beyond that many at once wait their turn
    (in order of arrival). With ``timeout_s``, each of a request's phases (waiting for its
    turn, connecting, writing the request and reading its whole answer) fails with
    TimeoutError past it. ``ssl_context`` makes the TLS context for https, once, when
    first needed. A proxy is not spoken to: a caller whose URL :func:`parse_url` says is
    proxied sends it otherwise.
    """

    def __init__(
        self,
        *,
        keepalive_s: float,
        max_idle: int,
        max_connections: int | None = None,
        timeout_s: float | None = None,
        ssl_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._keepalive_s = keepalive_s
        self._max_idle = max_idle
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._make_ssl = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._turns: dict[Origin, anyio.Semaphore] = {}

    async def request(
        self,
        origin: Origin,
        method: bytes,
        path: bytes,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
    ) -> Answer:
        """One request (``body`` None: none, and no ``Content-Length``) and its answer."""
        lines = "".join(
            f"{_header_safe(name)}: {_header_safe(value)}\r\n" for name, value in headers
        )
        head = b"".join(
            (
                method,
                b" ",
                path,
                b" HTTP/1.1\r\nHost: ",
                origin.host_header,
                b"" if body is None else b"\r\nContent-Length: %d" % len(body),
                b"\r\n",
                lines.encode(),
                b"\r\n",
            )
        )
        if self._max_connections is None:
            return await self._request(origin, method, path, head, body)
        turn = self._turns.get(origin)
        if turn is None:
            turn = self._turns[origin] = anyio.Semaphore(self._max_connections, fast_acquire=True)
        try:
            turn.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.fail_after(self._timeout_s):
                await turn.acquire()
        try:
            return await self._request(origin, method, path, head, body)
        finally:
            turn.release()

    async def _request(
        self, origin: Origin, method: bytes, path: bytes, head: bytes, body: bytes | None
    ) -> Answer:
        conn = await self._take(origin)
        kept = False
        try:
            with anyio.fail_after(self._timeout_s):
                answer, keep = await conn.exchange(origin, method, path, head, body)
            if keep:
                conn.idle_since = time.monotonic()
                idle = self._idle.setdefault(origin, [])
                idle.append(conn)
                kept = True
                if len(idle) > self._max_idle:  # the longest idle makes room
                    await anyio.aclose_forcefully(idle.pop(0).stream)
            return answer
        finally:
            if not kept:  # failed, cut off, or not to be reused: closed
                await anyio.aclose_forcefully(conn.stream)

    async def _take(self, origin: Origin) -> _Connection:
        """The origin's most recently used idle connection that may carry a request, or a
        new one. One found closed is dropped before anything is written to it."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.reusable(self._keepalive_s):
                if idle and time.monotonic() - idle[0].idle_since > self._keepalive_s:
                    await anyio.aclose_forcefully(idle.pop(0).stream)  # the longest idle
                return conn
            await anyio.aclose_forcefully(conn.stream)
        if idle is not None and not idle and self._idle.get(origin) is idle:
            del self._idle[origin]  # none left: forgotten until one is kept again
        with anyio.fail_after(self._timeout_s):
            return _Connection(await self._connect(origin))

    async def _connect(self, origin: Origin) -> anyio.abc.ByteStream:
        if origin.scheme == "http":
            return await anyio.connect_tcp(origin.host, origin.port)
        if self._ssl is None:
            self._ssl = self._make_ssl()
        return await anyio.connect_tcp(origin.host, origin.port, tls=True, ssl_context=self._ssl)

    async def aclose(self) -> None:
        """Close the idle connections."""
        for idle in self._idle.values():
            while idle:
                await anyio.aclose_forcefully(idle.pop().stream)
