"""Server CPU a join spends on its checks: the proof of work (ALTCHA, two HMACs) and the
identity token (HS256, RS256 from a JWKS-like cached key, ES256), per join, on one core.
Without them a join spends none of this; the challenge adds one Redis SET NX (the used
solution) to the join's round trips.

    PYTHONPATH=. .venv/bin/python scripts/bench_join_checks.py [--joins N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import altcha
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.events import EventSpec, IdentitySpec, SectionSpec
from engine.identity import IdentityVerifier


def _cpu_us(n: int, step: Any) -> float:
    """CPU microseconds per call of ``step`` (a coroutine function), over ``n`` calls."""

    async def run() -> None:
        for _ in range(n):
            await step()

    started = time.process_time()
    asyncio.run(run())
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=5_000)
    n = parser.parse_args().joins
    key = b"k" * 32
    challenge = altcha.create_challenge(
        "SHA-256", 1, counter=5_000, expires_at=int(time.time()) + 600,
        data={"event": "e"}, hmac_secret=key, hmac_key_secret=key[::-1],
    )  # fmt: skip
    solution = altcha.solve_challenge(challenge, timeout=0)
    assert solution is not None
    payload = altcha.Payload(challenge, solution).to_base64()

    async def pow_check() -> None:
        solved = altcha.Payload.from_base64(payload)
        assert altcha.verify_solution(solved, key, hmac_key_secret=key[::-1]).verified

    claims = {"sub": "alice", "iss": "https://shop", "aud": "b", "exp": int(time.time()) + 600}
    rows: list[tuple[str, float]] = [
        ("proof of work (ALTCHA verify, no Redis)", _cpu_us(n, pow_check))
    ]
    section = [SectionSpec(id="GA", price_cents=1, capacity=1)]
    opens = datetime(2020, 1, 1, tzinfo=UTC)
    verifier = IdentityVerifier(None, shared_secret="s" * 32, own_key=key)
    for name, private, algorithm in [
        ("HS256", None, "HS256"),
        (
            "RS256 (2048-bit)",
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "RS256",
        ),
        ("ES256 (P-256)", ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ]:
        pem = ""
        if private is not None:
            pem = (
                private.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        identity = IdentitySpec(kind="jwt", issuer="https://shop", audience="b", public_key=pem)
        spec = EventSpec(name="x", opens_at=opens, sections=section, identity=identity)
        token = jwt.encode(claims, private or "s" * 32, algorithm=algorithm)

        async def check(spec: EventSpec = spec, token: str = token) -> None:
            await verifier.person("e", spec, token)

        rows.append((f"identity token {name}", _cpu_us(n, check)))
    for name, us in rows:
        print(f"{name:45s} {us:8.1f} us CPU per join")


if __name__ == "__main__":
    main()
