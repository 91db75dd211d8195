"""The Stripe adapter's transport (``storage/http11.py`` under ``stripe``) against a server
that misbehaves as the test tells it: a kept connection the server closed while idle costs
no call, a server that never answers is an unknown outcome at the timeout, and an answer
not framed by ``Content-Length`` is read in full."""

from __future__ import annotations

import anyio
import pytest
import stripe

from engine.payments import GatewayUnavailable
from storage.stripe_gateway import StripeGateway
from tests.engine.receiver import Receiver, receiver

pytestmark = pytest.mark.anyio

_REFUND = b'{"id": "re_1", "object": "refund", "status": "succeeded", "amount": 700}'


def _answer(rx: Receiver, answer: bytes) -> None:
    """Every request answered with ``answer``'s exact bytes. (``status`` then only says
    which requests the receiver counts as a webhook's accepted ones, whose bodies it reads
    as JSON: not so here, as Stripe's bodies are form-encoded.)"""
    rx.answer = answer
    rx.status = lambda n: 500


def _adapter(rx: Receiver, timeout_s: float = 5.0) -> StripeGateway:
    return StripeGateway("sk_test_transport", api_base=rx.url[: -len("/hook")], timeout_s=timeout_s)


async def _refund(gateway: StripeGateway, key: str) -> int:
    made = await gateway.refund(charge_reference="pi_1", amount_cents=700, idempotency_key=key)
    assert made.reference == "re_1"
    return made.amount_cents


_PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUND), _REFUND)


async def test_calls_share_a_kept_connection() -> None:
    async with receiver() as rx:
        _answer(rx, _PLAIN)
        gateway = _adapter(rx)
        try:
            assert [await _refund(gateway, f"k{i}") for i in range(3)] == [700] * 3
        finally:
            await gateway.aclose()
        assert rx.requests == 3
        assert rx.connections == 1


async def test_a_connection_the_server_closed_while_idle_costs_no_call() -> None:
    """The server closes each connection after its answer (its keep-alive ran out): the
    next call is made on a new connection, the closed one never written to."""
    async with receiver() as rx:
        _answer(rx, _PLAIN)
        rx.close_after_answer = True
        gateway = _adapter(rx)
        try:
            for i in range(1, 4):
                assert await _refund(gateway, f"k{i}") == 700
                with anyio.fail_after(10):
                    while rx.closed < i:  # noqa: ASYNC110 (the receiver's own task)
                        await anyio.sleep(0.01)
        finally:
            await gateway.aclose()
        assert rx.requests == 3
        assert rx.connections == 3


async def test_a_server_that_never_answers_is_an_unknown_outcome_at_the_timeout() -> None:
    async with receiver() as rx:
        rx.hold = anyio.Event()  # never set: the request is read, no answer comes
        gateway = _adapter(rx, timeout_s=0.5)
        try:
            with anyio.fail_after(10), pytest.raises(GatewayUnavailable) as raised:
                await _refund(gateway, "k1")
        finally:
            await gateway.aclose()
        assert isinstance(raised.value.__cause__, stripe.APIConnectionError)
        assert rx.requests == 1


async def test_a_chunked_answer_is_read_in_full_and_the_next_call_made() -> None:
    """An answer in chunks (parsed by h11), its body split mid-JSON, then another call: on a
    new connection, as a chunked answer's connection is not kept."""
    half = len(_REFUND) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (_REFUND[:half], _REFUND[half:]))
    async with receiver() as rx:
        _answer(
            rx,
            b"HTTP/1.1 200 OK\r\nRequest-Id: req_1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n",
        )
        gateway = _adapter(rx)
        try:
            assert await _refund(gateway, "k1") == 700
            assert await _refund(gateway, "k2") == 700
        finally:
            await gateway.aclose()
        assert rx.requests == 2
        assert rx.connections == 2
