"""A webhook receiver for the tests: a small HTTP/1.1 server on loopback (anyio, so on trio
and asyncio alike) that records what it is sent and answers as the test tells it."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import msgspec
from anyio.streams.tls import TLSListener

from storage.log_events import decode_entry
from storage.webhook_client import verify


class _Batch(msgspec.Struct):
    entries: list[msgspec.Raw]


@dataclass
class Received:
    """One POST: its signature header, its body, and the header naming what it holds
    (``Booking-Entry``, or a batch's ``Booking-Entries``)."""

    signature: str
    body: bytes
    names: str = ""

    @property
    def batched(self) -> bool:
        return self.body.startswith(b'{"entries":')

    @property
    def entries(self) -> list[bytes]:
        """The entries' JSON: the body, or each of a batch's."""
        if not self.batched:
            return [self.body]
        return [bytes(e) for e in msgspec.json.decode(self.body, type=_Batch).entries]

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(e.event_id, e.seq) for e in map(decode_entry, self.entries)]

    @property
    def key(self) -> tuple[str, int]:
        """The first entry's (event id, seq)."""
        return self.keys[0]


@dataclass
class Receiver:
    """What was received, and how to answer: ``status(n)`` for the n-th request (0-based)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    status: Callable[[int], int] = lambda n: 200
    #: While set, requests wait (a receiver that does not answer).
    hold: anyio.Event | None = None
    #: When set, the answer's body trickles, a byte every this many seconds, never ending.
    trickle_s: float | None = None
    #: When set, each connection is closed after its first answer, without saying so (a
    #: receiver whose keep-alive ran out between two requests).
    close_after_answer: bool = False
    #: When set, the exact bytes of every answer (``status`` is not used).
    answer: bytes | None = None
    requests: int = 0
    connections: int = 0
    #: Connections this receiver closed (after the answer, with ``close_after_answer``).
    closed: int = 0

    def delivered_keys(self) -> list[tuple[str, int]]:
        return [k for r in self.accepted for k in r.keys]

    def all_signed(self, secret: str) -> bool:
        return all(verify(secret, r.signature, r.body) for r in self.received)


async def _read_request(stream: anyio.abc.ByteStream) -> tuple[dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += await stream.receive(65536)
    return headers, body


@asynccontextmanager
async def receiver(tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    """A receiver listening on a free loopback port until the block ends; with ``tls``
    (a server context), over TLS, at ``https://localhost``."""
    state = Receiver()
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    state.url = f"http://127.0.0.1:{port}/hook"
    listener: anyio.abc.Listener[anyio.abc.ByteStream] = tcp
    if tls is not None:
        listener = TLSListener(tcp, tls, standard_compatible=False)
        state.url = f"https://localhost:{port}/hook"

    async def serve(stream: anyio.abc.ByteStream) -> None:
        state.connections += 1
        async with stream:
            while True:
                try:
                    request = await _read_request(stream)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return
                if request is None:
                    return
                headers, body = request
                n = state.requests
                state.requests += 1
                names = headers.get("booking-entries", headers.get("booking-entry", ""))
                got = Received(headers.get("booking-signature", ""), body, names)
                state.received.append(got)
                if state.hold is not None:
                    await state.hold.wait()
                status = state.status(n)
                if 200 <= status < 300:
                    msgspec.json.decode(body)  # a body that is not JSON fails here
                    state.accepted.append(got)
                length = 0 if state.trickle_s is None else 1_000_000
                reply = f"HTTP/1.1 {status} X\r\nContent-Length: {length}\r\n\r\n".encode()
                if state.answer is not None:
                    reply = state.answer
                try:
                    await stream.send(reply)
                    while state.trickle_s is not None:
                        await anyio.sleep(state.trickle_s)
                        await stream.send(b" ")
                except (anyio.BrokenResourceError, OSError):
                    return
                if state.close_after_answer:
                    await stream.aclose()
                    state.closed += 1
                    return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield state
        finally:
            tg.cancel_scope.cancel()
