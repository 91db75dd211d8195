"""Signed tokens: round trip, tampering, kind, expiry, secret and format checks."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitroom.tokens import Claims, InvalidToken, TokenKind, TokenSigner

pytestmark = pytest.mark.once

SECRET = b"0123456789abcdef-test-secret"
OTHER_SECRET = b"fedcba9876543210-other-secret"
EXPIRES = 1_700_000_600
NOW = 1_700_000_000.0

event_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
kinds = st.sampled_from(list(TokenKind))


def _signed(secret: bytes, body: str) -> str:
    """A token with an arbitrary body, signed as the module docstring specifies."""
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:16]
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@given(
    kind=kinds,
    event_id=event_ids,
    seq=st.integers(min_value=0, max_value=2**63),
    expires_s=st.integers(min_value=0, max_value=2**40),
)
def test_issue_verify_round_trip(kind: TokenKind, event_id: str, seq: int, expires_s: int) -> None:
    """A freshly issued token verifies to exactly the claims it was issued with."""
    signer = TokenSigner(SECRET)
    token = signer.issue(kind, event_id, seq, expires_s)
    assert signer.verify(token, kind, now_s=expires_s - 1) == Claims(kind, event_id, seq, expires_s)


def test_token_matches_documented_format() -> None:
    """A token is <kind>.<event>.<seq>.<expires_s>.<HMAC-SHA256/128 base64url>."""
    token = TokenSigner(SECRET).issue(TokenKind.HOLD, "ev1", 42, EXPIRES)
    assert token == _signed(SECRET, f"h.ev1.42.{EXPIRES}")
    assert len(token.rsplit(".", 1)[1]) == 22  # 128 bits, unpadded


@given(data=st.data())
def test_any_flipped_byte_is_rejected(data: st.DataObject) -> None:
    """Flipping any bit of any byte of a token makes verify raise InvalidToken."""
    signer = TokenSigner(SECRET)
    raw = bytearray(signer.issue(TokenKind.QUEUE, "ev-1", 17, EXPIRES).encode())
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="index")
    bit = data.draw(st.integers(min_value=0, max_value=7), label="bit")
    raw[index] ^= 1 << bit
    tampered = raw.decode("latin-1")  # how an HTTP header carries arbitrary bytes
    with pytest.raises(InvalidToken):
        signer.verify(tampered, TokenKind.QUEUE, NOW)


def test_non_ascii_signature_is_invalid_token() -> None:
    """A signature carrying a non-ASCII character is refused with InvalidToken, not a crash."""
    signer = TokenSigner(SECRET)
    token = signer.issue(TokenKind.HOLD, "ev1", 3, EXPIRES)
    tampered = token[:-1] + "é"
    with pytest.raises(InvalidToken):
        signer.verify(tampered, TokenKind.HOLD, NOW)


@pytest.mark.parametrize(
    ("issued", "expected"),
    [(TokenKind.QUEUE, TokenKind.HOLD), (TokenKind.HOLD, TokenKind.QUEUE)],
)
def test_wrong_kind_is_rejected(issued: TokenKind, expected: TokenKind) -> None:
    """A genuine token of one kind is refused where the other kind is required."""
    signer = TokenSigner(SECRET)
    token = signer.issue(issued, "ev1", 1, EXPIRES)
    with pytest.raises(InvalidToken, match="wrong kind"):
        signer.verify(token, expected, NOW)


def test_token_valid_up_to_and_including_expiry() -> None:
    """A token is still valid at exactly expires_s."""
    signer = TokenSigner(SECRET)
    token = signer.issue(TokenKind.QUEUE, "ev1", 1, EXPIRES)
    assert signer.verify(token, TokenKind.QUEUE, float(EXPIRES)).expires_s == EXPIRES


@pytest.mark.parametrize("past", [0.001, 1.0, 86_400.0])
def test_expired_token_is_rejected(past: float) -> None:
    """Once now is past expires_s the token is refused as expired."""
    signer = TokenSigner(SECRET)
    token = signer.issue(TokenKind.QUEUE, "ev1", 1, EXPIRES)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, TokenKind.QUEUE, EXPIRES + past)


def test_token_of_other_secret_is_rejected() -> None:
    """A token signed with another secret fails verification."""
    token = TokenSigner(OTHER_SECRET).issue(TokenKind.HOLD, "ev1", 9, EXPIRES)
    with pytest.raises(InvalidToken, match="signature"):
        TokenSigner(SECRET).verify(token, TokenKind.HOLD, NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "q",
        "q.ev1.1.1700000600",
        "q.ev1.1.1700000600.sig.extra",
        "q.ev.1.1.1700000600.AAAAAAAAAAAAAAAAAAAAAA",
        "........",
    ],
)
def test_wrong_part_count_is_malformed(token: str) -> None:
    """Tokens without exactly five dot-separated parts are refused as malformed."""
    with pytest.raises(InvalidToken, match="malformed"):
        TokenSigner(SECRET).verify(token, TokenKind.QUEUE, NOW)


@pytest.mark.parametrize(
    "body",
    [
        f"q.ev1.abc.{EXPIRES}",
        f"q.ev1..{EXPIRES}",
        "q.ev1.1.soon",
        "q.ev1.1.1e12",
        f"q.ev1.0x1.{EXPIRES}",
    ],
)
def test_correctly_signed_non_integer_fields_are_malformed(body: str) -> None:
    """Even a correctly signed token is refused as malformed when seq or expiry is no integer."""
    token = _signed(SECRET, body)
    assert len(token.split(".")) == 5
    with pytest.raises(InvalidToken, match="malformed"):
        TokenSigner(SECRET).verify(token, TokenKind.QUEUE, NOW)


@pytest.mark.parametrize("length", [0, 1, 15])
def test_short_secret_is_refused(length: int) -> None:
    """A secret shorter than 16 bytes is refused with ValueError."""
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"k" * length)


def test_sixteen_byte_secret_is_accepted() -> None:
    """A 16-byte secret is long enough to sign and verify tokens."""
    signer = TokenSigner(b"k" * 16)
    token = signer.issue(TokenKind.QUEUE, "ev1", 5, EXPIRES)
    assert signer.verify(token, TokenKind.QUEUE, NOW).seq == 5
