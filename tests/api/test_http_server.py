"""hypercorn's HTTP/1.1 protocol as ``api.http.server`` runs it: an answer's head goes out
with its body, in one write, and the bytes on the wire are hypercorn's own."""

from __future__ import annotations

import h11
import pytest
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

import api.http.server  # noqa: F401  # replaces H11Protocol.stream_send
from api.http.server import _stream_send  # hypercorn's own

pytestmark = pytest.mark.anyio

REQUEST = b"POST /v1/holds/e.1/payment HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


def _head(length: int) -> Response:
    headers = [(b"content-length", str(length).encode()), (b"content-type", b"application/json")]
    return Response(stream_id=1, status_code=200, headers=headers)


def _protocol(writes: list[bytes]) -> H11Protocol:
    """A connection that read a whole request and is to answer it; its writes recorded."""

    async def send(event: Event) -> None:
        if isinstance(event, RawData):
            writes.append(event.data)

    config = Config()
    config.include_date_header = False  # the same bytes from both protocols
    protocol = H11Protocol(
        None,  # type: ignore[arg-type]  # no request is handed to an app here
        config,
        WorkerContext(None),
        None,  # type: ignore[arg-type]
        ConnectionState({}),
        False,
        None,
        None,
        send,
    )
    protocol.connection.receive_data(REQUEST)
    assert isinstance(protocol.connection.next_event(), h11.Request)
    assert isinstance(protocol.connection.next_event(), h11.Data)
    assert isinstance(protocol.connection.next_event(), h11.EndOfMessage)
    return protocol


async def _answer(events: list[object], *, patched: bool) -> list[bytes]:
    writes: list[bytes] = []
    protocol = _protocol(writes)
    for event in events:
        if patched:
            await protocol.stream_send(event)  # type: ignore[arg-type]
        else:
            await _stream_send(protocol, event)  # type: ignore[arg-type]
    return writes


async def test_a_json_answer_is_one_write_of_hypercorns_bytes() -> None:
    events = [_head(11), Body(stream_id=1, data=b'{"ok":true}'), EndBody(stream_id=1)]
    ours = await _answer(events, patched=True)
    theirs = await _answer(events, patched=False)
    assert len(ours) == 1
    assert ours[0] == b"".join(theirs)
    assert ours[0].startswith(b"HTTP/1.1 200 ") and ours[0].endswith(b'{"ok":true}')


async def test_an_answer_without_a_body_writes_its_head() -> None:
    events = [_head(0), EndBody(stream_id=1)]
    ours = await _answer(events, patched=True)
    assert len(ours) == 1
    assert ours[0] == b"".join(await _answer(events, patched=False))


async def test_a_streamed_answer_writes_each_piece_as_it_comes() -> None:
    events = [
        _head(11),
        Body(stream_id=1, data=b"first"),
        Body(stream_id=1, data=b"second"),
        EndBody(stream_id=1),
    ]
    ours = await _answer(events, patched=True)
    assert len(ours) == 2  # the head with the first piece, then the second (its end is empty)
    assert ours[0].endswith(b"first") and ours[1] == b"second"
    assert b"".join(ours) == b"".join(await _answer(events, patched=False))
