"""Proof of work at join: challenges issued, solved by the typed client, checked once."""

from __future__ import annotations

import base64
import json

import pytest

from api.client import BookingClient, WaitingRoom, solve_challenge
from realtime import protocol as p
from tests.api.helpers import event_body, refused

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

DIFFICULTY = 2_000


def _tampered(payload: str) -> str:
    """The payload with another derived key: a wrong solution of a genuine challenge (the
    key is the proof; with the server's key signature the counter is not re-derived)."""
    decoded = json.loads(base64.b64decode(payload))
    key = decoded["solution"]["derivedKey"]
    decoded["solution"]["derivedKey"] = key[:-1] + ("0" if key[-1] != "0" else "1")
    return base64.b64encode(json.dumps(decoded).encode()).decode()


async def test_joins_need_a_solution_used_once(client: BookingClient) -> None:
    """No solution, garbage, a wrong counter and another event's solution are refused; a
    solved challenge joins once and is refused when replayed."""
    event = await client.create_event(event_body(challenge_difficulty=DIFFICULTY))
    other = await client.create_event(event_body(challenge_difficulty=DIFFICULTY))
    view = await client.challenge(event.id)
    assert view.difficulty == DIFFICULTY
    solved = await solve_challenge(view)
    elsewhere = await solve_challenge(await client.challenge(other.id))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        cases = [
            (None, "challenge_required"),
            ("bm90IGEgcGF5bG9hZA==", "challenge_invalid"),
            (_tampered(solved), "challenge_invalid"),
            (elsewhere, "challenge_invalid"),
        ]
        for challenge, code in cases:
            await refused(room, p.Join(quantity=1, client_id="c1", challenge=challenge), code)
        assert (await client.event(event.id)).queue_length == 0
        queued = await room.join("c1", challenge=solved)
        assert isinstance(queued, p.Queued) and queued.ticket == 1
    async with WaitingRoom.connect(event.waitroom_url) as room:
        join = p.Join(quantity=1, client_id="c2", challenge=solved)
        await refused(room, join, "challenge_replayed")
    assert (await client.event(event.id)).queue_length == 1


async def test_the_admin_turns_the_challenge_on_live(client: BookingClient) -> None:
    """An event without a challenge asks for one as soon as the admin sets a difficulty,
    and stops when it is set back to 0."""
    event = await client.create_event(event_body())
    assert (await client.challenge(event.id)).difficulty == 0
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("before"), p.Queued)
    assert (await client.set_challenge(event.id, DIFFICULTY)).difficulty == DIFFICULTY
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await refused(room, p.Join(quantity=1, client_id="during"), "challenge_required")
        view = await client.challenge(event.id)
        assert view.difficulty == DIFFICULTY
        assert isinstance(
            await room.join("during", challenge=await solve_challenge(view)), p.Queued
        )
    await client.set_challenge(event.id, 0)
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("after"), p.Queued)
