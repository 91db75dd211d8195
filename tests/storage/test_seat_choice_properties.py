"""Random seat maps and sales: admit_next holds exactly the seats its rules name.

Each sale shapes a section, then runs batches of requests, one admit_next call per
batch, with expiry sweeps between them that give some holds back. Every hold is
compared with ``policy_seats``, the rules as a plain Python reference.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.redis_store import RedisStore, open_redis_store
from tests.storage.helpers import HOLD_MS, T0, hold_pattern, new_event, policy_seats

pytestmark = [pytest.mark.once, pytest.mark.cluster]


@dataclass(frozen=True)
class Sale:
    """A section's rows (seats in each), its shape before the sale ("0", "h" or "s" per
    seat, rows apart) and the batches: the quantities asked for, then how many of the
    open holds the expiry sweep after that batch may give back."""

    rows: tuple[int, ...]
    shape: str
    batches: tuple[tuple[tuple[int, ...], int], ...]

    @property
    def layout(self) -> str:
        """The section's map with every seat free."""
        return "".join("0" * n + "|" for n in self.rows)


async def play(store: RedisStore, sale: Sale) -> None:
    """Run the sale on a fresh event; every hold and the map after each call match the rules."""
    ev = await new_event(
        store, "s" + uuid.uuid4().hex[:12], [("A", 100, sale.layout)], max_active=100_000
    )
    if set(sale.shape) != {"0", "|"}:
        await hold_pattern(ev, "A", sale.shape)
    expected = list(sale.shape)
    open_holds: dict[int, list[int]] = {}
    for b, (quantities, give_back) in enumerate(sale.batches):
        # A ms apart: no hold is due at the next batch's admit_next (which would release it
        # first), every earlier batch's at the give-back sweep of now + HOLD_MS.
        now = T0 + b
        free = expected.count("0")
        asked: list[int] = []
        for q in quantities:
            if q <= free:  # every request can be served: none waits for seats
                asked.append(q)
                free -= q
        joined = await ev.join_many([(f"b{b}-{k}", q, "A") for k, q in enumerate(asked)], now)
        summary = await ev.admit(now, len(asked) or 1)
        assert summary.admitted == len(asked), summary
        tickets = await store.tickets(ev.id)
        for res, q in zip(joined, asked, strict=True):
            want = policy_seats(expected, q)
            got = tickets[res.seq].seats
            assert got == want, (res.seq, q, "".join(expected), got, want)
            for p in got:
                expected[p - 1] = "h"
            open_holds[res.seq] = got
        assert (await ev.maps())["A"] == "".join(expected)
        if give_back:
            await ev.expire(now + HOLD_MS, give_back)
            tickets = await store.tickets(ev.id)
            for seq in list(open_holds):
                if tickets[seq].status == "expired":
                    for p in open_holds.pop(seq):
                        expected[p - 1] = "0"
            assert (await ev.maps())["A"] == "".join(expected)


def run(servers: EmbeddedServers, sale: Sale) -> None:
    """Play ``sale`` in the session's Redis."""
    assert servers.redis_url is not None
    url = servers.redis_url

    async def body() -> None:
        async with open_bridge() as bridge, open_redis_store(url, bridge) as store:
            await play(store, sale)

    trio.run(body)


@st.composite
def small_sales(draw: st.DrawFn) -> Sale:
    """A section of one to four rows of up to 8 seats, partly taken, and up to four batches."""
    rows = tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=4)))
    shape = "".join(
        "".join(draw(st.lists(st.sampled_from("000hs"), min_size=n, max_size=n))) + "|"
        for n in rows
    )
    batch = st.tuples(
        st.lists(st.integers(1, 4), min_size=1, max_size=6).map(tuple), st.integers(0, 6)
    )
    batches = tuple(draw(st.lists(batch, min_size=1, max_size=4)))
    return Sale(rows, shape, batches)


def random_sale(seed: int, rows: Sequence[int], batches: int, per_batch: int) -> Sale:
    """A sale on a section that starts free: ``batches`` calls of ``per_batch`` requests for
    1-4 seats, each followed by a sweep giving back up to half of the open holds."""
    rng = random.Random(seed)
    plan = tuple(
        (tuple(rng.randint(1, 4) for _ in range(per_batch)), rng.randint(0, per_batch // 2))
        for _ in range(batches)
    )
    return Sale(tuple(rows), "".join("0" * n + "|" for n in rows), plan)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sale=small_sales())
def test_holds_follow_the_seat_rules_on_random_maps(servers: EmbeddedServers, sale: Sale) -> None:
    """Holds in one call step over seats held earlier in it, seats given back before the
    call are found again, and fragmented rows fall back to the fewest rows, as the rules say."""
    run(servers, sale)


@pytest.mark.parametrize(
    ("seed", "rows"),
    [
        (1, [30] * 20),
        (2, [7, 12, 3, 25, 1, 9] * 4),
        (3, [200]),
    ],
)
def test_holds_follow_the_seat_rules_through_a_whole_sale(
    servers: EmbeddedServers, seed: int, rows: list[int]
) -> None:
    """A sale with 100 requests a call until the section is full (many rows, uneven rows,
    one long row) holds the seats the rules name at every step."""
    run(servers, random_sale(seed, rows, batches=8, per_batch=100))
