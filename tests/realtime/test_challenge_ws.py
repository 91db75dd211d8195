"""Proof of work at join: challenges issued, solved by the typed client, checked once."""

from __future__ import annotations

import base64
import json

import anyio
import msgspec
import pytest

from api.client import BookingClient, WaitingRoom, solve_challenge
from api.wiring import Services
from engine.challenge import JoinChallenges
from realtime import protocol as p
from storage.metrics import ROUND_TRIPS
from tests.api.helpers import STEP_S, event_body, refused

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

DIFFICULTY = 2_000


def _tampered(payload: str) -> str:
    """The payload with another derived key: a wrong solution of a genuine challenge (the
    key is the proof; with the server's key signature the counter is not re-derived)."""
    decoded = json.loads(base64.b64decode(payload))
    key = decoded["solution"]["derivedKey"]
    decoded["solution"]["derivedKey"] = key[:-1] + ("0" if key[-1] != "0" else "1")
    return base64.b64encode(json.dumps(decoded).encode()).decode()


async def handed_a_challenge(room: WaitingRoom, join: p.Join) -> p.Challenge:
    """Send ``join`` (without a solution): the answer must be a challenge to solve."""
    await room.send(join)
    with anyio.fail_after(STEP_S):
        answer = await room.receive()
    assert isinstance(answer, p.Challenge), answer
    return answer


async def test_joins_need_a_solution_used_once(client: BookingClient) -> None:
    """Garbage, a wrong counter and another event's solution are refused; a solved
    challenge (from the REST route) joins once and is refused when replayed."""
    event = await client.create_event(event_body(challenge_difficulty=DIFFICULTY))
    other = await client.create_event(event_body(challenge_difficulty=DIFFICULTY))
    view = await client.challenge(event.id)
    assert view.difficulty == DIFFICULTY
    solved = await solve_challenge(view)
    elsewhere = await solve_challenge(await client.challenge(other.id))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        cases = [
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


async def test_a_join_without_a_solution_is_handed_a_challenge(client: BookingClient) -> None:
    """A join bringing no solution is answered on its connection with a signed challenge
    of the event (and takes no place); solved, the same join again takes the place. The
    typed client does both steps itself. A challenge's solution joins once, wherever the
    challenge came from."""
    event = await client.create_event(event_body(challenge_difficulty=DIFFICULTY))
    join = p.Join(quantity=1, client_id="ws-1")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        first = await handed_a_challenge(room, join)
        again = await handed_a_challenge(room, join)  # asking again: another challenge
        assert first.difficulty == DIFFICULTY
        assert first.challenge["parameters"]["data"] == {"event": event.id}
        assert first.challenge["parameters"]["nonce"] != again.challenge["parameters"]["nonce"]
        assert (await client.event(event.id)).queue_length == 0
        solved = await solve_challenge(first)
        await room.send(msgspec.structs.replace(join, challenge=solved))
        with anyio.fail_after(STEP_S):
            queued = await room.receive()
        assert isinstance(queued, p.Queued) and queued.ticket == 1
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await refused(
            room, p.Join(quantity=1, client_id="ws-2", challenge=solved), "challenge_replayed"
        )
    async with WaitingRoom.connect(event.waitroom_url) as room:
        with anyio.fail_after(STEP_S):
            assert isinstance(await room.join("ws-3"), p.Queued)  # solved by the client
    assert (await client.event(event.id)).queue_length == 2


async def test_the_admin_turns_the_challenge_on_live(client: BookingClient) -> None:
    """An event without a challenge asks for one as soon as the admin sets a difficulty,
    and stops when it is set back to 0."""
    event = await client.create_event(event_body())
    assert (await client.challenge(event.id)).difficulty == 0
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("before"), p.Queued)
    assert (await client.set_challenge(event.id, DIFFICULTY)).difficulty == DIFFICULTY
    async with WaitingRoom.connect(event.waitroom_url) as room:
        asked = await handed_a_challenge(room, p.Join(quantity=1, client_id="during"))
        assert asked.difficulty == DIFFICULTY
        view = await client.challenge(event.id)
        assert view.difficulty == DIFFICULTY
        assert isinstance(
            await room.join("during", challenge=await solve_challenge(view)), p.Queued
        )
    await client.set_challenge(event.id, 0)
    async with WaitingRoom.connect(event.waitroom_url) as room:
        assert isinstance(await room.join("after"), p.Queued)


async def test_the_event_tells_what_a_join_needs(client: BookingClient) -> None:
    """``GET /v1/events/{id}`` says whether identity is required and how, the cap per
    person, and the challenge's difficulty as it is now (0 once the admin turns it off)."""
    plain = await client.event((await client.create_event(event_body())).id)
    assert (plain.identity, plain.max_per_person, plain.challenge_difficulty) == (None, 0, 0)
    body = event_body(identity={"kind": "email"}, max_per_person=3, challenge_difficulty=DIFFICULTY)
    event = await client.create_event(body)
    view = await client.event(event.id)
    assert (view.identity, view.max_per_person, view.challenge_difficulty) == (
        "email",
        3,
        DIFFICULTY,
    )
    await client.set_challenge(event.id, 0)
    assert (await client.event(event.id)).challenge_difficulty == 0
    jwt = event_body(identity={"kind": "jwt", "issuer": "shop", "audience": "sale"})
    assert (await client.event((await client.create_event(jwt)).id)).identity == "jwt"


async def test_joins_meeting_a_stale_difficulty_read_it_once(
    services: Services, client: BookingClient
) -> None:
    """Joins arriving together (a sale's opening) with no fresh difficulty cached wait for
    one Redis read instead of each making its own: thousands of reads at once timed out
    connecting and failed the joins."""
    event = await client.create_event(event_body())
    await client.set_challenge(event.id, DIFFICULTY)
    challenges = JoinChallenges(services.engine.catalog, services.redis, services.clock, key=b"k")
    reads = ROUND_TRIPS.labels("redis", "challenge_difficulty")
    before = reads._value.get()
    seen: list[int] = []

    async def join_check() -> None:
        seen.append(await challenges.difficulty(event.id))

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(join_check)
    assert seen == [DIFFICULTY] * 200
    assert reads._value.get() - before == 1
