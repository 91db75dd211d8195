"""The relay and webhooks over the running system, with a real receiver on loopback: every
entry once and in order, signed; a receiver failing for a while; one that never recovers,
dead and redelivered; relays SIGKILLed mid-batch; a receiver that never answers and the
payments it does not slow."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from api.wiring import Roles, Services, open_services
from storage.embedded import EmbeddedServers
from storage.log_events import SaleStatePayload, decode_entry
from tests.api.helpers import event_body, new_key, pg_value, prompted, queued_in
from tests.conftest import admin_client, make_settings
from tests.engine.receiver import Received, Receiver, receiver

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def system(servers: EmbeddedServers, **overrides: Any) -> AsyncIterator[Services]:
    """The system in this process (its worker relays), webhooks retried quickly."""
    overrides.setdefault("webhook_backoff_s", 0.05)
    overrides.setdefault("webhook_backoff_max_s", 0.2)
    settings = make_settings(servers.redis_url, servers.database_url, **overrides)
    async with open_services(settings) as running:
        yield running


async def until(check: Callable[[], Awaitable[bool]], wait_s: float = 60) -> None:
    """Poll ``check`` until it passes (the test fails after ``wait_s``)."""
    with anyio.fail_after(wait_s):
        while not await check():  # noqa: ASYNC110 (polling the system, not a task)
            await anyio.sleep(0.05)


async def log_keys(services: Services, event_id: str, after_seq: int = 0) -> list[tuple[str, int]]:
    entries = await services.pg.log.entries(event_id, after_seq, limit=100_000)
    return [(event_id, decode_entry(e).seq) for e in entries]


async def changes(client: BookingClient, event_id: str, n: int) -> None:
    """``n`` admin changes (pause, resume, ...): ``n`` entries in the event's log."""
    for i in range(n):
        if i % 2 == 0:
            await client.pause(event_id)
        else:
            await client.resume(event_id)


async def registered_seq(services: Services, event_id: str, webhook_id: str) -> int:
    """The seq of a webhook's registration: its deliveries start there."""
    return int(
        await pg_value(
            services,
            "SELECT seq FROM event_log WHERE event_id = $1 AND kind = 'webhook_registered' "
            "AND payload->>'webhook_id' = $2",
            event_id,
            webhook_id,
        )
    )


async def test_every_entry_arrives_once_in_order_signed(servers: EmbeddedServers) -> None:
    async with system(servers) as services, admin_client(services) as client, receiver() as rx:
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url)
        assert hook.secret.startswith("whsec_")
        await changes(client, event_id, 20)
        first = await registered_seq(services, event_id, hook.id)
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _has(rx, len(expected)))
        await anyio.sleep(0.5)  # anything sent twice would arrive meanwhile
        assert rx.delivered_keys() == expected
        assert len(rx.received) == len(expected)
        assert rx.all_signed(hook.secret)
        assert not rx.all_signed("whsec_another")
        # The Redis stream has every entry, in order, as the log holds them.
        published = await services.redis.read_log(event_id)
        assert [seq for seq, _ in published] == list(range(1, len(published) + 1))
        assert [e for _, e in published] == await services.pg.log.entries(event_id)
        [view] = (await client.webhooks(event_id)).webhooks
        assert (view.state, view.pending, view.dead) == ("active", 0, 0)
        assert view.delivered == len(expected)
        metrics = await client.metrics()
        assert 'booking_webhook_deliveries_total{result="delivered"}' in metrics
        assert "booking_relay_lag_seconds " in metrics
        assert "booking_log_entries_relayed_total " in metrics


async def _has(rx: Receiver, n: int) -> bool:
    return len(rx.accepted) >= n


async def test_a_receiver_failing_for_a_while_gets_everything_after(
    servers: EmbeddedServers,
) -> None:
    async with (
        system(servers, webhook_max_attempts=20) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        rx.status = lambda n: 503 if n < 6 else 200
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url)
        await changes(client, event_id, 10)
        first = await registered_seq(services, event_id, hook.id)
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _has(rx, len(expected)))
        assert rx.delivered_keys() == expected
        # The failures were all the first entry, tried again: nothing overtook it.
        assert {r.key for r in rx.received[:6]} == {expected[0]}
        assert rx.all_signed(hook.secret)


async def test_a_dead_receiver_holds_its_own_queue_until_redelivered(
    servers: EmbeddedServers,
) -> None:
    async with (
        system(servers, webhook_max_attempts=3) as services,
        admin_client(services) as client,
        receiver() as bad,
        receiver() as good,
    ):
        up = False
        bad.status = lambda n: 200 if up else 500
        event_id = (await client.create_event(event_body())).id
        dead_hook = await client.create_webhook(event_id, bad.url)
        good_hook = await client.create_webhook(event_id, good.url)
        await changes(client, event_id, 6)

        async def is_dead() -> bool:
            hooks = {h.id: h for h in (await client.webhooks(event_id)).webhooks}
            return hooks[dead_hook.id].state == "dead"

        await until(is_dead)
        good_first = await registered_seq(services, event_id, good_hook.id)
        expected_good = await log_keys(services, event_id, good_first - 1)
        await until(lambda: _has(good, len(expected_good)))  # the other endpoint goes on
        assert good.delivered_keys()[: len(expected_good)] == expected_good
        # Three attempts, all at the first entry; then nothing more is tried.
        assert len(bad.received) == 3
        dead_hook_seq = await registered_seq(services, event_id, dead_hook.id)
        assert {r.key for r in bad.received} == {(event_id, dead_hook_seq)}
        [hook] = [h for h in (await client.webhooks(event_id)).webhooks if h.id == dead_hook.id]
        assert hook.dead == 1 and hook.pending > 0 and hook.delivered == 0

        up = True
        redelivered = await client.redeliver_webhook(event_id, dead_hook.id)
        assert redelivered.state == "active"
        expected = await log_keys(services, event_id, dead_hook_seq - 1)  # redeliver logged too
        await until(lambda: _has(bad, len(expected)))
        assert bad.delivered_keys() == expected
        assert bad.all_signed(dead_hook.secret)


async def test_a_url_no_request_can_be_sent_to_fails_only_its_own_webhook(
    servers: EmbeddedServers,
) -> None:
    """Webhooks whose URLs no request can be sent to (stored as they are, the way rows
    registered before the API refused such URLs would be): each fails its attempts and is
    dead; the relay, the other webhook and the API go on."""
    async with (
        system(servers, webhook_max_attempts=2) as services,
        admin_client(services) as client,
        receiver() as good,
    ):
        event_id = (await client.create_event(event_body())).id
        bad_ids = []
        for n, url in enumerate(("http://a..b/hook", "http://bad\u0001host/", "http://x:y/")):
            row = await services.pg.log.add_webhook(f"whbad{n}", event_id, url, "whsec_x", None)
            bad_ids.append(row.id)
        good_hook = await client.create_webhook(event_id, good.url)
        await changes(client, event_id, 4)

        async def all_dead() -> bool:
            hooks = {h.id: h for h in (await client.webhooks(event_id)).webhooks}
            return all(hooks[i].state == "dead" for i in bad_ids)

        await until(all_dead)
        first = await registered_seq(services, event_id, good_hook.id)
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _has(good, len(expected)))
        assert good.delivered_keys() == expected
        hooks = {h.id: h for h in (await client.webhooks(event_id)).webhooks}
        assert all(hooks[i].dead == 1 and hooks[i].delivered == 0 for i in bad_ids)
        await client.pause(event_id)  # the API still answers: nothing took the process down
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _has(good, len(expected)))


async def test_a_receiver_trickling_its_answer_is_cut_off_at_the_timeout(
    servers: EmbeddedServers,
) -> None:
    """A receiver that answers a byte at a time, never finishing, keeps no sender longer
    than the timeout in all: each attempt fails, and after the last the webhook is dead."""
    async with (
        system(servers, webhook_timeout_s=1.0, webhook_max_attempts=2) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        rx.trickle_s = 0.2  # each byte well within the timeout of a single read
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url)

        async def dead() -> bool:
            [view] = (await client.webhooks(event_id)).webhooks
            return view.state == "dead"

        await until(dead)
        assert rx.requests == 2  # the attempts, each cut off
        [view] = (await client.webhooks(event_id)).webhooks
        assert (view.id, view.dead, view.delivered) == (hook.id, 1, 0)
        assert services.http_url  # the system is still up


async def test_a_receiver_that_never_answers_does_not_hold_up_the_relay(
    servers: EmbeddedServers,
) -> None:
    """While a sender waits on its webhook's answer (holding the webhook's row), the relay
    publishes the event's new entries to the stream and queues them to that webhook."""
    async with (
        system(servers, webhook_timeout_s=120) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        rx.hold = anyio.Event()
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url)
        await until(lambda: _has_received(rx))  # the sender is stuck in its first POST
        await changes(client, event_id, 3)
        last = (await log_keys(services, event_id))[-1][1]

        async def published_and_queued() -> bool:
            streamed = any(seq == last for seq, _ in await services.redis.read_log(event_id))
            queued = await pg_value(
                services,
                "SELECT max(seq) FROM webhook_deliveries WHERE webhook_id = $1",
                hook.id,
            )
            return streamed and queued == last

        await until(published_and_queued, 30)
        assert len(rx.received) == 1  # still stuck
        rx.hold.set()


async def test_a_receiver_that_never_answers_does_not_slow_payments(
    servers: EmbeddedServers,
) -> None:
    """The receiver holds every request unanswered: bookings are paid and confirmed all the
    same (each writes its entry; the sender waits on its own), then all arrive."""
    async with (
        system(servers, webhook_timeout_s=120) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        rx.hold = anyio.Event()
        created = await client.create_event(event_body())
        await client.create_webhook(created.id, rx.url)
        await until(lambda: _has_received(rx))  # the sender is stuck in its first POST
        for _ in range(3):
            async with WaitingRoom.connect(created.waitroom_url) as room:
                await queued_in(room, new_key("buyer"), 1)
                prompt = await prompted(room)
                booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
                assert booking.status == "confirmed"
        assert len(rx.accepted) == 0 and len(rx.received) == 1  # still stuck
        rx.hold.set()
        confirmed = int(
            await pg_value(
                services,
                "SELECT count(*) FROM event_log WHERE event_id = $1 AND kind = 'booking_confirmed'",
                created.id,
            )
        )
        assert confirmed == 3

        async def all_bookings_arrived() -> bool:
            kinds = [decode_entry(r.body).__class__.__name__ for r in rx.accepted]
            return kinds.count("BookingConfirmed") == 3

        await until(all_bookings_arrived)


async def _has_received(rx: Receiver) -> bool:
    return len(rx.received) >= 1


def _relay(servers: EmbeddedServers, log: Path) -> subprocess.Popen[bytes]:
    assert servers.redis_url and servers.database_url
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.update(
        BOOKING_WEBHOOK_BACKOFF_S="0.05",
        BOOKING_WEBHOOK_BACKOFF_MAX_S="0.2",
        BOOKING_WEBHOOK_MAX_ATTEMPTS="1000",
    )
    argv = [
        sys.executable,
        "-m",
        "api.cli",
        "relay",
        "--redis-url",
        servers.redis_url,
        "--database-url",
        servers.database_url,
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )


# Once, on trio: the relays killed are ``booking relay`` processes on the default runtime
# in both passes; the writer and the receiver here are tried on both by the tests above.
@pytest.mark.once
async def test_sigkilled_relays_lose_nothing(servers: EmbeddedServers, tmp_path: Path) -> None:
    """Three ``booking relay`` processes, one SIGKILLed every 0.3 s and restarted while
    entries are written: the stream and the webhook have every entry (duplicates, told
    apart by (event_id, seq), allowed), each first seen in order."""
    rng = random.Random(7)
    settings = make_settings(servers.redis_url, servers.database_url)
    log = tmp_path / "relays.log"
    async with (
        open_services(settings, Roles(api=True, worker=False)) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url)
        relays = [_relay(servers, log) for _ in range(3)]
        kills = 0
        try:
            written = 0

            async def write() -> None:
                nonlocal written
                for _ in range(60):
                    await services.pg.log.append(
                        [
                            (event_id, "sale_paused", SaleStatePayload(state="paused"), None)
                            for _ in range(20)
                        ]
                    )
                    written += 20
                    await anyio.sleep(0.05)

            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                while written < 1200:
                    await anyio.sleep(0.3)
                    victim = relays.pop(rng.randrange(len(relays)))
                    victim.send_signal(signal.SIGKILL)
                    await anyio.to_thread.run_sync(victim.wait)
                    kills += 1
                    relays.append(_relay(servers, log))
            expected = await log_keys(services, event_id)

            async def caught_up() -> bool:
                return {r.key for r in rx.accepted} >= set(expected[1:])

            await until(caught_up, 120)
        finally:
            for proc in relays:
                proc.send_signal(signal.SIGTERM)
            for proc in relays:
                await anyio.to_thread.run_sync(proc.wait)
        assert kills >= 5
        published = [seq for seq, _ in await services.redis.read_log(event_id, count=100_000)]
        assert set(published) == {seq for _, seq in expected}
        assert _first_seen(published) == sorted(set(published))
        delivered = [seq for _, seq in rx.delivered_keys()]
        first = await registered_seq(services, event_id, hook.id)
        assert set(delivered) == {seq for _, seq in expected if seq >= first}
        assert _first_seen(delivered) == sorted(set(delivered))
        assert rx.all_signed(hook.secret)


def _first_seen(seqs: list[int]) -> list[int]:
    """Each seq at its first appearance (duplicates dropped)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# -- batched webhooks: up to a sender's batch of entries per POST, delivered as one ------


def _batch_named(r: Received) -> bool:
    """A batch's ``Booking-Entries`` names its event and its first and last seq."""
    keys = r.keys
    return r.batched and r.names == f"{keys[0][0]}/{keys[0][1]}-{keys[-1][1]}"


async def _queued_upto(services: Services, webhook_id: str, seq: int) -> bool:
    queued = await pg_value(
        services, "SELECT max(seq) FROM webhook_deliveries WHERE webhook_id = $1", webhook_id
    )
    return queued == seq


async def test_a_batched_webhook_gets_its_entries_in_signed_batches_in_order(
    servers: EmbeddedServers,
) -> None:
    """The receiver holds the first POST until 20 more entries are queued behind it: they
    arrive in one more POST, ``{"entries": [...]}`` in seq order, signed as one body and
    named by ``Booking-Entries``; every entry once, in order."""
    async with system(servers) as services, admin_client(services) as client, receiver() as rx:
        rx.hold = anyio.Event()
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url, batch=True)
        assert hook.batch
        await until(lambda: _has_received(rx))
        await changes(client, event_id, 20)
        last = (await log_keys(services, event_id))[-1][1]
        await until(lambda: _queued_upto(services, hook.id, last), 30)
        rx.hold.set()
        first = await registered_seq(services, event_id, hook.id)
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _delivered(rx, len(expected)))
        await anyio.sleep(0.5)  # anything sent twice would arrive meanwhile
        assert rx.delivered_keys() == expected
        assert [len(r.keys) for r in rx.received] == [1, 20]
        assert all(_batch_named(r) for r in rx.received)
        assert rx.all_signed(hook.secret)
        assert not rx.all_signed("whsec_another")

        async def recorded() -> bool:  # the sender records a batch after its answer
            [view] = (await client.webhooks(event_id)).webhooks
            return (view.batch, view.state, view.pending, view.delivered) == (
                True,
                "active",
                0,
                len(expected),
            )

        await until(recorded)


async def test_a_batched_webhook_failing_for_a_while_gets_everything_after(
    servers: EmbeddedServers,
) -> None:
    """Each failed POST is one attempt against its whole batch, retried from the same first
    entry; once the receiver recovers every entry arrives, in order, once."""
    async with (
        system(servers, webhook_max_attempts=20) as services,
        admin_client(services) as client,
        receiver() as rx,
    ):
        rx.status = lambda n: 503 if n < 6 else 200
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, rx.url, batch=True)
        await changes(client, event_id, 30)
        first = await registered_seq(services, event_id, hook.id)
        expected = await log_keys(services, event_id, first - 1)
        await until(lambda: _delivered(rx, len(expected)))
        await anyio.sleep(0.5)
        assert rx.delivered_keys() == expected
        assert {r.key for r in rx.received[:7]} == {expected[0]}  # nothing overtook it
        assert all(_batch_named(r) for r in rx.received)
        assert rx.all_signed(hook.secret)
        # Every entry counted one attempt per POST it was in, failed or not (the last
        # batch's recorded after its answer): the first entry six failed and one delivered.
        tried = _posts_per_seq(rx)
        assert tried[first] == 7

        async def counted() -> bool:
            return await _attempts(services, hook.id) == tried

        await until(counted)


async def test_a_dead_batched_webhook_holds_its_queue_until_redelivered(
    servers: EmbeddedServers,
) -> None:
    async with (
        system(servers, webhook_max_attempts=3) as services,
        admin_client(services) as client,
        receiver() as bad,
    ):
        up = False
        bad.status = lambda n: 200 if up else 500
        event_id = (await client.create_event(event_body())).id
        hook = await client.create_webhook(event_id, bad.url, batch=True)
        await changes(client, event_id, 6)

        async def is_dead() -> bool:
            [view] = (await client.webhooks(event_id)).webhooks
            return view.state == "dead"

        await until(is_dead)
        first = await registered_seq(services, event_id, hook.id)
        expected = await log_keys(services, event_id, first - 1)
        last = expected[-1][1]
        await until(lambda: _queued_upto(services, hook.id, last), 30)
        # Three attempts, each a batch from the first entry; then nothing more is tried.
        assert len(bad.received) == 3
        assert {r.key for r in bad.received} == {(event_id, first)}
        [view] = (await client.webhooks(event_id)).webhooks
        assert view.dead >= 1 and view.dead + view.pending == len(expected)
        assert view.delivered == 0
        # A failed batch counted one attempt against each of its entries: those in all
        # three POSTs are dead, the rest wait.
        tried = _posts_per_seq(bad)
        assert await _attempts(services, hook.id) == tried
        assert view.dead == sum(1 for n in tried.values() if n == 3)

        up = True
        redelivered = await client.redeliver_webhook(event_id, hook.id)
        assert redelivered.state == "active" and redelivered.batch
        expected = await log_keys(services, event_id, first - 1)  # redeliver logged too
        await until(lambda: _delivered(bad, len(expected)))
        assert bad.delivered_keys() == expected
        assert all(_batch_named(r) for r in bad.received)
        assert bad.all_signed(hook.secret)

        async def emptied() -> bool:  # the sender records the last batch after its answer
            [view] = (await client.webhooks(event_id)).webhooks
            return (view.state, view.dead, view.pending) == ("active", 0, 0)

        await until(emptied)


async def _delivered(rx: Receiver, n: int) -> bool:
    return len(rx.delivered_keys()) >= n


def _posts_per_seq(rx: Receiver) -> dict[int, int]:
    """How many POSTs each seq was in."""
    counts: dict[int, int] = {}
    for r in rx.received:
        for _, seq in r.keys:
            counts[seq] = counts.get(seq, 0) + 1
    return counts


async def _attempts(services: Services, webhook_id: str) -> dict[int, int]:
    """Each tried delivery's attempts, by seq."""
    got = await pg_value(
        services,
        "SELECT coalesce(json_object_agg(seq, attempts), '{}')::text FROM webhook_deliveries "
        "WHERE webhook_id = $1 AND attempts > 0",
        webhook_id,
    )
    return {int(seq): n for seq, n in json.loads(got).items()}
