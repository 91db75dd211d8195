"""The Stripe adapter's transport (``storage/http11.py`` under ``stripe``) against a server
that misbehaves as the test tells it: a kept connection the server closed while idle costs
no call, a server that never answers is an unknown outcome at the timeout, and an answer
not framed by ``Content-Length`` is read in full; https is TLS checked against the CA
bundle ``stripe`` ships."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import anyio
import pytest
import stripe
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` signed by its own key: (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_https_is_tls_checked_against_the_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway at an https address is spoken to over TLS, its certificate checked against
    ``stripe.ca_bundle_path``: one the bundle does not vouch for is no call (an unknown
    outcome); with it in the bundle, calls are made, on one kept connection."""
    cert_file, key_file = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    async with receiver(tls=server) as rx:
        _answer(rx, _PLAIN)
        assert rx.url.startswith("https://localhost:")
        gateway = _adapter(rx)
        try:
            with pytest.raises(GatewayUnavailable):
                await _refund(gateway, "k0")
        finally:
            await gateway.aclose()
        assert rx.requests == 0
        monkeypatch.setattr(stripe, "ca_bundle_path", str(cert_file))
        gateway = _adapter(rx)
        try:
            assert [await _refund(gateway, f"k{i}") for i in range(1, 3)] == [700] * 2
        finally:
            await gateway.aclose()
        assert rx.requests == 2
        assert rx.connections == 1
