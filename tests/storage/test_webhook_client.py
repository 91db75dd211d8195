"""The webhook client: a delivery it cannot send is a failure, never an exception out of
the sender; deliveries share a kept connection, and one the receiver closed meanwhile
costs no delivery."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from storage.webhook_client import WebhookClient, batch_body, verify
from tests.engine.receiver import receiver

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "x..example"])
async def test_a_host_name_idna_refuses_is_a_failed_delivery(host: str) -> None:
    client = WebhookClient(1.0)
    try:
        error = await client.send(
            f"https://{host}/hook", "whsec_x", b"{}", webhook_id="wh1", event_id="ev1", seq=1
        )
    finally:
        await client.aclose()
    assert error is not None and error


async def _send_all(
    client: WebhookClient, url: str, n: int, between: Any = None
) -> list[str | None]:
    errors = []
    for seq in range(1, n + 1):
        body = msgspec.json.encode({"event_id": "ev1", "seq": seq})
        errors.append(
            await client.send(url, "whsec_x", body, webhook_id="wh1", event_id="ev1", seq=seq)
        )
        if between is not None:
            await between(seq)
    return errors


async def test_a_batch_is_one_post_signed_as_one_body_and_named_by_its_range() -> None:
    entries = [msgspec.json.encode({"event_id": "ev1", "seq": seq}) for seq in (7, 8, 9)]
    body = batch_body(entries)
    assert msgspec.json.decode(body) == {"entries": [msgspec.json.decode(e) for e in entries]}
    client = WebhookClient(5.0)
    try:
        async with receiver() as rx:
            error = await client.send(
                rx.url, "whsec_x", body, webhook_id="wh1", event_id="ev1", seq=7, last_seq=9
            )
            assert error is None
            [got] = rx.accepted
            assert got.body == body and got.names == "ev1/7-9"
            assert got.entries == entries
            assert verify("whsec_x", got.signature, body)
            assert not verify("whsec_x", got.signature, batch_body(entries[:2]))
    finally:
        await client.aclose()


async def test_deliveries_to_one_receiver_share_a_connection() -> None:
    client = WebhookClient(5.0)
    try:
        async with receiver() as rx:
            assert await _send_all(client, rx.url, 5) == [None] * 5
            assert rx.connections == 1
            sent = [msgspec.json.encode({"event_id": "ev1", "seq": seq}) for seq in range(1, 6)]
            assert [r.body for r in rx.accepted] == sent
            assert rx.all_signed("whsec_x")
    finally:
        await client.aclose()


async def test_a_connection_the_receiver_closed_while_idle_costs_no_delivery() -> None:
    """A receiver closing each connection after its answer (its keep-alive ran out): every
    delivery still succeeds, each on a new connection, none failed on the closed one."""
    client = WebhookClient(5.0)
    try:
        async with receiver() as rx:
            rx.close_after_answer = True

            async def closed(seq: int) -> None:
                with anyio.fail_after(10):
                    while rx.closed < seq:  # noqa: ASYNC110 (the receiver's own task)
                        await anyio.sleep(0.01)

            assert await _send_all(client, rx.url, 4, closed) == [None] * 4
            assert rx.connections == 4
            assert len(rx.accepted) == 4
    finally:
        await client.aclose()


async def test_an_answer_other_than_2xx_is_a_failure_and_the_next_is_sent() -> None:
    client = WebhookClient(5.0)
    try:
        async with receiver() as rx:
            rx.status = lambda n: 503 if n == 0 else 200
            assert await _send_all(client, rx.url, 2) == ["HTTP 503", None]
    finally:
        await client.aclose()


_OK = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    ("answer", "close", "expected", "connections"),
    [
        pytest.param(_OK + b"Content-Length: 2\r\n\r\nok", False, None, 1, id="length"),
        pytest.param(_OK + b"content-length:0\r\nX: y\r\n\r\n", False, None, 1, id="terse"),
        pytest.param(
            _OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            False,
            None,
            2,
            id="chunked",
        ),
        pytest.param(_OK + b"\r\nread to the close", True, None, 2, id="to-the-close"),
        pytest.param(
            _OK + b"Content-Length: 0\r\nConnection: close\r\n\r\n",
            False,
            None,
            2,
            id="connection-close",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n" + _OK + b"Content-Length: 0\r\n\r\n",
            False,
            None,
            2,
            id="informational-first",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", True, None, 2, id="http-1.0"),
        pytest.param(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            False,
            "HTTP 503",
            2,
            id="chunked-503",
        ),
        pytest.param(_OK + b"Content-Length: 9\r\n\r\nok", True, "EndOfStream", 2, id="cut"),
        pytest.param(b"HTTP/1.1 2OO OK\r\n\r\n", True, "RemoteProtocolError", 2, id="garbled"),
    ],
)
async def test_every_framing_of_an_answer_is_read_to_its_end(
    answer: bytes, close: bool, expected: str | None, connections: int
) -> None:
    """Each answer is read in full (its outcome its status) before the next request: on the
    same connection when the answer allows it, else on a new one."""
    client = WebhookClient(5.0)
    try:
        async with receiver() as rx:
            rx.answer, rx.close_after_answer = answer, close

            async def closed(seq: int) -> None:
                with anyio.fail_after(10):
                    while close and rx.closed < seq:  # noqa: ASYNC110 (the receiver's own task)
                        await anyio.sleep(0.01)

            errors = await _send_all(client, rx.url, 2, closed)
            assert [e if e is None else e.split(":")[0] for e in errors] == [expected] * 2
            assert rx.connections == connections
            assert rx.requests == 2
    finally:
        await client.aclose()


async def test_an_answer_never_finished_fails_at_the_timeout_whatever_its_framing() -> None:
    """A chunked answer whose last chunk never comes, like a Content-Length never reached,
    is no answer: the delivery fails when the timeout runs out."""
    client = WebhookClient(0.5)
    try:
        async with receiver() as rx:
            for answer in (
                _OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
                _OK + b"Content-Length: 9\r\n\r\nok",
            ):
                rx.answer = answer
                assert await _send_all(client, rx.url, 1) == ["no answer within 0.5 s"]
    finally:
        await client.aclose()
