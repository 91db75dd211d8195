"""A lean HTTP/1.1 client for the bench's payments: keep-alive connections, nothing else.

httpx costs the bench process about a millisecond of CPU per request, which at
thousands of payments per second makes the simulated buyers, not the server,
the bottleneck. Payments need one request shape (POST a small JSON body, read
a JSON answer with a Content-Length), so this client speaks only that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec

from realtime import protocol as p

__all__ = ["LeanResponse", "LeanRestClient"]


class LeanResponse:
    """The parts of a response the bench reads (the same names as httpx's)."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code  # HTTP status
        self.content = content  # the body

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        """The body as JSON."""
        return msgspec.json.decode(self.content)


class _Connection:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream  # the socket
        self.buffer = b""  # bytes read past the last response

    async def request(self, head: bytes, body: bytes) -> LeanResponse:
        await self.stream.send(head + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        header, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += await self.stream.receive()
        self.buffer = rest[length:]
        return LeanResponse(status, rest[:length])


class LeanRestClient:
    """Payments over a bounded pool of keep-alive connections to one loopback server."""

    def __init__(self, base_url: str, max_connections: int = 64) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"  # server address
        self._port = parts.port or 80  # server port
        self._host_header = parts.netloc.encode()  # Host header value
        self._idle: list[_Connection] = []  # connections ready for a request
        self._limiter = anyio.CapacityLimiter(max_connections)  # requests in flight
        self._all: list[_Connection] = []  # every open connection, to close

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> LeanResponse:
        """POST ``body`` (JSON) to ``path``; retried once, on a new connection, when the
        server had closed the pooled one (idle keep-alive connections time out while a
        flash sale's line waits). Raises ConnectionError when the new one fails too."""
        head = (
            f"POST {path} HTTP/1.1\r\n".encode()
            + b"Host: "
            + self._host_header
            + b"\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        async with self._limiter:
            for attempt in (1, 2):
                conn = self._idle.pop() if self._idle and attempt == 1 else await self._connect()
                try:
                    response = await conn.request(head, body)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                    await conn.stream.aclose()
                    self._all.remove(conn)
                    if attempt == 2:
                        raise ConnectionError(f"POST {path}: {exc!r}") from exc
                    continue
                self._idle.append(conn)
                return response
        raise AssertionError("unreachable")

    async def pay(
        self, prompt: p.Prompt, card: str, key: str, *, attempts: int = 3
    ) -> LeanResponse:
        """POST a payment for ``prompt``'s hold (the same call as ``RestClient.pay``)."""
        return await self.post(
            f"/v1/holds/{prompt.hold_id}/payment",
            msgspec.json.encode({"card_token": card}),
            {"Authorization": f"Bearer {prompt.hold_token}", "Idempotency-Key": key},
        )

    async def _connect(self) -> _Connection:
        conn = _Connection(await anyio.connect_tcp(self._host, self._port))
        self._all.append(conn)
        return conn

    async def aclose(self) -> None:
        """Close every connection."""
        for conn in self._all:
            await conn.stream.aclose()
        self._all.clear()
        self._idle.clear()
