"""Identity specs: their validation, their record in PostgreSQL, tokens checked with a PEM key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import HMACAlgorithm

from engine.catalog import EventCatalog
from engine.errors import IdentityRefused, InvalidRequest
from engine.events import EventSpec, IdentitySpec, SectionSpec, validate_event
from engine.identity import IdentityVerifier, person_of
from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.pg_store import open_pg_store
from storage.redis_store import open_redis_store

ISSUER, AUDIENCE = "https://shop.example", "booking"


def spec(**fields: Any) -> EventSpec:
    return EventSpec(
        name="Identity",
        opens_at=datetime(2020, 1, 1, tzinfo=UTC),
        sections=[SectionSpec(id="GA", price_cents=100, capacity=10)],
        **fields,
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"max_per_person": 2}, "needs identity"),
        ({"identity": IdentitySpec(kind="jwt")}, "issuer and audience"),
        ({"identity": IdentitySpec(kind="email", issuer="x")}, "no issuer"),
        (
            {"identity": IdentitySpec(kind="jwt", issuer="i", audience="a", jwks_url="ftp://x")},
            "http(s) URL",
        ),
        (
            {"identity": IdentitySpec(kind="jwt", issuer="i", audience="a", public_key="abc")},
            "PEM public key",
        ),
    ],
)
def test_identity_specs_that_cannot_work_are_refused(fields: dict[str, Any], words: str) -> None:
    """An identity without what its tokens are checked with, or a limit nobody can be
    counted against, is refused at creation with a message saying why."""
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
        validate_event(spec(**fields))


@pytest.mark.anyio
async def test_identity_and_max_per_person_are_recorded(servers: EmbeddedServers) -> None:
    """A catalog that did not create the event reads its identity and limit from PostgreSQL."""
    identity = IdentitySpec(kind="jwt", issuer=ISSUER, audience=AUDIENCE, jwks_url="https://x/j")
    created = spec(identity=identity, max_per_person=3)
    async with (
        open_bridge() as bridge,
        open_redis_store(servers.redis_url, bridge) as redis,
        open_pg_store(servers.database_url, bridge) as pg,
    ):
        await pg.migrate()
        event_id = await EventCatalog(redis, pg).create(created)
        assert await EventCatalog(redis, pg).get(event_id) == created
        meta = (await redis.snapshot(event_id)).meta  # type: ignore[union-attr]
        assert meta["max_per_person"] == "3"


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """A token MACed with ``secret`` by hand (PyJWT refuses a PEM key as an HMAC secret)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"


@pytest.mark.anyio
async def test_a_pem_key_checks_es256_tokens() -> None:
    """With a PEM public key, its private half's tokens name their person; others are forged."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    event = spec(
        identity=IdentitySpec(kind="jwt", issuer=ISSUER, audience=AUDIENCE, public_key=pem)
    )
    verifier = IdentityVerifier(None, shared_secret=None, own_key=b"k" * 32)
    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    good = jwt.encode(claims, key, algorithm="ES256")
    assert await verifier.person("e1", event, good) == person_of(ISSUER, "alice")
    other = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with pytest.raises(IdentityRefused) as refused:
        await verifier.person("e1", event, other)
    assert refused.value.code == "identity_invalid"
    with pytest.raises(IdentityRefused) as refused:
        await verifier.person("e1", event, _hs256(claims, pem.encode()))
    assert refused.value.code == "identity_invalid"  # the public key is no HMAC secret


@pytest.mark.anyio
async def test_an_hs256_secret_is_checked_once_not_per_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PyJWT makes sure an HMAC secret is no asymmetric key (trying it as DER, among
    others) whenever it decodes; the verifier has that done once per secret, so a join
    costs the signature check alone. Tokens are checked as before: a good one names its
    person every time, another secret's is refused."""
    secret = "s" * 40 + "hs256-once"
    event = spec(identity=IdentitySpec(kind="jwt", issuer=ISSUER, audience=AUDIENCE))
    verifier = IdentityVerifier(None, shared_secret=secret, own_key=b"k" * 32)
    expires = int(time.time()) + 60
    tokens = {
        subject: jwt.encode(
            {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": expires}, secret, "HS256"
        )
        for subject in ("ann", "bob", "cat")
    }
    claims = {"sub": "eve", "iss": ISSUER, "aud": AUDIENCE, "exp": expires}
    forged = jwt.encode(claims, "another secret of 32 bytes or more", algorithm="HS256")
    tries: list[bytes] = []
    is_der = HMACAlgorithm._is_der_key

    def counted(key: bytes) -> bool:
        tries.append(key)
        return is_der(key)

    monkeypatch.setattr(HMACAlgorithm, "_is_der_key", staticmethod(counted))
    for subject, token in tokens.items():
        assert await verifier.person("e1", event, token) == person_of(ISSUER, subject)
    with pytest.raises(IdentityRefused) as refused:
        await verifier.person("e1", event, forged)
    assert refused.value.code == "identity_invalid"
    assert tries.count(secret.encode()) <= 1
