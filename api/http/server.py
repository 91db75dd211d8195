"""Run the ASGI app on hypercorn, in the flavour of the runtime in use."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import h11
import msgspec
import sniffio
import trio
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import H11SendableEvent

from plumbing.listen import BACKLOG, listening_socket

__all__ = ["serve_http"]

#: Largest request head (request line and headers) buffered, bytes; larger is a 431.
MAX_HEAD_BYTES = 16 * 1024


async def _json_error_response(self: H11Protocol, status_code: int) -> None:
    """hypercorn's answer to a request h11 cannot parse (a malformed Content-Length, a
    header too large), with the usual ``{"error", "message"}`` body rather than none."""
    reason = "request headers too large" if status_code == 431 else "malformed HTTP request"
    body = msgspec.json.encode({"error": "invalid_request", "message": reason})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *self.config.response_headers("h11"),
    ]
    await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


# hypercorn has no setting for this answer: its one method that sends it is replaced.
H11Protocol._send_error_response = _json_error_response  # type: ignore[method-assign]


_stream_send = H11Protocol.stream_send


def _h11_bytes(self: H11Protocol, event: H11SendableEvent) -> bytes:
    """``event`` as bytes for the wire, as hypercorn's ``_send_h11_event`` makes them (nothing
    when the connection already broke on the client's side)."""
    try:
        return self.connection.send(event) or b""
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return b""


async def _send_answer_whole(self: H11Protocol, event: StreamEvent) -> None:
    """hypercorn's sending of an answer, with its head written together with its body.

    hypercorn writes an answer's head, its body and its (empty) end each on their own: two
    socket writes and three passes through the connection's send lock (and, on trio, a
    shielded cancel scope) for a JSON answer, a third of a request's server CPU on trio. Here
    the head waits for the first piece of the body (or the end of an answer without one) and
    goes out with it in one write; an empty end writes nothing. What is sent, and in what
    order, is unchanged.
    """
    unsent: bytes = vars(self).pop("_unsent_head", b"")
    if isinstance(event, Response) and event.status_code >= 200:
        headers = [*event.headers, *self.config.response_headers("h11")]
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        head = _h11_bytes(self, h11.Response(headers=headers, status_code=event.status_code))
        vars(self)["_unsent_head"] = unsent + head
    elif isinstance(event, Body):
        await self.send(RawData(data=unsent + _h11_bytes(self, h11.Data(data=event.data))))
    elif isinstance(event, EndBody):
        data = unsent + _h11_bytes(self, h11.EndOfMessage())
        if data:
            await self.send(RawData(data=data))
    else:
        if unsent:
            await self.send(RawData(data=unsent))
        await _stream_send(self, event)


H11Protocol.stream_send = _send_answer_whole  # type: ignore[method-assign]


async def _close_after_writes(self: TCPServer) -> None:
    """hypercorn's close of a trio connection, with the write half shut only between writes.

    hypercorn shuts the write half without its send lock. When a client leaves mid-body two
    tasks close the connection at once: the reader (answering the broken request) and the
    application (answering the disconnect it was handed). A write that meets the other's
    shutdown fails with BusyResourceError, which neither expects: in the application it
    is logged as an error; in the reader it escapes the connection and ends the whole
    server. A write in flight gets as long to finish as a read has (a client that does
    not read cannot hold the connection open); the socket is then closed whatever
    happens, cancelled or not, which also ends such a write, with an error its writer
    expects.
    """
    try:
        if self.send_lock.statistics().owner is not trio.lowlevel.current_task():
            with trio.move_on_after(self.config.read_timeout or 10):
                async with self.send_lock:
                    await self.stream.send_eof()
    except (
        trio.BrokenResourceError,
        trio.BusyResourceError,
        trio.ClosedResourceError,
        AttributeError,  # a TLS stream has no write half to shut
    ):
        pass
    finally:
        await self.stream.aclose()


TCPServer._close = _close_after_writes  # type: ignore[method-assign]


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    read_timeout_s: float = 10.0,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started`` gets the bound port.

    The socket is bound and listening before hypercorn starts (handed over by file
    descriptor), so the port is known and accepting at once; ``reuse_port`` lets
    other processes serve the same port (plumbing/listen.py). A connection that sends
    nothing for ``read_timeout_s`` is closed, idle keep-alive connections included: every
    connection ends.
    """
    sock = listening_socket(host, port, reuse_port=reuse_port)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it from here
    config.backlog = BACKLOG
    config.keep_alive_max_requests = 1_000_000  # don't recycle busy keep-alive connections
    config.read_timeout = read_timeout_s  # type: ignore[assignment]
    # hypercorn keeps a connection whose read timed out open until its keep-alive timer
    # ends, unread: an idle keep-alive connection must be closed by the same clock, or a
    # client reusing it after the read timeout waits out the rest of the keep-alive time.
    config.keep_alive_timeout = read_timeout_s
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    if sniffio.current_async_library() == "trio":
        import trio
        from hypercorn.trio import serve

        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
            task_status.started(port)
            await anyio.sleep_forever()
    else:
        from hypercorn.asyncio import serve as aserve

        # hypercorn's asyncio server must be stopped through its shutdown trigger, not
        # cancelled: it runs shielded and stops gracefully once this task is cancelled.
        config.graceful_timeout = 1
        shutdown = anyio.Event()

        async def run() -> None:
            with anyio.CancelScope(shield=True):
                await aserve(app, config, shutdown_trigger=shutdown.wait)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            task_status.started(port)  # listening already: connections wait in the backlog
            try:
                await anyio.sleep_forever()
            finally:
                shutdown.set()
