"""The store on a Redis Cluster: events spread over the primaries, one event on one slot,
blocking reads split per slot, scripts reloaded on the node that lost them."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.crc import key_slot

from api.settings import ConfigurationError, Settings
from storage.bridge import open_bridge
from storage.embedded import EmbeddedCluster
from storage.errors import StorageUnavailable
from storage.keys import event_keys
from storage.redis_store import (
    JoinRequest,
    RedisStore,
    _cluster_credentials,
    _cluster_nodes,
    open_redis_store,
)
from storage.scripts import ScriptRunner
from tests.storage.helpers import T0, config_json

pytestmark = [pytest.mark.once, pytest.mark.cluster]

SECTIONS = ["A", "B"]
CONFIG = config_json((("A", 1_000, "0000|"), ("B", 500, "000|")))


@pytest.fixture
async def store(redis_cluster: EmbeddedCluster) -> AsyncIterator[RedisStore]:
    """A store on the embedded cluster."""
    async with open_bridge() as bridge, open_redis_store(redis_cluster.url, bridge) as opened:
        assert opened.cluster
        yield opened


def _keys_by_primary(cluster: EmbeddedCluster, prefix: str) -> dict[int, list[str]]:
    """The keys of events named ``prefix*`` on each primary (by port), read from the node."""
    found: dict[int, list[str]] = {}
    for node in cluster.primaries():
        client = node.client()
        found[node.port] = [
            k.decode() for k in client.scan_iter(match=f"ev:{{{prefix}*", count=1000)
        ]
    return found


def _event_of(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


@pytest.mark.anyio
async def test_a_hundred_events_land_on_every_primary(
    store: RedisStore, redis_cluster: EmbeddedCluster
) -> None:
    """100 events opened at once spread over the three primaries; all keys of an event
    sit on one node."""
    prefix = "spread" + uuid.uuid4().hex[:6]
    ids = [f"{prefix}-{i}" for i in range(100)]
    async with anyio.create_task_group() as tg:
        for event_id in ids:
            tg.start_soon(store.create_event, event_id, CONFIG, SECTIONS)
    # a join and a hold on each, so that the streams and the expiry set exist too
    await store.join([JoinRequest(e, "c1", 1, "") for e in ids], T0)
    for event_id in ids:
        await store.admit(event_id, T0, 10)

    by_primary = _keys_by_primary(redis_cluster, prefix)
    nodes_of: dict[str, set[int]] = defaultdict(set)
    kinds: Counter[str] = Counter()
    for port, keys in by_primary.items():
        for key in keys:
            nodes_of[_event_of(key)].add(port)
            kinds[key.split("}:", 1)[1].split(":")[0]] += 1
    per_primary = {port: len({_event_of(k) for k in keys}) for port, keys in by_primary.items()}
    print(f"events per primary: {per_primary}")
    assert len(per_primary) == 3
    assert sum(per_primary.values()) == 100
    assert all(count > 0 for count in per_primary.values()), per_primary
    assert set(nodes_of) == set(ids)
    assert all(len(ports) == 1 for ports in nodes_of.values())  # one event, one node
    # every key of the layout was written: meta, stats, line, tickets, clients, holds,
    # notify and both seat maps
    assert kinds["meta"] == kinds["queue"] == kinds["expiry"] == kinds["notify"] == 100
    assert kinds["map"] == 200


def test_every_key_of_a_call_shares_the_event_slot() -> None:
    """A script call's KEYS (the event layout, the join buckets) hash to one slot."""
    for event_id in ("e1", "evt-42", "a{b", "x}y"):
        k = event_keys(event_id)
        keys = ScriptRunner.layout(event_id, ["A", "B", "C"])
        keys += [k.join_bucket("client", "c1"), k.join_bucket("ip", "10.0.0.1")]
        assert len({key_slot(key.encode()) for key in keys}) == 1, event_id


@pytest.mark.anyio
async def test_waiting_on_many_events_wakes_on_any_slot(
    store: RedisStore, redis_cluster: EmbeddedCluster
) -> None:
    """The worker's wait over events on different nodes (one XREAD per slot, not one
    spanning slots) wakes when any of them gets a join, and times out when none does."""
    prefix = "wait" + uuid.uuid4().hex[:6]
    ids = [f"{prefix}-{i}" for i in range(12)]
    for event_id in ids:
        await store.create_event(event_id, CONFIG, SECTIONS)
    ports = {  # the events cover several nodes (checked, else the test proves nothing)
        port: len(keys) for port, keys in _keys_by_primary(redis_cluster, prefix).items() if keys
    }
    assert len(ports) > 1, ports
    assert not await store.wait_for_joins(dict.fromkeys(ids, 0), 200)

    woke: list[bool] = []

    async def wait() -> None:
        woke.append(await store.wait_for_joins(dict.fromkeys(ids, 0), 30_000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.3)
        await store.join([JoinRequest(ids[-1], "c1", 1, "")], T0)
    assert woke == [True]


@pytest.mark.anyio
async def test_scripts_reloaded_on_the_node_that_lost_them(
    store: RedisStore, redis_cluster: EmbeddedCluster
) -> None:
    """A primary without the scripts (restarted, or a replica promoted) answers NOSCRIPT:
    the scripts are loaded again and the batch completes, each call run once."""
    prefix = "noscript" + uuid.uuid4().hex[:6]
    ids = [f"{prefix}-{i}" for i in range(12)]
    for event_id in ids:
        await store.create_event(event_id, CONFIG, SECTIONS)
    flushed = redis_cluster.primaries()[0]
    flushed.client().script_flush()
    results = await store.join([JoinRequest(e, f"c{i}", 1, "") for i, e in enumerate(ids)], T0)
    assert [r.seq for r in results] == [1] * len(ids)
    for event_id in ids:
        snap = await store.snapshot(event_id)
        assert snap is not None and snap.stats["seq"] == 1  # joined once, not twice
    assert all(flushed.client().script_exists(*[s for s in store._scripts._shas.values()]))


@pytest.mark.anyio
async def test_calls_cut_by_the_clients_own_refresh_are_unavailable(store: RedisStore) -> None:
    """After a failover redis-py's cluster client closes every connection, those other
    calls are using included, and reconnects: each call then cut answers
    StorageUnavailable (retried, or a 503 the client retries), never a driver's
    AttributeError that the API answers 500 and the waiting room dies of."""
    prefix = "cut" + uuid.uuid4().hex[:6]
    ids = [f"{prefix}-{i}" for i in range(12)]
    for event_id in ids:
        await store.create_event(event_id, CONFIG, SECTIONS)
    seen: Counter[str] = Counter()
    done = anyio.Event()

    async def join_in_a_loop(buyer: int) -> None:
        n = 0
        while not done.is_set():
            n += 1
            try:
                await store.join([JoinRequest(e, f"c{buyer}-{n}", 1, "") for e in ids], T0)
                seen["ok"] += 1
            except StorageUnavailable:
                seen["unavailable"] += 1
            except Exception as exc:  # anything else is the failure this test is about
                seen[f"{type(exc).__name__}: {exc}"] += 1

    async def refresh_under_them() -> None:
        for _ in range(40):  # what the client does itself when a pipeline meets a dead node
            await anyio.sleep(0.02)
            await store._bridge.call(store._client.aclose)
        done.set()

    async with anyio.create_task_group() as tg:
        for buyer in range(20):
            tg.start_soon(join_in_a_loop, buyer)
        tg.start_soon(refresh_under_them)
    print(dict(seen))
    assert set(seen) == {"ok", "unavailable"}, seen  # calls were cut, and none otherwise


def test_cluster_urls() -> None:
    """``redis+cluster://`` names nodes (and credentials); the settings accept it."""
    nodes = _cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert [(n.host, n.port) for n in nodes] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7001),
        ("::1", 7002),
    ]
    assert _cluster_credentials("redis+cluster://u:p%40ss@h:1") == ("u", "p@ss")
    assert _cluster_credentials("redis+cluster://secret@h:1") == (None, "secret")
    assert _cluster_credentials("redis+cluster://h:1") == (None, None)
    for bad in ("redis+cluster://", "redis+cluster://host", "redis+cluster://h:port"):
        with pytest.raises(ValueError):
            _cluster_nodes(bad)
    settings = Settings.from_env({"REDIS_URL": "redis+cluster://h:7000,h:7001"})
    assert settings.redis_url == "redis+cluster://h:7000,h:7001"
    with pytest.raises(ConfigurationError):
        Settings.from_env({"REDIS_URL": "cluster://h:7000"})
