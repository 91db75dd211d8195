"""Scenarios of a sale: who arrives when, and what each buyer does.

Pure functions of a seed: the same scenario, size and seed give the same
buyers, so a run can be repeated and its plan split over bench processes.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from bench.client import Behaviour
from bench.sale import demo_event

__all__ = ["SCENARIOS", "ClientSpec", "Scenario", "event_body", "plan_clients"]


class ClientSpec(msgspec.Struct, frozen=True, array_like=True):
    """One simulated buyer, as handed to a bench process."""

    client_id: str
    behaviour: str  # a Behaviour value
    quantity: int
    arrival_s: float  # join this long after the bench starts its clients
    think_s: float  # prompt -> payment
    leave_after_s: float = 0.0  # Behaviour.LEAVE: queued -> closing the page
    reconnects: bool = False  # drops its socket in the storm and resumes


class Scenario(msgspec.Struct, frozen=True):
    """What a scenario does to the clients and to the event."""

    name: str
    about: str
    flash: bool = False  # everyone connects while admission is paused; then it opens
    arrival_s: float = 2.0  # joins spread over this long (ignored by a flash sale)
    pay: float = 0.9  # share who pay with a good card
    decline_then_pay: float = 0.05  # share whose first card is declined, then pay
    decline: float = 0.0  # share who are declined and give up
    leave: float = 0.0  # share who close the page while waiting
    think_s: tuple[float, float] = (0.0, 0.2)  # prompt -> payment
    slow_think_share: float = 0.0  # share of payers who think ...
    slow_think_s: tuple[float, float] = (0.0, 0.0)  # ... this long (near the hold time)
    reconnect: float = 0.0  # share who drop their socket in the storm and resume it


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "flash",
            "everyone connected before the sale opens, then admission starts at once",
            flash=True,
        ),
        Scenario(
            "steady",
            "buyers arrive steadily while the sale is open; 60 % pay",
            arrival_s=10.0,
            pay=0.54,
            decline_then_pay=0.06,
        ),
        Scenario(
            "abandon",
            "a fifth close the page while waiting, a fifth let their hold expire",
            arrival_s=3.0,
            pay=0.6,
            leave=0.2,
            think_s=(0.0, 0.3),
        ),
        Scenario(
            "reconnect",
            "half the waiting clients drop their socket at once and resume with their token",
            flash=True,
            reconnect=0.5,
        ),
        Scenario(
            "slow-pay",
            "a third of payers pay near the end of their hold (some too late)",
            arrival_s=3.0,
            slow_think_share=0.33,
            slow_think_s=(0.6, 1.1),  # times the hold time
        ),
        Scenario(
            "decline",
            "many cards are declined: some retry with another card, some give up",
            arrival_s=3.0,
            pay=0.4,
            decline_then_pay=0.3,
            decline=0.3,
        ),
    )
}


def plan_clients(
    scenario: Scenario, clients: int, *, hold_seconds: float, seed: int = 1, max_quantity: int = 4
) -> list[ClientSpec]:
    """The buyers of one run, in client order."""
    rng = random.Random(seed)
    out: list[ClientSpec] = []
    for i in range(clients):
        roll = rng.random()
        if roll < scenario.leave:
            behaviour = Behaviour.LEAVE
        elif roll < scenario.leave + scenario.decline:
            behaviour = Behaviour.DECLINE
        elif roll < scenario.leave + scenario.decline + scenario.decline_then_pay:
            behaviour = Behaviour.DECLINE_THEN_PAY
        elif roll < scenario.leave + scenario.decline + scenario.decline_then_pay + scenario.pay:
            behaviour = Behaviour.PAY
        else:
            behaviour = Behaviour.ABANDON
        think = rng.uniform(*scenario.think_s)
        if rng.random() < scenario.slow_think_share:
            think = hold_seconds * rng.uniform(*scenario.slow_think_s)
        out.append(
            ClientSpec(
                client_id=f"c{seed}-{i}",
                behaviour=behaviour.value,
                quantity=rng.randint(1, max_quantity),
                arrival_s=0.0 if scenario.flash else rng.uniform(0, scenario.arrival_s),
                think_s=think,
                leave_after_s=rng.uniform(0.0, 2.0),
                reconnects=rng.random() < scenario.reconnect,
            )
        )
    return out


#: The most seats an event may have, and a row (the API refuses more).
MAX_EVENT_SEATS = 200_000
MAX_ROW_SEATS = 500


def event_body(
    seats: int, *, hold_seconds: int, max_active_holds: int, name: str = "Bench night"
) -> dict[str, Any]:
    """An event of about ``seats`` seats in two priced sections, rows of 30 to 500.

    At most ~300 rows (400 of 500 seats at the most an event may have, 200,000), so
    the body stays within the API's request size limit. More seats than that are
    capped: 100,000 buyers ask for ~250,000, and wait for holds to expire.
    """
    seats = min(seats, MAX_EVENT_SEATS)
    per_row = min(MAX_ROW_SEATS, max(30, -(-seats // 300)))
    rows = max(2, -(-seats // per_row))
    body = demo_event(rows, per_row, hold_seconds=hold_seconds, max_active_holds=max_active_holds)
    body["name"] = name
    return body
