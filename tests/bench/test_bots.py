"""The ``bots`` scenario at small scale: with identity required the actor with many client
ids gets at most ``max_per_person`` seats per identity it holds; without, it gets more."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.client import BookingClient, WaitingRoom, WaitroomError
from api.wiring import Services, open_services
from bench.bots import BotsOptions, run_bots
from bench.harness import BenchOptions, run_bench
from plumbing.client_ip import LOOPBACK
from storage.embedded import EmbeddedServers
from tests.conftest import ADMIN_KEY, RUNTIME, make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

IDENTITY_SECRET = "bench-identity-secret-0123456789abcdef"


@pytest.fixture
async def behind_proxy(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The system trusting loopback as a proxy and exempting nobody from its limits (the
    route buckets raised: only the joins' own buckets are of interest here)."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        trusted_proxies=LOOPBACK,
        limit_exempt=(),
        limit_per_ip=(100_000.0, 100_000),
        identity_secret=IDENTITY_SECRET,
        position_interval_s=1.0,
    )
    async with open_services(settings) as running:
        yield running


def _options(identity: bool) -> BotsOptions:
    return BotsOptions(
        fair=60,
        bot_ids=240,
        bot_addresses=20,
        bot_devices=20,
        bot_identities=5,
        identity=identity,
        max_per_person=2,
        seats=90,
        window_s=4.0,
        hold_seconds=5,
        max_seconds=90,
        identity_secret=IDENTITY_SECRET,
    )


@pytest.mark.parametrize("identity", [False, True])
async def test_identity_bounds_the_actor(behind_proxy: Services, identity: bool) -> None:
    """Many of the actor's ids join; with identity they are its few persons' places, and it
    is sold at most max_per_person seats each; without identity it is sold more."""
    options = _options(identity)
    report = await run_bots(behind_proxy.http_url, ADMIN_KEY, options)
    s = report.summary()
    assert not report.stopped_early, s
    assert s["oversold"] == 0 and s["sold"] == s["actor_seats"] + s["fair_seats"], s
    assert s["actor_joins"] > options.bot_identities * 4, s  # its ids were let in line
    bound = options.max_per_person * options.bot_identities
    if identity:
        assert s["actor_places"] <= options.bot_identities, s
        assert s["actor_most_per_identity"] <= options.max_per_person, s
        assert s["actor_seats"] <= bound, s
        assert s["fair_seats"] > 0, s
    else:
        assert s["actor_seats"] > bound, s


async def test_bench_clients_join_with_identities(behind_proxy: Services) -> None:
    """``booking demo --identity``: the event requires identity, every client joins with a
    token of its own (one person each), and the sale runs as usual."""
    options = BenchOptions(
        scenario="steady",
        clients=40,
        seats=30,
        hold_seconds=2,
        max_active_holds=40,
        max_seconds=60,
        arrival_s=1.0,
        runtime=RUNTIME,
        identity_secret=IDENTITY_SECRET,
    )
    report = await run_bench(behind_proxy.http_url, ADMIN_KEY, options)
    assert report.problems == []
    assert report.seats_sold > 0
    async with BookingClient(behind_proxy.http_url, admin_key=ADMIN_KEY) as client:
        view = await client.event(report.event_id)
    async with WaitingRoom.connect(view.waitroom_url) as room:
        with pytest.raises(WaitroomError) as refused:
            await room.join("no-identity")
    assert refused.value.code == "identity_required"
