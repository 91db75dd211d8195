"""Verified identity at join: tokens checked, one place per person, max_per_person, on the
real system (and a real JWKS server on loopback)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.client import BookingClient, WaitingRoom, WaitroomError
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import STEP_S, event_body, new_key, prompted, refused
from tests.conftest import ADMIN_KEY, make_settings

pytestmark = pytest.mark.anyio

SHARED = "operator-shared-secret-0123456789abcdef"
ISSUER = "https://shop.example"
AUDIENCE = "booking"


def token(
    sub: str = "alice",
    *,
    key: Any = SHARED,
    algorithm: str = "HS256",
    kid: str | None = None,
    iss: str = ISSUER,
    aud: str = AUDIENCE,
    expires_in_s: int = 600,
) -> str:
    """An identity token as the operator's site signs it."""
    claims = {"sub": sub, "iss": iss, "aud": aud, "exp": int(time.time()) + expires_in_s}
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


class JwksServer:
    """A JWKS document served over HTTP on loopback; ``keys`` may be replaced (rotation)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []  # the published JWKs
        self.requests = 0  # GETs served
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def publish(self, kid: str, private_key: Any) -> None:
        """Publish only ``private_key``'s public half as ``kid`` (the previous keys retire)."""
        public = private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        self.keys = [{**jwk, "kid": kid, "use": "sig"}]

    def __enter__(self) -> JwksServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
async def services(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The system with a shared HS256 identity secret."""
    settings = make_settings(
        servers.redis_url, servers.database_url, position_interval_s=1.0, identity_secret=SHARED
    )
    async with open_services(settings) as running:
        yield running


@pytest.fixture
async def client(services: Services) -> AsyncIterator[BookingClient]:
    async with BookingClient(services.http_url, admin_key=ADMIN_KEY) as c:
        yield c


def jwt_event(**identity: str) -> dict[str, Any]:
    return {"kind": "jwt", "issuer": ISSUER, "audience": AUDIENCE, **identity}


async def test_tokens_that_do_not_hold_are_refused_with_their_code(client: BookingClient) -> None:
    """Missing, forged, expired, wrong-audience and wrong-issuer tokens get an error each;
    nobody takes a place; a valid token does."""
    event = await client.create_event(event_body(identity=jwt_event()))
    cases = [
        (None, "identity_required"),
        ("not-a-token", "identity_invalid"),
        (token(key="someone-elses-secret-0123456789abcdef"), "identity_invalid"),
        (token(expires_in_s=-3600), "identity_expired"),
        (token(aud="another-site"), "identity_wrong_audience"),
        (token(iss="https://evil.example"), "identity_wrong_issuer"),
        (jwt.encode({"iss": ISSUER, "aud": AUDIENCE}, SHARED), "identity_invalid"),  # no exp
    ]
    async with WaitingRoom.connect(event.waitroom_url) as room:
        for identity, code in cases:
            join = p.Join(quantity=1, client_id="c1", identity=identity)
            await refused(room, join, code)
        assert (await client.event(event.id)).queue_length == 0
        with anyio.fail_after(STEP_S):
            queued = await room.join("c1", identity=token())
        assert isinstance(queued, p.Queued) and queued.ticket == 1


async def test_an_hs256_token_is_refused_when_the_event_names_public_keys(
    client: BookingClient, jwks: JwksServer
) -> None:
    """A token signed with the shared secret cannot pass for the event's RS256 keys."""
    jwks.publish("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    event = await client.create_event(event_body(identity=jwt_event(jwks_url=jwks.url)))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await refused(room, p.Join(quantity=1, client_id="c", identity=token()), "identity_invalid")
        forged = token(key=SHARED, kid="k1")
        await refused(room, p.Join(quantity=1, client_id="c", identity=forged), "identity_invalid")


async def test_a_key_rotated_mid_sale_is_fetched_again(
    client: BookingClient, jwks: JwksServer
) -> None:
    """The JWKS is fetched once and cached; a token naming a new kid fetches it again, and
    the retired key's tokens are refused from then on."""
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = ec.generate_private_key(ec.SECP256R1())
    jwks.publish("2026-old", old)
    event = await client.create_event(event_body(identity=jwt_event(jwks_url=jwks.url)))
    rs = token("alice", key=old, algorithm="RS256", kid="2026-old")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("a", identity=rs), p.Queued)
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(
            await room.join("b", identity=token("bob", key=old, algorithm="RS256", kid="2026-old")),
            p.Queued,
        )
    assert jwks.requests == 1  # cached

    jwks.publish("2026-new", new)
    await anyio.sleep(1.1)  # unknown kids fetch at most once a second per URL
    es = token("carol", key=new, algorithm="ES256", kid="2026-new")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        with anyio.fail_after(STEP_S):
            queued = await room.join("c", identity=es)
        assert isinstance(queued, p.Queued) and queued.ticket == 3
    assert jwks.requests == 2
    await anyio.sleep(1.1)
    retired = token("dave", key=old, algorithm="RS256", kid="2026-old")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await refused(room, p.Join(quantity=1, client_id="d", identity=retired), "identity_invalid")


async def test_one_person_from_two_devices_keeps_one_place(client: BookingClient) -> None:
    """A second device of the same person (another client id) gets the same ticket and place;
    another person gets the next place."""
    event = await client.create_event(event_body(identity=jwt_event()))
    async with (
        WaitingRoom.connect(event.waitroom_url) as phone,
        WaitingRoom.connect(event.waitroom_url) as laptop,
        WaitingRoom.connect(event.waitroom_url) as other,
    ):
        with anyio.fail_after(STEP_S):
            first = await phone.join("phone-1", 2, identity=token("alice"))
            second = await laptop.join("laptop-9", 2, identity=token("alice"))
            third = await other.join("phone-1", 2, identity=token("bob"))
        assert isinstance(first, p.Queued) and isinstance(second, p.Queued)
        assert second.ticket == first.ticket == 1
        assert isinstance(third, p.Queued) and third.ticket == 2
        assert (await client.event(event.id)).queue_length == 2
        # The newest device takes the place over: its prompt arrives there.
        prompt = await prompted(laptop)
        assert len(prompt.seats) == 2


async def test_max_per_person_counts_both_orders(client: BookingClient) -> None:
    """After one paid order of 2, a person may order 1 more of max_per_person 3, not 2."""
    event = await client.create_event(
        event_body(identity=jwt_event(), max_per_person=3, max_per_order=2)
    )
    alice = token("alice")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("a", 2, identity=alice), p.Queued)
        prompt = await prompted(room)
        await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("first"))
        assert isinstance(await room.outcome(), p.Confirmed)
    async with WaitingRoom.connect(event.waitroom_url) as room:
        with pytest.raises(WaitroomError) as refusal:
            await room.join("a", 2, identity=alice)
        assert refusal.value.code == "person_limit"
        queued = await room.join("a", 1, identity=alice)
        assert isinstance(queued, p.Queued) and queued.ticket == 2
        prompt = await prompted(room)
        assert len(prompt.seats) == 1
