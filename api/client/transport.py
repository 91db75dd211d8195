"""A lean HTTP/1.1 client: a bounded pool of keep-alive connections, nothing else.

httpx costs a client process about a millisecond of CPU per request, which at
thousands of payments per second makes the bench's simulated buyers, not the
server, the bottleneck. The interface needs one request shape (a method, a path,
headers, a small JSON body or none) and the server answers with a Content-Length,
so this client speaks only that (chunked answers are read too), over TCP or TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio
import anyio.abc

__all__ = ["HttpTransport", "Response"]


class Response:
    """A status, the headers the client reads, and the body."""

    __slots__ = ("content", "retry_after", "status")

    def __init__(self, status: int, content: bytes, retry_after: str | None = None) -> None:
        self.status = status  # HTTP status
        self.content = content  # the body
        self.retry_after = retry_after  # the Retry-After header, if any


class _Connection:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream  # the socket
        self.buffer = b""  # bytes read past the last response

    async def _more(self) -> None:
        self.buffer += await self.stream.receive()

    async def request(self, request: bytes) -> Response:
        await self.stream.send(request)
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, retry_after = 0, False, None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            match name.strip().lower():
                case b"content-length":
                    length = int(value)
                case b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                case b"retry-after":
                    retry_after = value.strip().decode()
        body = await self._chunked() if chunked else await self._exactly(length)
        return Response(status, body, retry_after)

    async def _exactly(self, length: int) -> bytes:
        while len(self.buffer) < length:
            await self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    async def _chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                await self._more()
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            body += (await self._exactly(size + 2))[:size]  # the chunk and its CRLF
            if size == 0:
                return body


class HttpTransport:
    """Requests over a bounded pool of keep-alive connections to one server."""

    def __init__(self, base_url: str, max_connections: int = 64) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = parts.scheme == "https"  # connect with TLS
        self._host = parts.hostname or "127.0.0.1"  # server address
        self._port = parts.port or (443 if self._tls else 80)  # server port
        self._host_header = parts.netloc.encode()  # Host header value
        self._prefix = parts.path.rstrip("/")  # path of the interface under the host
        self._idle: list[_Connection] = []  # connections ready for a request
        self._limiter = anyio.CapacityLimiter(max_connections)  # requests in flight
        self._all: list[_Connection] = []  # every open connection, to close

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> Response:
        """Send one request (``body``: JSON) and read its answer.

        Retried once, on a new connection, when a pooled connection fails before any
        answer (the server closes idle keep-alive connections while a flash sale's
        line waits). Raises ConnectionError when the new one fails too. Cancelled
        (a timeout around the call), the connection is closed, never reused.
        """
        request = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode()
            + b"Host: "
            + self._host_header
            + b"\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
            + (
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                if body is not None
                else b"Content-Length: 0\r\n\r\n"
            )
        )
        async with self._limiter:
            for attempt in (1, 2):
                conn = self._idle.pop() if self._idle and attempt == 1 else await self._connect()
                try:
                    response = await conn.request(request)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                    await self._discard(conn)
                    if attempt == 2:
                        raise ConnectionError(f"{method} {path}: {exc!r}") from exc
                    continue
                except BaseException:  # cancelled mid-answer: the connection is out of step
                    await self._discard(conn)
                    raise
                self._idle.append(conn)
                return response
        raise AssertionError("unreachable")

    async def _connect(self) -> _Connection:
        stream: anyio.abc.ByteStream
        try:
            if self._tls:
                stream = await anyio.connect_tcp(self._host, self._port, tls=True)
            else:
                stream = await anyio.connect_tcp(self._host, self._port)
        except OSError as exc:
            raise ConnectionError(f"connect to {self._host}:{self._port}: {exc!r}") from exc
        conn = _Connection(stream)
        self._all.append(conn)
        return conn

    async def _discard(self, conn: _Connection) -> None:
        await anyio.aclose_forcefully(conn.stream)
        if conn in self._all:
            self._all.remove(conn)

    async def aclose(self) -> None:
        """Close every connection."""
        for conn in self._all:
            await anyio.aclose_forcefully(conn.stream)
        self._all.clear()
        self._idle.clear()
