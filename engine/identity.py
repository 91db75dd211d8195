"""Who a buyer is: identity tokens checked at join, one place in line per person.

An event that requires identity (``EventSpec.identity``) admits a join only with a
token naming a person: signed by the operator's site (``jwt``: HS256 with the shared
secret, or RS256/ES256 with a public key or the keys at a JWKS URL) or by the engine
itself once the buyer proved an email address (``email``: see ``engine/email_identity.py``).
The person is the hash of the token's issuer and subject; the line knows it under one
client id (``person_client_id``), so a second device of the same person gets the same
place back, and the scripts count its seats against ``max_per_person``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from engine.errors import IdentityRefused
from engine.events import EventSpec, IdentitySpec
from storage.jwks import JwksUnavailable

__all__ = [
    "OWN_ISSUER",
    "IdentityVerifier",
    "KeySource",
    "person_client_id",
    "person_of",
]

#: The issuer of the tokens the engine signs itself (email identity).
OWN_ISSUER = "booking-engine"
#: How long after ``exp`` a token still counts (clocks of two machines differ).
LEEWAY_S = 30
_ASYMMETRIC = ["RS256", "ES256"]
_REQUIRED = ["exp", "iss", "aud", "sub"]


class KeySource(Protocol):
    """Signing keys published at JWKS URLs (``storage/jwks.py``)."""

    async def signing_key(self, url: str, kid: str) -> jwt.PyJWK | None:
        """The key ``kid`` of ``url`` (fetched again when unknown); None if it has none."""
        ...


class _PreparedHmac(HMACAlgorithm):
    """HS256 that checks each secret once: PyJWT makes sure a secret is not an asymmetric
    key (trying it as PEM, SSH and DER) on every decode, ~20 µs, a quarter of a join's
    token check; the few secrets here (the operator's, the engine's own) are checked the
    first time and remembered."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # InvalidKeyError for a key, never kept
            if len(self._prepared) < 64:
                self._prepared[key] = prepared
        return prepared


def _decoder() -> jwt.PyJWT:
    """PyJWT's decoder with HS256 as ``_PreparedHmac`` (RS256 and ES256 keys are parsed
    once already: ``_public_key``, and the JWKS cache keeps ``PyJWK`` objects)."""
    decoder = jwt.PyJWT()
    # The hook jwt.decode's own global decoder is built with (PyJWT is pinned).
    decoder._jws.unregister_algorithm("HS256")
    decoder._jws.register_algorithm("HS256", _PreparedHmac())
    return decoder


_DECODER = _decoder()


@lru_cache(maxsize=256)
def _public_key(pem: str) -> Any:
    """An event's PEM key, parsed once (parsing costs more than checking a signature)."""
    try:
        return load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise IdentityRefused(
            "identity_unavailable", "the event's public key is not readable"
        ) from exc


def person_of(issuer: str, subject: str) -> str:
    """The person a token names: 32 hex digits of SHA-256 over its issuer and subject."""
    return hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:32]


def person_client_id(person: str) -> str:
    """The one client id under which a person waits in an event's line."""
    return f"id:{person}"


class IdentityVerifier:
    """Checks identity tokens: signature, issuer, audience and expiry, per the event's spec."""

    def __init__(
        self, keys: KeySource | None, *, shared_secret: str | None, own_key: bytes
    ) -> None:
        self._keys = keys  # JWKS keys (None: no event may name a jwks_url)
        self._shared_secret = shared_secret  # HS256 secret shared with the operator's site
        self._own_key = own_key  # signs and checks the engine's own (email) tokens

    async def person(self, event_id: str, spec: EventSpec, token: str | None) -> str:
        """The person ``token`` names for ``event_id``; IdentityRefused when it does not hold."""
        identity = spec.identity
        assert identity is not None, "only events that require identity check tokens"
        if not token:
            raise IdentityRefused("identity_required", "this event needs an identity token")
        key, algorithms, issuer, audience = await self._key(event_id, identity, token)
        try:
            claims: dict[str, Any] = _DECODER.decode(
                token,
                key,
                algorithms=algorithms,
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError as exc:
            raise IdentityRefused("identity_expired", "the identity token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise IdentityRefused(
                "identity_wrong_audience", f"the identity token is not for {audience!r}"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise IdentityRefused(
                "identity_wrong_issuer", f"the identity token was not issued by {issuer!r}"
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise IdentityRefused("identity_invalid", f"identity token refused: {exc}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise IdentityRefused("identity_invalid", "the identity token names nobody (sub)")
        return person_of(issuer, subject)

    def sign_own(self, event_id: str, subject: str, expires_s: int) -> str:
        """A token of the engine's own naming ``subject`` for ``event_id`` (email identity)."""
        claims = {"iss": OWN_ISSUER, "aud": event_id, "sub": subject, "exp": expires_s}
        return jwt.encode(claims, self._own_key, algorithm="HS256")

    async def _key(
        self, event_id: str, identity: IdentitySpec, token: str
    ) -> tuple[Any, list[str], str, str]:
        """The key, algorithms, issuer and audience ``token`` must be checked with."""
        if identity.kind == "email":
            return self._own_key, ["HS256"], OWN_ISSUER, event_id
        if identity.public_key:
            return _public_key(identity.public_key), _ASYMMETRIC, identity.issuer, identity.audience
        if identity.jwks_url:
            return (
                await self._jwks_key(identity.jwks_url, token),
                _ASYMMETRIC,
                identity.issuer,
                identity.audience,
            )
        if not self._shared_secret:
            raise IdentityRefused(
                "identity_unavailable", "no BOOKING_IDENTITY_SECRET is set to check HS256 tokens"
            )
        return self._shared_secret, ["HS256"], identity.issuer, identity.audience

    async def _jwks_key(self, url: str, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise IdentityRefused("identity_invalid", f"identity token refused: {exc}") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise IdentityRefused("identity_invalid", "the identity token names no key (kid)")
        if self._keys is None:
            raise IdentityRefused("identity_unavailable", "JWKS keys are not available here")
        try:
            key = await self._keys.signing_key(url, kid)
        except JwksUnavailable as exc:
            raise IdentityRefused(
                "identity_unavailable", "the identity keys could not be fetched; retry"
            ) from exc
        if key is None:
            raise IdentityRefused("identity_invalid", f"no key {kid!r} at the event's JWKS URL")
        return key
