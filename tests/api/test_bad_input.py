"""Bad input, fuzzed against the running system: REST bodies, headers and paths, and WS frames.

Inputs are deterministic pseudo-random values (``random.Random`` with fixed seeds) built from
a small grammar: random JSON values, wrong types, out-of-range and huge numbers, Unicode and
control characters, deep nesting, truncated JSON, random bytes, mutated tokens. Every
generator yields only inputs that are invalid by construction (checked against the schema's
rules), so the expected answer is always known: a 4xx JSON error over REST, an ``error``
message over the WebSocket, and no change to the server's state.

Each test counts what it sent and asserts a floor; the floors add up to more than 2,500
bad inputs per run (REST and WS together).
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from api.client.ws import WsConnection
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import (
    FUTURE,
    count_bookings,
    count_events,
    create_event,
    event_body,
    event_state,
    expect,
    get_event,
    join,
    new_key,
    pay,
    pg_value,
    recv,
    sign,
    ws_connect,
)
from tests.conftest import ADMIN_KEY, admin_headers, make_settings
from waitroom.tokens import TokenKind

pytestmark = pytest.mark.anyio

#: Minimum bad inputs each test must send (sum: 2,900).
EVENT_BODIES_MIN = 700
PAYMENT_INPUTS_MIN = 500
CANCEL_INPUTS_MIN = 200
CHECKIN_INPUTS_MIN = 400
PATHS_MIN = 100
WS_FRAMES_MIN = 1_000

MAX_FRAME = 4_000  # below the server's 4,096-byte frame limit (larger frames close the socket)

# -- the grammar --------------------------------------------------------------------------

ASCII = string.ascii_letters + string.digits + string.punctuation + " "
UNICODE = "éßøΩЖ漢字カ😀🎟\u202e\u200b\ufeff\u00a0\u0301ﬁ"
CONTROL = "\x00\x01\x07\x1b\x1f\x7f\t\n\r"
HUGE_INTS = [2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(2**63) - 1, -(10**30)]
ODD_FLOATS = [0.5, -0.0, 1e-300, 1e308, 3.0, 4.0, 120.0]


def rand_text(rng: random.Random, max_len: int = 40, *, controls: bool = True) -> str:
    """A random string mixing ASCII, other scripts, emoji and (optionally) control characters."""
    pools = [ASCII, UNICODE] + ([CONTROL] if controls else [])
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, max_len)))


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: scalars of every type, nested arrays and objects."""
    kinds = ["null", "bool", "int", "huge", "float", "text"]
    if depth < 3:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-1_000, 1_000)
    if kind == "huge":
        return rng.choice(HUGE_INTS)
    if kind == "float":
        return rng.choice(ODD_FLOATS)
    if kind == "text":
        return rand_text(rng)
    if kind == "list":
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rand_text(rng, 8): rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def rand_other(rng: random.Random, valid: Callable[[Any], bool]) -> Any:
    """A random JSON value for which ``valid`` is false."""
    while True:
        value = rand_json(rng)
        if not valid(value):
            return value


def deep(rng: random.Random) -> Any:
    """A deeply nested array or object (JSON text stays well under the body limit)."""
    value: Any = rand_json(rng, 3)
    for _ in range(rng.randint(30, 400)):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def is_int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    """Validity of an integer field: a real int (not bool, not float) in [lo, hi]."""
    return lambda v: type(v) is int and lo <= v <= hi


def is_str_len(lo: int, hi: int) -> Callable[[Any], bool]:
    """Validity of a string field by length in code points."""
    return lambda v: isinstance(v, str) and lo <= len(v) <= hi


def bad_int(rng: random.Random, lo: int, hi: int) -> Any:
    """An invalid value for an int field bounded by [lo, hi]."""
    edge = [lo - 1, hi + 1, -1 if lo >= 0 else lo - 1000, *HUGE_INTS, str(lo), float(lo), True]
    if rng.random() < 0.5:
        return rng.choice([v for v in edge if not is_int_in(lo, hi)(v)])
    return rand_other(rng, is_int_in(lo, hi))


def bad_str(rng: random.Random, lo: int, hi: int) -> Any:
    """An invalid value for a string field of [lo, hi] code points."""
    if rng.random() < 0.5:
        return rand_other(rng, lambda v: isinstance(v, str))
    return "" if lo > 0 and rng.random() < 0.3 else rand_text(rng, 3) + "x" * (hi + 1)


def encode(rng: random.Random, value: Any) -> bytes:
    """JSON bytes of ``value``, sometimes ASCII-escaped, sometimes raw UTF-8."""
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    return text.encode("utf-8", "surrogatepass")


def invalid_utf8_inside_string(rng: random.Random, text: bytes) -> bytes:
    """``text`` (JSON with a string value) with bytes that are not UTF-8 inside that string."""
    at = text.index(b'": "') + 4
    junk = rng.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80"])
    return text[:at] + junk + text[at:]


# -- bad POST /v1/events bodies --------------------------------------------------------

NAIVE = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}"


def bad_opens_at(rng: random.Random) -> Any:
    """An opens_at that is no RFC 3339 time with a zone (or is no string at all)."""
    choice = rng.randrange(5)
    if choice == 0:
        return rand_other(rng, lambda v: isinstance(v, str))
    if choice == 1:  # naive: no time zone
        return NAIVE.format(
            rng.randint(2000, 2100),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
        )
    if choice == 2:  # impossible dates and times
        return rng.choice(
            [
                "2026-02-30T10:00:00Z",
                "2026-13-01T10:00:00Z",
                "2026-12-01T24:00:00Z",
                "2026-12-01T10:60:00Z",
                "2026-12-01T10:00:00+25:00",
                "2026-00-10T10:00:00Z",
            ]
        )
    if choice == 3:  # not a datetime at all
        return rng.choice(["", "now", "tomorrow", "2026-12-01", "10:00", "1733047200", "Z"])
    return "T" + rand_text(rng, 20)


def bad_section(rng: random.Random) -> Any:
    """A section object (or non-object) that breaks one rule."""
    base: dict[str, Any] = {"id": "S", "price_cents": 100, "capacity": 5}
    choice = rng.randrange(12)
    if choice == 0:
        return rand_other(rng, lambda v: isinstance(v, dict))
    if choice == 1:
        base["id"] = rng.choice(["", "-a", "_a", "a" * 33, "a b", "é", "a/b", "a.b", "a\x00"])
    elif choice == 2:
        base["id"] = rand_other(rng, lambda v: isinstance(v, str))
    elif choice == 3:
        base["price_cents"] = bad_int(rng, 0, 10_000_000)
    elif choice == 4:
        base["name"] = bad_str(rng, 0, 80)
    elif choice == 5:  # both rows and capacity
        base["rows"] = [{"label": "R1", "seats": rng.randint(1, 500)}]
    elif choice == 6:  # neither
        del base["capacity"]
        if rng.random() < 0.5:
            base["rows"] = []
    elif choice == 7:
        base["capacity"] = bad_int(rng, 1, 100_000)
        if base["capacity"] == 0:
            base["capacity"] = -1
    elif choice == 8:
        base[rng.choice(["colour", "seats", "Id", "ID", rand_text(rng, 6) + "_x"])] = rand_json(rng)
    else:  # a bad row
        del base["capacity"]
        row: Any = {"label": "R1", "seats": 4}
        which = rng.randrange(5)
        if which == 0:
            row["label"] = bad_str(rng, 1, 8)
        elif which == 1:
            row["seats"] = bad_int(rng, 1, 500)
        elif which == 2:
            row["extra"] = rand_json(rng)
        elif which == 3:
            row = rand_other(rng, lambda v: isinstance(v, dict))
        else:
            base["rows"] = [dict(row), dict(row)]  # duplicate labels
            return base
        base["rows"] = [row]
    return base


@dataclass
class Case:
    """One bad request: its category (for reporting), body bytes and expected status."""

    category: str
    content: bytes
    status: int = 400


def bad_event_bodies(rng: random.Random, count: int) -> Iterator[Case]:
    """``count`` invalid POST /v1/events bodies."""
    required = ["name", "opens_at", "sections"]
    for _ in range(count):
        body = event_body()
        choice = rng.randrange(17)
        if choice == 16:
            yield Case("invalid-utf8-in-string", invalid_utf8_inside_string(rng, encode(rng, body)))
            continue
        if choice == 0:
            yield Case("not-an-object", encode(rng, rand_other(rng, lambda v: isinstance(v, dict))))
            continue
        if choice == 1:
            yield Case("random-bytes", rng.randbytes(rng.randint(0, 300)))
            continue
        if choice == 2:
            text = encode(rng, body)
            yield Case("truncated", text[: rng.randrange(len(text))])
            continue
        if choice == 3:
            suffix = rng.choice([b"x", b"}", b"{}", b",", b"]", b"\x00", b"null"])
            yield Case("trailing-garbage", encode(rng, body) + suffix)
            continue
        if choice == 4:
            yield Case("deep-nesting", encode(rng, deep(rng)))
            continue
        if choice == 5:
            body[rng.choice(["max_per_order", "hold_seconds"])] = "@NAN@"
            text = encode(rng, body).replace(
                b'"@NAN@"', rng.choice([b"NaN", b"Infinity", b"-1e999"])
            )
            yield Case("non-json-number", text)
            continue
        if choice == 6:
            del body[rng.choice(required)]
            category = "missing-field"
        elif choice == 7:
            body[rng.choice(["Name", "id", "state", "extra", rand_text(rng, 10) + "_"])] = (
                rand_json(rng)
            )
            category = "unknown-field"
        elif choice == 8:
            body["name"] = bad_str(rng, 1, 200)
            category = "bad-name"
        elif choice == 9:
            body["opens_at"] = bad_opens_at(rng)
            category = "bad-opens-at"
        elif choice == 10:
            field_name, lo, hi = rng.choice(
                [
                    ("max_per_order", 1, 20),
                    ("hold_seconds", 1, 3_600),
                    ("max_active_holds", 1, 100_000),
                ]
            )
            body[field_name] = bad_int(rng, lo, hi)
            category = f"bad-{field_name}"
        elif choice == 11:
            body["sections"] = rng.choice(
                [[], rand_other(rng, lambda v: isinstance(v, list)), [body["sections"][0]] * 51]
            )
            category = "bad-sections"
        elif choice in (12, 13):
            body["sections"] = [bad_section(rng), *body["sections"][: rng.randint(0, 2)]]
            rng.shuffle(body["sections"])
            category = "bad-section"
        elif choice == 14:
            dup = {"id": "D", "price_cents": 1, "capacity": rng.randint(1, 50)}
            body["sections"] = [dup, *body["sections"], dict(dup)]
            category = "duplicate-section-ids"
        else:
            n = rng.randint(3, 10)
            body["sections"] = [
                {"id": f"S{i}", "price_cents": 1, "capacity": 100_000} for i in range(n)
            ]
            category = "over-200000-seats"
        yield Case(category, encode(rng, body))


def unstorable_event_bodies(rng: random.Random, count: int) -> Iterator[Case]:
    """Bodies the schema admits but the system cannot store: NUL in text, years past 9999/0."""
    for _ in range(count):
        body = event_body()
        nul = rand_text(rng, 5, controls=False) + "\x00" + rand_text(rng, 5, controls=False)
        choice = rng.randrange(4)
        if choice == 0:
            body["name"] = nul[:200] or "\x00"
        elif choice == 1:
            body["sections"][1]["name"] = nul[:80]
        elif choice == 2:
            body["sections"][0]["rows"][0]["label"] = "\x00" + rng.choice(["", "A", "1"])
        else:
            body["opens_at"] = rng.choice(
                ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+12:00", "9999-12-31T23:59:59-01:00",
                 "9999-12-31T23:00:00-23:59"]
            )  # fmt: skip
        yield Case("unstorable-value", encode(rng, body))


def bad_admin_headers(rng: random.Random) -> dict[str, bytes]:
    """Authorization headers (or none) that are not the admin key."""
    choice = rng.randrange(6)
    if choice == 0:
        return {}
    if choice == 1:
        value = "".join(rng.choice(ASCII) for _ in range(rng.randint(1, 60)))
    else:
        value = rng.choice(
            [
                "Bearer " + rand_text(rng, 30, controls=False),
                "Basic " + rand_text(rng, 20, controls=False),
                f"Bearer {ADMIN_KEY[:-1]}",
                f"Bearer {ADMIN_KEY}x",
                f"Token {ADMIN_KEY}",
                ADMIN_KEY,
                "Bearer",
            ]
        )
    # HTTP/1.1 refuses control characters and surrounding whitespace in header values.
    value = "".join(c for c in value if c.isprintable()).strip() or "x"
    return {"Authorization": value.encode("utf-8")}


# -- results ---------------------------------------------------------------------------


@dataclass
class Tally:
    """What was sent, and every answer that broke the contract."""

    sent: int = 0
    by_category: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def check(
        self, category: str, resp: httpx.Response, sent: Any, status: int | set[int] | None
    ) -> None:
        """Count one input and record a problem unless its answer is the expected 4xx JSON."""
        self.sent += 1
        self.by_category[category] += 1
        problem = _response_problem(resp, status)
        if problem:
            self.problems[category].append(f"{problem} <- {sent!r:.200}")

    def report(self) -> str:
        """A summary of every category that broke the contract, with its first examples."""
        lines = []
        for category, problems in sorted(self.problems.items()):
            lines.append(f"{category}: {len(problems)} of {self.by_category[category]} inputs")
            lines += [f"    {p}" for p in problems[:3]]
        return "\n".join(lines)


def _response_problem(resp: httpx.Response, status: int | set[int] | None) -> str | None:
    """What is wrong with an answer to a bad input (None: nothing)."""
    allowed = {status} if isinstance(status, int) else status
    if not 400 <= resp.status_code < 500 or (allowed and resp.status_code not in allowed):
        return f"answered {resp.status_code} {resp.text[:120]!r}"
    if not resp.headers.get("content-type", "").startswith("application/json"):
        return f"answered {resp.status_code} with {resp.headers.get('content-type')!r}"
    try:
        body = resp.json()
    except ValueError:
        return f"answered {resp.status_code} with a body that is not JSON"
    if not (isinstance(body, dict) and set(body) == {"error", "message"}):
        return f"answered {resp.status_code} with {body!r:.120}"
    return None


# -- REST -----------------------------------------------------------------------------


async def test_fuzzed_event_bodies_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Hundreds of invalid POST /v1/events bodies and auth headers: all 4xx JSON, no event created."""
    rng = random.Random(20_261_101)
    tally = Tally()
    before = await count_events(services)
    started = time.monotonic()

    for case in bad_event_bodies(rng, 640):
        resp = await http.post(
            "/v1/events",
            content=case.content,
            headers={**admin_headers(), "Content-Type": "application/json"},
        )
        tally.check(case.category, resp, case.content, case.status)
    for case in unstorable_event_bodies(rng, 20):
        resp = await http.post(
            "/v1/events",
            content=case.content,
            headers={**admin_headers(), "Content-Type": "application/json"},
        )
        tally.check(case.category, resp, case.content, 400)
    valid = json.dumps(event_body()).encode()
    for _ in range(80):
        headers = bad_admin_headers(rng)
        resp = await http.post("/v1/events", content=valid, headers=headers)
        tally.check("bad-admin-auth", resp, headers, 401)

    assert await count_events(services) == before, "a bad request created an event"
    assert tally.sent >= EVENT_BODIES_MIN, tally.sent
    assert time.monotonic() - started < 60
    assert not tally.problems, f"{tally.sent} bad inputs sent; contract broken:\n{tally.report()}"


async def test_fuzzed_payment_requests_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Invalid payment bodies, tokens, idempotency keys and hold paths: all 4xx, nothing paid."""
    rng = random.Random(20_261_102)
    tally = Tally()
    event = await create_event(http)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        queued = await join(ws, "fuzz-buyer", 2, "A")
        prompt = await expect(ws, p.Prompt)
        token, hold_id, seq = prompt.hold_token, prompt.hold_id, queued.ticket
        before = await event_state(http, event_id)
        url = f"/v1/holds/{hold_id}/payment"

        def auth(value: str = token) -> dict[str, str]:
            return {"Authorization": f"Bearer {value}", "Idempotency-Key": new_key("fuzz")}

        # Bodies: valid token and key, invalid body.
        for _ in range(200):
            choice = rng.randrange(10)
            if choice == 0:
                category = "payment-body-not-an-object"
                content = encode(rng, rand_other(rng, lambda v: isinstance(v, dict)))
            elif choice == 1:
                category, content = "payment-body-random-bytes", rng.randbytes(rng.randint(0, 200))
            elif choice == 2:
                category = "payment-body-card-not-a-string"
                content = encode(rng, {"card_token": rand_other(rng, lambda v: isinstance(v, str))})
            elif choice == 3:
                category = "payment-body-card-length"
                content = encode(rng, {"card_token": rng.choice(["", "tok_visa" + "x" * 128])})
            elif choice == 4:  # an unknown field next to a card that would pay
                category = "payment-body-unknown-field"
                content = encode(rng, {"card_token": "tok_visa", rand_text(rng, 8) + "_": 1})
            elif choice == 5:
                category, content = "payment-body-missing-card", encode(rng, {})
            elif choice == 6:
                category, content = "payment-body-deep-nesting", encode(rng, deep(rng))
            elif choice == 7:
                category = "payment-body-truncated"
                text = encode(rng, {"card_token": "tok_visa"})
                content = text[: rng.randrange(len(text))]
            elif choice == 8:
                category = "payment-body-invalid-utf8-in-string"
                content = invalid_utf8_inside_string(rng, encode(rng, {"card_token": "tok_visa"}))
            else:  # a card that would pay, and an address that is not one
                category = "payment-body-bad-email"
                email = rng.choice(
                    [
                        rand_other(rng, lambda v: isinstance(v, str) or v is None),
                        rand_text(rng, 30),
                        "buyer@example.com\r\nBcc: all@example.com",
                        "buyer@example.com\n",
                        "Buyer <buyer@example.com>",
                        "buyer@" + "x" * 250 + ".com",
                        "@example.com",
                        "buyer@",
                        "buyer@localhost",
                        "bü@example.com",
                    ]
                )
                if isinstance(email, str) and _is_an_address(email):
                    email = email + " "
                content = encode(rng, {"card_token": "tok_visa", "email": email})
            resp = await http.post(url, content=content, headers=auth())
            tally.check(category, resp, content, 400)

        # Credentials: a body that would pay, a token that is not this hold's genuine token
        # (or is, but has run out: the hold has, so that is a 409 like any expired hold).
        other_secret = "fuzz-secret-" + "".join(rng.choice(ASCII) for _ in range(20))
        for _ in range(160):
            choice = rng.randrange(7)
            category, status = "bad-hold-token", 401
            if choice == 0:  # one character of the genuine token changed
                i = rng.randrange(len(token))
                c = rng.choice(
                    [ch for ch in string.ascii_letters + string.digits + "._-" if ch != token[i]]
                )
                bad = token[:i] + c + token[i + 1 :]
            elif choice == 1:
                bad = token[: rng.randrange(1, len(token))]
            elif choice == 2:
                bad = token + rng.choice([".x", "x", "=", ".", "=="])
            elif choice == 3:
                bad = sign(event_id, seq, secret=other_secret)
            elif choice == 4:
                bad = sign(event_id, seq, ttl_s=-rng.randint(1, 10**6))
                category, status = "expired-hold-token", 409
            elif choice == 5:
                bad = sign(event_id, seq, kind=TokenKind.QUEUE)
            else:
                bad = "".join(rng.choice(ASCII) for _ in range(rng.randint(1, 80))).strip() or "x"
            resp = await http.post(url, json={"card_token": "tok_visa"}, headers=auth(bad))
            tally.check(category, resp, bad, status)
        for _ in range(20):
            headers = bad_admin_headers(rng)  # random schemes, missing header
            headers["Idempotency-Key"] = new_key().encode()
            resp = await http.post(url, json={"card_token": "tok_visa"}, headers=headers)
            tally.check("bad-authorization-header", resp, headers, 401)

        # Idempotency keys: genuine token, a card that would be declined, an invalid key.
        for _ in range(70):
            choice = rng.randrange(4)
            if choice == 0:
                key = b""
            elif choice == 1:
                key = ("k" * rng.randint(129, 400)).encode()
            elif choice == 2:
                key = b"a\t" + rng.choice([b"b", b"key"])
            else:  # Latin-1 characters that are not printable (NEL, NBSP, soft hyphen)
                key = b"k" + bytes([rng.choice([0x85, 0xA0, 0xAD, 0x9F])]) + b"y"
            headers_b = [(b"authorization", f"Bearer {token}".encode()), (b"idempotency-key", key)]
            resp = await http.post(url, json={"card_token": "tok_declined"}, headers=headers_b)
            tally.check("bad-idempotency-key", resp, key, 400)

        # Hold paths: a genuine token sent to a path that is not its hold.
        for _ in range(80):
            choice = rng.randrange(5)
            if choice == 0:
                path_id = f"{event_id}.{rng.choice([0, seq + 1, seq + 1_000, 2**63, 10**30])}"
            elif choice == 1:
                path_id = f"{event_id}.{rng.choice(['²', '①', '⑩', '½', '1²', '³3', '٣x'])}"
            elif choice == 2:
                path_id = rand_text(rng, 30) or "x"
            elif choice == 3:
                path_id = f"{event_id}x.{seq}"
            else:
                path_id = f"{event_id}.{seq}{rng.choice(['x', '.', '-', ' ', 'e3'])}"
            resp = await pay(http, quote(path_id, safe=""), token, new_key(), "tok_declined")
            category = "hold-path-unicode-digit-seq" if choice == 1 else "hold-path"
            tally.check(category, resp, path_id, {403, 404})

        after = await event_state(http, event_id)
        assert after == before, "bad payment requests changed the event"
        assert await count_bookings(services, event_id) == 0
        assert tally.sent >= PAYMENT_INPUTS_MIN, tally.sent
        # The hold is still payable with its genuine token.
        ok = await pay(http, hold_id, token, new_key("fuzz-final"))
        assert ok.status_code == 200, ok.text
    assert not tally.problems, f"{tally.sent} bad inputs sent; contract broken:\n{tally.report()}"


async def test_fuzzed_cancellations_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Invalid cancel bodies, idempotency keys and tokens on a real booking: all 4xx JSON, the
    booking untouched, no seat returned."""
    rng = random.Random(20_261_104)
    tally = Tally()
    event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        queued = await join(ws, "fuzz-canceller", 2, "A")
        prompt = await expect(ws, p.Prompt)
        paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key("fuzz-cx"))
        assert paid.status_code == 200, paid.text
    booking = paid.json()
    codes = [t["code"] for t in booking["tickets"]]
    url = f"/v1/bookings/{booking['id']}/cancel"
    token = prompt.hold_token
    before = await event_state(http, event["id"])

    def auth(value: str = token) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}", "Idempotency-Key": new_key("fuzz")}

    for _ in range(120):
        choice = rng.randrange(7)
        status = 400
        if choice == 0:
            category = "cancel-body-not-an-object"
            content = encode(rng, rand_other(rng, lambda v: isinstance(v, dict)))
        elif choice == 1:
            category, content = "cancel-body-random-bytes", rng.randbytes(rng.randint(1, 200))
        elif choice == 2:
            category = "cancel-body-tickets-not-a-list"
            bad = rand_other(rng, lambda v: v is None or isinstance(v, list))
            content = encode(rng, {"tickets": bad})
        elif choice == 3:
            category = "cancel-body-code-not-a-string"
            content = encode(rng, {"tickets": [rand_other(rng, lambda v: isinstance(v, str))]})
        elif choice == 4:
            category = "cancel-body-unknown-field"
            content = encode(rng, {"tickets": codes[:1], rand_text(rng, 8) + "_": 1})
        elif choice == 5:
            category, status = "cancel-body-empty-or-repeated", 422
            content = encode(rng, {"tickets": rng.choice([[], [codes[0], codes[0]]])})
        else:
            category = "cancel-body-truncated"
            text = encode(rng, {"tickets": codes})
            content = text[: rng.randrange(1, len(text))]
        tally.check(
            category, await http.post(url, content=content, headers=auth()), content, status
        )
    valid = encode(rng, {"tickets": codes[:1]})
    for _ in range(60):
        choice = rng.randrange(3)
        if choice == 0:
            i = rng.randrange(len(token))
            forged = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
            resp = await http.post(url, content=valid, headers=auth(forged))
            tally.check("cancel-forged-token", resp, forged, 401)
        elif choice == 1:
            other = sign(event["id"], queued.ticket + 1 + rng.randrange(50))
            resp = await http.post(url, content=valid, headers=auth(other))
            tally.check("cancel-another-holds-token", resp, other, 403)
        else:
            key = rng.choice(["", "k" * rng.randint(129, 300), "bad\tkey"])
            headers = {"Authorization": f"Bearer {token}"}
            if key:
                headers["Idempotency-Key"] = key
            resp = await http.post(url, content=valid, headers=headers)
            tally.check("cancel-bad-idempotency-key", resp, key, 400)
    for _ in range(30):
        ident = quote(rand_text(rng, 30) or "x", safe="")
        resp = await http.post(f"/v1/bookings/{ident}/cancel", content=valid, headers=auth())
        tally.check("cancel-unknown-booking", resp, ident, 404)

    got = await http.get(f"/v1/bookings/{booking['id']}", headers=admin_headers())
    assert got.json()["status"] == "confirmed" and all(t["live"] for t in got.json()["tickets"])
    assert await event_state(http, event["id"]) == before
    assert tally.sent >= CANCEL_INPUTS_MIN, tally.sent


def _no_controls(limit: int) -> Callable[[Any], bool]:
    """Validity of a check-in code, a gate or a staff key's label: 1-``limit`` characters,
    none of them a control character."""
    return lambda v: (
        isinstance(v, str) and 1 <= len(v) <= limit and not any(c in CONTROL for c in v)
    )


def bad_checkin_bodies(rng: random.Random, count: int, code: str) -> Iterator[tuple[str, bytes]]:
    """``count`` (category, body) of POST /v1/checkin that must each be a 422."""
    for _ in range(count):
        choice = rng.randrange(12)
        good = {"code": code, "gate": "Fuzz gate"}
        if choice == 0:
            yield (
                "checkin-not-an-object",
                encode(rng, rand_other(rng, lambda v: isinstance(v, dict))),
            )
        elif choice == 1:
            yield "checkin-random-bytes", rng.randbytes(rng.randint(0, 200))
        elif choice in (2, 3):
            field = rng.choice(["code", "gate"])
            limit = 256 if field == "code" else 64
            value = rand_other(rng, _no_controls(limit))
            yield f"checkin-bad-{field}", encode(rng, {**good, field: value})
        elif choice == 4:
            field = rng.choice(["code", "gate"])
            value = rng.choice(["", "x" * (257 if field == "code" else 65)])
            yield f"checkin-{field}-length", encode(rng, {**good, field: value})
        elif choice == 5:
            field = rng.choice(["code", "gate"])
            text = good[field]
            at = rng.randrange(len(text) + 1)
            value = text[:at] + rng.choice(CONTROL) + text[at:]
            yield f"checkin-{field}-control-character", encode(rng, {**good, field: value})
        elif choice == 6:
            yield "checkin-unknown-field", encode(rng, {**good, rand_text(rng, 8) + "_": 1})
        elif choice == 7:
            yield "checkin-missing-field", encode(rng, {rng.choice(["code", "gate"]): code})
        elif choice == 8:
            yield "checkin-deep-nesting", encode(rng, deep(rng))
        elif choice == 9:
            text = encode(rng, good)
            yield "checkin-truncated", text[: rng.randrange(len(text))]
        elif choice == 10:
            yield "checkin-invalid-utf8", invalid_utf8_inside_string(rng, encode(rng, good))
        else:  # a lone surrogate, escaped: not a string PostgreSQL could store
            lone = rng.choice(["\\ud800", "\\udfff", "\\udbff"])
            yield "checkin-lone-surrogate", f'{{"code": "a{lone}", "gate": "g"}}'.encode()


async def test_fuzzed_checkin_requests_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Invalid check-in bodies (422), credentials that are no staff key in force (401; for the
    door's counts also, and 403 for another event's staff key), codes the key's event has no
    ticket of (404) and invalid staff-key labels (400): all 4xx JSON, no ticket let in, no key
    made; the genuine scan still lets the ticket in."""
    rng = random.Random(20_261_104)
    tally = Tally()
    event = await create_event(http)
    event_id = event["id"]
    async with ws_connect(event["waitroom_url"]) as ws:
        await join(ws, "fuzz-door", 1, "A")
        prompt = await expect(ws, p.Prompt)
    paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key("door"))
    assert paid.status_code == 200, paid.text
    code = paid.json()["tickets"][0]["code"]
    keys = f"/v1/events/{event_id}/staff-keys"
    made = await http.post(keys, json={"label": "Fuzz"}, headers=admin_headers())
    revoked = await http.post(keys, json={"label": "Gone"}, headers=admin_headers())
    assert made.status_code == revoked.status_code == 201, (made.text, revoked.text)
    gone = await http.delete(f"{keys}/{revoked.json()['id']}", headers=admin_headers())
    assert gone.status_code == 200, gone.text
    staff = {"Authorization": f"Bearer {made.json()['key']}", "Content-Type": "application/json"}

    for category, content in bad_checkin_bodies(rng, 240, code):
        resp = await http.post("/v1/checkin", content=content, headers=staff)
        tally.check(category, resp, content, 422)

    valid = json.dumps({"code": code, "gate": "Fuzz gate"}).encode()
    key = made.json()["key"]
    for _ in range(80):
        choice = rng.randrange(5)
        headers: dict[str, bytes] = {}
        if choice == 0:
            headers = bad_admin_headers(rng)
        elif choice == 1:
            headers = {"Authorization": f"Bearer {revoked.json()['key']}".encode()}
        elif choice == 2:
            i = rng.randrange(3, len(key))
            c = rng.choice([ch for ch in string.ascii_letters + string.digits if ch != key[i]])
            headers = {"Authorization": f"Bearer {key[:i]}{c}{key[i + 1 :]}".encode()}
        elif choice == 3:
            headers = {"Authorization": f"Bearer {key[: rng.randrange(1, len(key))]}".encode()}
        else:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}".encode()}
        headers["Content-Type"] = b"application/json"
        resp = await http.post("/v1/checkin", content=valid, headers=headers)
        tally.check("checkin-not-a-staff-key", resp, headers, 401)

    # The door's counts: the admin key or a staff key of the event, nothing else.
    counts = f"/v1/events/{event_id}/checkins"
    for _ in range(60):
        choice = rng.randrange(4)
        if choice == 0:
            headers = bad_admin_headers(rng)
        elif choice == 1:
            headers = {"Authorization": f"Bearer {revoked.json()['key']}".encode()}
        elif choice == 2:
            i = rng.randrange(3, len(key))
            c = rng.choice([ch for ch in string.ascii_letters + string.digits if ch != key[i]])
            headers = {"Authorization": f"Bearer {key[:i]}{c}{key[i + 1 :]}".encode()}
        else:
            headers = {"Authorization": f"Bearer {key[: rng.randrange(1, len(key))]}".encode()}
        resp = await http.get(counts, headers=headers)
        tally.check("checkin-counts-not-a-key", resp, headers, 401)
    elsewhere = (await create_event(http))["id"]
    theirs = await http.post(
        f"/v1/events/{elsewhere}/staff-keys", json={"label": "Theirs"}, headers=admin_headers()
    )
    assert theirs.status_code == 201, theirs.text
    their_key = {"Authorization": f"Bearer {theirs.json()['key']}".encode()}
    for _ in range(5):
        resp = await http.get(counts, headers=their_key)
        tally.check("checkin-counts-another-events-key", resp, their_key, 403)

    for _ in range(60):
        other = (rand_text(rng, 60, controls=False) or "x").strip() or "x"
        if other == code:
            continue
        body = json.dumps({"code": other, "gate": "Fuzz gate"}).encode()
        resp = await http.post("/v1/checkin", content=body, headers=staff)
        tally.check("checkin-unknown-code", resp, other, 404)

    for _ in range(40):
        label = rand_other(rng, _no_controls(64))
        body = encode(rng, {"label": label})
        resp = await http.post(keys, content=body, headers=admin_headers())
        tally.check("staff-key-bad-label", resp, body, 400)

    listed = await http.get(keys, headers=admin_headers())
    assert [k["label"] for k in listed.json()["keys"]] == ["Fuzz"]
    in_at = await pg_value(services, "SELECT checked_in_at FROM tickets WHERE code = $1", code)
    assert in_at is None, "a bad check-in let the ticket in"
    logged = await pg_value(
        services,
        "SELECT count(*) FROM event_log WHERE event_id = $1 AND kind = 'ticket_checked_in'",
        event_id,
    )
    assert logged == 0
    assert tally.sent >= CHECKIN_INPUTS_MIN, tally.sent
    ok = await http.post("/v1/checkin", content=valid, headers=staff)
    assert ok.status_code == 200, ok.text


#: URLs of the body's shape (http(s), no space) that no request could be sent to.
UNSENDABLE_URLS = (
    "http://a..b/hook",  # an empty label
    "https://" + "a" * 64 + ".example/",  # a label over 63 characters
    "http://./",
    "http://x\u0080y/",  # not a host name in any encoding
    "http://bad\u0000host/",
    "http://[::1/",  # an unclosed IPv6 literal
    "http://[zz::1]/",
    "http://integrator.example:port/",
    "http://integrator.example:0/",
    "http://integrator.example:70000/",
    "https:///no-host",
    "http://user@/",
)


def bad_webhook_bodies(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """Webhook bodies that are not one absolute http(s) URL of at most 2,000 characters,
    with ``batch`` a boolean if at all."""
    good = {"url": "https://integrator.example/hook"}
    for _ in range(count):
        choice = rng.randrange(10)
        if choice == 0:
            yield "webhook-not-json", rand_text(rng, 30).encode("utf-8", "surrogatepass")
        elif choice == 1:
            yield "webhook-url-missing", encode(rng, {})
        elif choice == 2:
            yield "webhook-extra-field", encode(rng, {**good, rand_text(rng, 10) + "x": 1})
        elif choice == 3:
            yield "webhook-url-not-a-string", encode(rng, {"url": rand_json(rng)})
        elif choice == 4:
            scheme = rng.choice(["ftp", "file", "javascript", "", "http:/", "HTTPS"])
            yield "webhook-url-scheme", encode(rng, {"url": f"{scheme}://x/{rand_text(rng, 9)}"})
        elif choice == 5:
            yield "webhook-url-too-long", encode(rng, {"url": "https://x/" + "a" * 2_000})
        elif choice == 6:
            space = rng.choice([" ", "\n", "\t"])
            yield "webhook-url-space", f'{{"url": "https://a{space}b/"}}'.encode()
        elif choice == 7:
            yield "webhook-url-unsendable", encode(rng, {"url": rng.choice(UNSENDABLE_URLS)})
        elif choice == 8:
            batch = rand_other(rng, lambda v: isinstance(v, bool))
            yield "webhook-batch-not-a-boolean", encode(rng, {**good, "batch": batch})
        else:
            yield "webhook-body-not-object", encode(rng, rng.choice([[good], "x", 1, None]))


async def test_fuzzed_webhook_requests_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Invalid webhook bodies (400), no admin key (401), unknown webhooks (404): all 4xx
    JSON, no webhook registered, nothing logged."""
    rng = random.Random(20_261_130)
    tally = Tally()
    event_id = (await create_event(http))["id"]
    hooks = f"/v1/events/{event_id}/webhooks"
    for category, content in bad_webhook_bodies(rng, 160):
        headers = {**admin_headers(), "Content-Type": "application/json"}
        resp = await http.post(hooks, content=content, headers=headers)
        tally.check(category, resp, content, 400)
    for host in ("a" * 64 + ".example", "x." + "b" * 70, "..example"):
        content = json.dumps({"url": f"https://{host}/hook"}).encode()
        headers = {**admin_headers(), "Content-Type": "application/json"}
        resp = await http.post(hooks, content=content, headers=headers)
        tally.check("webhook-url-host-not-idna", resp, content, 400)
    good = json.dumps({"url": "https://integrator.example/hook"}).encode()
    for _ in range(30):
        resp = await http.post(hooks, content=good, headers=bad_admin_headers(rng))
        tally.check("webhook-not-admin", resp, good, 401)
    for _ in range(20):
        other = quote(rand_text(rng, 30, controls=False) or "x", safe="")
        for method, path in (
            ("DELETE", f"{hooks}/{other}"),
            ("POST", f"{hooks}/{other}/redeliver"),
        ):
            resp = await http.request(method, path, headers=admin_headers())
            tally.check("webhook-unknown", resp, other, {404, 405})
    assert not tally.problems, tally.report()
    listed = await http.get(hooks, headers=admin_headers())
    assert listed.json() == {"webhooks": []}
    logged = await pg_value(
        services,
        "SELECT count(*) FROM event_log WHERE event_id = $1 AND kind LIKE 'webhook%'",
        event_id,
    )
    assert logged == 0
    assert tally.sent >= 200, tally.sent


async def test_fuzzed_report_requests_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """The report without the admin key (401), of unknown events (404), by other methods
    (405): all 4xx JSON; nothing logged, the report unchanged, and random query strings
    change nothing of it either."""
    rng = random.Random(20_261_130)
    tally = Tally()
    event_id = (await create_event(http, opens_at=FUTURE))["id"]  # nothing logged meanwhile
    report = f"/v1/events/{event_id}/report"
    logged = "SELECT count(*) FROM event_log WHERE event_id = $1"
    before_log = await pg_value(services, logged, event_id)
    with anyio.fail_after(30):  # the worker's projector applies the event's creation
        while True:
            before = await http.get(report, headers=admin_headers())
            if before.json()["as_of_seq"] >= before_log:
                break
            await anyio.sleep(0.05)
    for _ in range(60):
        headers = bad_admin_headers(rng)
        tally.check("report-not-admin", await http.get(report, headers=headers), headers, 401)
    for _ in range(60):
        other = quote(rand_text(rng, 30) or "x", safe="")
        resp = await http.get(f"/v1/events/{other}/report", headers=admin_headers())
        tally.check("report-unknown-event", resp, other, 404)
    for _ in range(30):
        method = rng.choice(["POST", "PUT", "DELETE", "PATCH"])
        resp = await http.request(method, report, headers=admin_headers(), content=b"{}")
        tally.check("report-method", resp, method, 405)
    assert not tally.problems, tally.report()
    for _ in range(20):
        query = quote(rand_text(rng, 20, controls=False) or "x", safe="=&")
        resp = await http.get(f"{report}?{query}", headers=admin_headers())
        assert resp.status_code == 200 and resp.content == before.content, (query, resp.text)
    assert await pg_value(services, logged, event_id) == before_log
    after = await http.get(report, headers=admin_headers())
    assert after.content == before.content
    assert tally.sent >= 150, tally.sent


def _is_an_address(value: str) -> bool:
    """Whether a payment would take ``value`` as its mail address."""
    from api.http.schemas import PaymentBody

    try:
        msgspec.json.decode(json.dumps({"card_token": "t", "email": value}), type=PaymentBody)
    except msgspec.ValidationError:
        return False
    return True


async def test_fuzzed_reads_of_a_booking_and_its_tickets_are_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Mutated, forged, expired and other bookings' tokens on a booking, its PDF and a
    ticket's QR code are 401/403; codes that are not its tickets', and unknown events'
    ticket keys, are 404; the booking reads the same afterwards."""
    rng = random.Random(20_261_130)
    tally = Tally()
    event = await create_event(http)
    event_id = event["id"]
    bookings = []
    for n in (1, 2):
        async with ws_connect(event["waitroom_url"]) as ws:
            queued = await join(ws, f"reader-{n}", 1, "A")
            prompt = await expect(ws, p.Prompt)
            paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key("reads"))
            assert paid.status_code == 200, paid.text
            bookings.append((queued.ticket, paid.json()))
    (seq, mine), (_, other) = bookings
    token, code = mine["booking_token"], mine["tickets"][0]["code"]
    base = f"/v1/bookings/{mine['id']}"
    targets = [base, f"{base}/tickets.pdf", f"{base}/tickets/{quote(code, safe='')}/qr.svg"]
    other_secret = "fuzz-secret-" + "".join(rng.choice(ASCII) for _ in range(20))
    for _ in range(150):
        choice = rng.randrange(7)
        category, status = "bad-booking-token", 401
        if choice == 0:  # one character of the genuine token changed
            i = rng.randrange(len(token))
            c = rng.choice(
                [ch for ch in string.ascii_letters + string.digits + "._-" if ch != token[i]]
            )
            bad = token[:i] + c + token[i + 1 :]
        elif choice == 1:
            bad = token[: rng.randrange(1, len(token))]
        elif choice == 2:
            bad = sign(event_id, seq, kind=TokenKind.BOOKING, secret=other_secret)
        elif choice == 3:
            bad = sign(event_id, seq, kind=TokenKind.BOOKING, ttl_s=-rng.randint(1, 10**6))
        elif choice == 4:
            bad = other["booking_token"]
            category, status = "other-bookings-token", 403
        elif choice == 5:
            bad = sign(event_id, seq, kind=TokenKind.QUEUE)
        else:
            bad = "".join(rng.choice(ASCII) for _ in range(rng.randint(1, 80))).strip() or "x"
        target = rng.choice(targets)
        resp = await http.get(target, headers={"Authorization": f"Bearer {bad}"})
        tally.check(category, resp, (target, bad), status)
    for _ in range(60):
        choice = rng.randrange(4)
        if choice == 0:
            bad_code = other["tickets"][0]["code"]
        elif choice == 1:
            i = rng.randrange(len(code))
            bad_code = (
                code[:i] + rng.choice([ch for ch in "AZaz09_-." if ch != code[i]]) + code[i + 1 :]
            )
        elif choice == 2:
            bad_code = rand_text(rng, 60) or "x"
        else:
            bad_code = code + rng.choice(["x", ".", "=", "%00"])
        resp = await http.get(
            f"{base}/tickets/{quote(bad_code, safe='')}/qr.svg",
            headers={"Authorization": f"Bearer {token}"},
        )
        tally.check("code-not-in-booking", resp, bad_code, 404)
    for _ in range(40):
        ident = rand_text(rng, 30) or "x"
        resp = await http.get(f"/v1/events/{quote(ident, safe='')}/ticket-key")
        tally.check("ticket-key-of-unknown-event", resp, ident, 404)
    again = await http.get(base, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 200 and again.json() == mine
    assert tally.sent >= 250, tally.sent
    assert not tally.problems, f"{tally.sent} bad inputs sent; contract broken:\n{tally.report()}"


async def test_fuzzed_paths_of_unknown_resources_are_404_json(http: httpx.AsyncClient) -> None:
    """Random event, booking and route paths answer 4xx JSON (404 for unknown ids), never 5xx."""
    rng = random.Random(20_261_103)
    tally = Tally()
    for _ in range(120):
        ident = rand_text(rng, 30) or "x"
        quoted = quote(ident, safe="")
        nul = " (id has NUL)" if "\x00" in ident else ""
        choice = rng.randrange(4)
        if choice == 0:
            resp = await http.get(f"/v1/events/{quoted}")
            tally.check("unknown-event" + nul, resp, ident, 404)
        elif choice == 1:
            resp = await http.get(f"/v1/bookings/{quoted}", headers=admin_headers())
            tally.check("unknown-booking" + nul, resp, ident, 404)
        elif choice == 2:
            action = rng.choice(["pause", "resume", "close"])
            resp = await http.post(f"/v1/events/{quoted}/{action}", headers=admin_headers())
            tally.check("unknown-event-admission" + nul, resp, ident, 404)
        else:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
            resp = await http.request(method, f"/v2/{quoted}/{rand_text(rng, 5, controls=False)}")
            tally.check("unknown-route", resp, (method, ident), 404)
    assert tally.sent >= PATHS_MIN
    assert not tally.problems, f"{tally.sent} bad inputs sent; contract broken:\n{tally.report()}"


# -- WebSocket ----------------------------------------------------------------------


@dataclass
class Frame:
    """One bad WebSocket frame and the error code it must get."""

    category: str
    data: str | bytes
    code: str = "invalid_message"


def _text(value: Any, rng: random.Random) -> str:
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def bad_frames(
    rng: random.Random, count: int, *, event_id: str, other_event_id: str, max_per_order: int
) -> Iterator[Frame]:
    """``count`` frames that must each be answered with an ``error``, none of them a place."""
    client_id_ok = is_str_len(1, 64)
    sections = {"A", "GA"}
    made = 0
    while made < count:
        join_msg: dict[str, Any] = {"type": "join", "quantity": 1, "client_id": f"c{made}"}
        choice = rng.randrange(17)
        frame: Frame
        if choice == 16:
            data = invalid_utf8_inside_string(rng, json.dumps(join_msg).encode())
            frame = Frame("invalid-utf8-in-string", data, "binary_frame")
        elif choice == 0:  # text that is not a message
            frame = Frame("random-text", rand_text(rng, 60, controls=True))
        elif choice == 1:
            frame = Frame("random-bytes", rng.randbytes(rng.randint(1, 200)), "binary_frame")
        elif choice == 2:
            frame = Frame(
                "not-an-object", _text(rand_other(rng, lambda v: isinstance(v, dict)), rng)
            )
        elif choice == 3:
            frame = Frame("truncated", _text(join_msg, rng)[: rng.randint(0, 30)])
        elif choice == 4:
            msg = rand_json(rng, 2) if rng.random() < 0.3 else {}
            if not isinstance(msg, dict):
                msg = {}
            msg["type"] = rng.choice(
                ["JOIN", "Join", " join", "leave", "queued", "prompt", "error", "position", "",
                 rand_text(rng, 10), 1, None, ["join"]]
            )  # fmt: skip
            frame = Frame("bad-type", _text(msg, rng))
        elif choice == 5:
            join_msg["quantity"] = bad_int(rng, 1, 100)
            frame = Frame("bad-quantity", _text(join_msg, rng))
        elif choice == 6:
            cid = rng.choice(
                [
                    "",
                    "x" * 65,
                    "a b",
                    "ü",
                    "a/b",
                    "a\x00",
                    "<script>",
                    rand_other(rng, client_id_ok),
                ]
            )
            join_msg["client_id"] = cid
            frame = Frame("bad-client-id", _text(join_msg, rng))
        elif choice == 7:
            join_msg["section"] = rng.choice(
                ["", "S" * 33, rand_other(rng, lambda v: isinstance(v, str) or v is None)]
            )
            frame = Frame("bad-section-type", _text(join_msg, rng))
        elif choice == 8:
            del join_msg[rng.choice(["quantity", "client_id", "type"])]
            frame = Frame("missing-field", _text(join_msg, rng))
        elif choice == 9:
            join_msg[rng.choice(["vip", "ticket", "token", rand_text(rng, 6) + "_"])] = rand_json(
                rng
            )
            frame = Frame("unknown-field", _text(join_msg, rng))
        elif choice == 10:
            join_msg["quantity"] = rng.randint(max_per_order + 1, 100)
            frame = Frame("over-max-per-order", _text(join_msg, rng), "invalid_quantity")
        elif choice == 11:
            section = rand_text(rng, 32, controls=False) or "Z"
            if section in sections:
                continue
            join_msg["section"] = section
            frame = Frame("unknown-section", _text(join_msg, rng), "invalid_section")
        elif choice == 12:
            resume: dict[str, Any] = {"type": "resume"}
            pick = rng.randrange(4)
            if pick == 1:
                resume["token"] = rng.choice(["", "t" * 257])
            elif pick == 2:
                resume["token"] = rand_other(rng, lambda v: isinstance(v, str))
            elif pick == 3:
                resume["token"], resume["extra"] = "x", rand_json(rng)
            frame = Frame("bad-resume", _text(resume, rng))
        elif choice == 13:
            genuine = sign(event_id, rng.randint(1, 50), kind=TokenKind.QUEUE)
            i = rng.randrange(len(genuine))
            c = rng.choice(
                [ch for ch in string.ascii_letters + string.digits + "._-" if ch != genuine[i]]
            )
            token = genuine[:i] + c + genuine[i + 1 :]
            frame = Frame(
                "mutated-token", _text({"type": "resume", "token": token}, rng), "invalid_token"
            )
        elif choice == 14:
            token = rng.choice(
                [
                    sign(event_id, 1, kind=TokenKind.HOLD),
                    sign(other_event_id, 1, kind=TokenKind.QUEUE),
                    sign(event_id, 1, kind=TokenKind.QUEUE, ttl_s=-5),
                    sign(event_id, 1, kind=TokenKind.QUEUE, secret="fuzz-secret-0123456789ab"),
                ]
            )
            frame = Frame(
                "wrong-token", _text({"type": "resume", "token": token}, rng), "invalid_token"
            )
        else:
            token = rand_text(rng, 100, controls=False) or "t"
            frame = Frame(
                "random-token", _text({"type": "resume", "token": token}, rng), "invalid_token"
            )
        size = len(frame.data.encode() if isinstance(frame.data, str) else frame.data)
        if size > MAX_FRAME:
            continue
        made += 1
        yield frame


async def _send_bad_frames(
    ws: WsConnection, frames: list[Frame], problems: dict[str, list[str]]
) -> list[Frame]:
    """Send frames, checking each answer; the frames left unsent if the socket broke."""
    for i, frame in enumerate(frames):
        await ws.send(frame.data)
        try:
            answer = await recv(ws, wait_s=5)
        except (ConnectionClosed, TimeoutError) as exc:  # closed or silent: record, reconnect
            problems[frame.category].append(f"no answer ({exc!r:.80}) <- {frame.data!r:.200}")
            return frames[i + 1 :]
        if not (isinstance(answer, p.Error) and answer.code == frame.code and answer.message):
            problems[frame.category].append(f"answered {answer!r:.120} <- {frame.data!r:.200}")
    return []


async def test_fuzzed_ws_frames_get_errors_and_leave_the_socket_usable(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Each bad frame gets an error message, the socket stays open, a join then works, no state change."""
    rng = random.Random(20_261_104)
    event = await create_event(http, opens_at=FUTURE)
    other = await create_event(http, opens_at=FUTURE)
    event_id = event["id"]
    problems: dict[str, list[str]] = defaultdict(list)
    categories: dict[str, int] = defaultdict(int)
    sent = 0
    for n in range(5):
        frames = list(
            bad_frames(rng, 210, event_id=event_id, other_event_id=other["id"], max_per_order=4)
        )
        sent += len(frames)
        for frame in frames:
            categories[frame.category] += 1
        before = await event_state(http, event_id)
        while True:  # a socket the server dropped is reopened for the frames left
            async with ws_connect(event["waitroom_url"]) as ws:
                frames = await _send_bad_frames(ws, frames, problems)
                if frames:
                    continue
                assert await event_state(http, event_id) == before, "bad frames changed the event"
                queued = await join(ws, f"fuzz-client-{n}")  # the socket still works
                assert queued.ticket == n + 1
                break
        assert (await get_event(http, event_id))["queue_length"] == n + 1

    assert sent >= WS_FRAMES_MIN, sent
    report = "\n".join(
        f"{category}: {len(examples)} of {categories[category]} frames\n"
        + "\n".join(f"    {e}" for e in examples[:3])
        for category, examples in sorted(problems.items())
    )
    assert not problems, f"{sent} bad frames sent; contract broken:\n{report}"


# -- rate limits ----------------------------------------------------------------------


def fresh_address() -> str:
    """A client address no other test used (buckets live in the session's Redis)."""
    groups = uuid.uuid4().hex[:16]
    return "2001:db8::" + ":".join(groups[i : i + 4] for i in range(0, 16, 4))


@pytest.fixture
async def limited_edge(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """Tight route limits (2 per address and per hold, 3 per admin key, no refill within
    a test); loopback a trusted proxy, exempt itself, so X-Forwarded-For picks the client."""
    settings = replace(
        make_settings(
            servers.redis_url,
            servers.database_url,
            trusted_proxies=("127.0.0.1/32",),
            limit_exempt=("127.0.0.1/32",),
            limit_per_ip=(0.001, 2),
            limit_per_hold=(0.001, 2),
            limit_per_admin_key=(0.001, 3),
        ),
        admin_key=f"admin-{uuid.uuid4().hex}",  # its own admin key bucket
    )
    async with open_services(settings) as running:
        yield running


def assert_rate_limited(resp: httpx.Response) -> None:
    """A 429 rate_limited JSON error with a whole Retry-After (1,000 s: one token's refill)."""
    body = resp.json() if resp.status_code == 429 else None
    assert resp.status_code == 429, (resp.status_code, resp.text)
    assert body is not None and set(body) == {"error", "message"} and body["message"], body
    assert body["error"] == "rate_limited", body
    assert resp.headers["retry-after"] == "1000", resp.headers


async def test_every_limited_route_answers_429_past_its_bucket(limited_edge: Services) -> None:
    """Per client address: the third request to a route is 429 and changes nothing (the
    admin routes share one bucket: audit's is tested below, with the admin key's);
    the address's other route groups and other addresses are unaffected; entries a client
    wrote left of its address do not make it another client."""
    admin = {"Authorization": f"Bearer {limited_edge.settings.admin_key}"}
    async with httpx.AsyncClient(base_url=limited_edge.http_url, trust_env=False) as http:
        created = await http.post("/v1/events", json=event_body(opens_at=FUTURE), headers=admin)
        event_id = created.json()["id"]
        before = await event_state(http, event_id)
        hold = f"{event_id}.1"
        routes: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", f"/v1/events/{event_id}/pause", {"headers": admin}),
            ("POST", f"/v1/holds/{hold}/payment", {"json": {"card_token": "tok_visa"}}),
            ("DELETE", f"/v1/holds/{hold}", {}),
            ("GET", "/v1/bookings/b-unknown", {}),
        ]
        for method, url, kwargs in routes:
            client = fresh_address()
            sent = {"X-Forwarded-For": client, **kwargs.pop("headers", {})}
            for _ in range(2):
                resp = await http.request(method, url, headers=sent, **kwargs)
                assert resp.status_code != 429, (url, resp.text)
            spoofed = {**sent, "X-Forwarded-For": f"{fresh_address()}, {client}"}
            assert_rate_limited(await http.request(method, url, headers=spoofed, **kwargs))
            other = {**sent, "X-Forwarded-For": fresh_address()}
            assert (await http.request(method, url, headers=other, **kwargs)).status_code != 429
            if method == "POST" and url.endswith("/pause"):
                await http.post(f"/v1/events/{event_id}/resume", headers=admin)
        assert await event_state(http, event_id) == before


async def test_a_hold_and_an_admin_key_have_buckets_of_their_own(limited_edge: Services) -> None:
    """From a new address each time: the third payment of one hold that reaches the
    gateway is 429 (the hold stays payable afterwards by nobody within the test), and
    the fourth request with one admin key is 429."""
    admin = {"Authorization": f"Bearer {limited_edge.settings.admin_key}"}
    async with httpx.AsyncClient(base_url=limited_edge.http_url, trust_env=False) as http:
        created = await http.post("/v1/events", json=event_body(), headers=admin)
        event = created.json()
        async with ws_connect(event["waitroom_url"]) as ws:
            await join(ws, "limited-holder", 1, "GA")
            prompt = await expect(ws, p.Prompt)
        url = f"/v1/holds/{prompt.hold_id}/payment"
        for i in range(3):
            resp = await http.post(
                url,
                json={"card_token": "tok_declined"},
                headers={
                    "X-Forwarded-For": fresh_address(),
                    "Authorization": f"Bearer {prompt.hold_token}",
                    "Idempotency-Key": new_key(),
                },
            )
            if i < 2:
                assert resp.status_code == 402, resp.text
            else:
                assert_rate_limited(resp)
        assert await count_bookings(limited_edge, event["id"]) == 0
        # The admin key: one request was made above from loopback (exempt); three more
        # from three addresses fill its bucket.
        for i in range(4):
            resp = await http.get(
                f"/v1/events/{event['id']}/audit",
                headers={**admin, "X-Forwarded-For": fresh_address()},
            )
            if i < 3:
                assert resp.status_code == 200, resp.text
            else:
                assert_rate_limited(resp)


async def test_fuzzed_identity_requests_are_refused_without_side_effects(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Bad bodies of the email identity routes (400), codes for addresses sent none (401
    code_expired), events that verify no addresses (409), unknown events (404): all 4xx
    JSON; a join with a random identity token is an ``error``; nobody takes a place."""
    rng = random.Random(20_261_130)
    tally = Tally()
    event = await create_event(http, identity={"kind": "email"})
    plain = await create_event(http)
    json_headers = {"Content-Type": "application/json"}
    base = f"/v1/events/{event['id']}/identity"
    for _ in range(120):
        route = rng.choice(["email", "verify"])
        good: dict[str, Any] = {"email": "fuzz@example.org"}
        if route == "verify":
            good["code"] = "123456"
        choice = rng.randrange(6)
        if choice == 0:
            content = encode(rng, rand_other(rng, lambda v: isinstance(v, dict)))
        elif choice == 1:
            content = rng.randbytes(rng.randint(0, 200))
        elif choice == 2:
            content = encode(rng, {**good, "email": rand_text(rng, 40)})
        elif choice == 3:
            content = encode(rng, {**good, rand_text(rng, 8) + "_": 1})
        elif choice == 4 and route == "verify":
            code = rng.choice(
                ["", "12345", "1234567", "abcdef", "12 456", "\uff11\uff12\uff13\uff14\uff15\uff16"]
            )
            content = encode(rng, {**good, "code": code})
        else:
            dropped = rng.choice(list(good))
            content = encode(rng, {k: v for k, v in good.items() if k != dropped})
        resp = await http.post(f"{base}/{route}", content=content, headers=json_headers)
        tally.check(f"identity-{route}-bad-body", resp, content, 400)
    for _ in range(20):
        address = f"{rand_text(rng, 10, controls=False).encode().hex()}x@example.org"
        body = json.dumps({"email": address, "code": f"{rng.randrange(10**6):06d}"}).encode()
        resp = await http.post(f"{base}/verify", content=body, headers=json_headers)
        tally.check("identity-verify-no-code", resp, body, 401)
        resp = await http.post(
            f"/v1/events/{plain['id']}/identity/verify", content=body, headers=json_headers
        )
        tally.check("identity-verify-not-email-event", resp, body, 409)
        resp = await http.post(
            "/v1/events/evnosuchevent/identity/email", content=body, headers=json_headers
        )
        tally.check("identity-email-unknown-event", resp, body, 404)
    async with ws_connect(event["waitroom_url"]) as ws:
        for _ in range(40):
            token = rng.choice(
                [rand_text(rng, 200, controls=False) or "x", ".".join(["eyJ" + "A" * 20] * 3)]
            )
            frame = p.encode(p.Join(quantity=1, client_id="fuzz", identity=token)).decode()
            await ws.send(frame)
            error = await expect(ws, p.Error)
            assert error.code.startswith("identity_"), error
    assert not tally.problems, f"{tally.sent} bad inputs sent; contract broken:\n{tally.report()}"
    assert (await get_event(http, event["id"]))["queue_length"] == 0
