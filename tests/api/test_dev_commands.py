"""The README's "Running it for real" steps as separate processes on one data directory:
they share its embedded servers, sell, survive one another's exit and restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from realtime import protocol as p
from storage.embedded import stop_shared_servers
from tests.api.dev_processes import (
    ROOT,
    Running,
    pid_alive,
    redis_answers,
    redis_pid,
    run_booking,
    serving,
    working,
)
from tests.api.helpers import STEP_S, new_key, outcome_of, prompted, queued_in

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def dev_dir(data_dir: Path) -> Iterator[Path]:
    """The data directory the commands share; they run from its parent, where their logs
    and the README's example event (docs/event.json) are. Whatever servers a failing test
    left running there are stopped afterwards."""
    (data_dir / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "event.json", data_dir / "docs" / "event.json")
    try:
        yield data_dir / "d"
    finally:
        stop_shared_servers(data_dir / "d")


async def create_event(dev_dir: Path) -> str:
    """``booking event create docs/event.json`` (a path relative to where it runs): its id."""
    done = await run_booking(dev_dir, "event", "create", "docs/event.json")
    assert done.returncode == 0, done.stderr.decode()
    assert f"data directory {dev_dir}".encode() in done.stderr, done.stderr.decode()
    return done.stdout.decode().strip()


async def buyer_prompted(serve: Running, event_id: str) -> tuple[p.Queued, p.Prompt]:
    """A buyer joins on the WebSocket the event names and is offered a hold."""
    async with BookingClient(serve.http_url) as client:
        view = await client.event(event_id)
    assert view.waitroom_url.startswith(f"ws://127.0.0.1:{serve.ports['ws']}/"), view
    async with WaitingRoom.connect(view.waitroom_url) as room:
        queued = await queued_in(room, f"c-{uuid.uuid4().hex[:8]}")
        prompt = await prompted(room, wait_s=60)
    return queued, prompt


async def test_the_running_for_real_steps_share_one_data_directory(dev_dir: Path) -> None:
    """migrate, serve, worker and event create in four processes: the event opens and sells
    through the WebSocket and a payment; stopping the worker leaves serve with its Redis;
    the last one out stops the servers."""
    migrated = await run_booking(dev_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr.decode()
    assert b"XDG_RUNTIME_DIR" not in migrated.stderr
    with serving(dev_dir, host="0.0.0.0") as serve, working(dev_dir) as worker:
        await serve.wait_ready()
        await worker.wait_ready()
        event_id = await create_event(dev_dir)
        async with BookingClient(serve.http_url, timeout_s=30) as client:
            view = await client.event(event_id)
            # bound to 0.0.0.0: the WebSocket is on the host the API was reached by
            assert view.waitroom_url.startswith(f"ws://127.0.0.1:{serve.ports['ws']}/")
            async with WaitingRoom.connect(view.waitroom_url) as room:
                await queued_in(room, "buyer-1")
                prompt = await prompted(room, wait_s=60)
                paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
                assert await outcome_of(room, wait_s=30) == p.Confirmed(booking_id=paid.id)
            shared_redis = redis_pid(dev_dir)
            assert shared_redis is not None
            assert await worker.stop() == 0, worker.stderr
            # Started together: one of them started the servers, the other attached
            # (when the worker was the one, its exit leaves them to serve all the same).
            redis_lines = [
                line
                for line in (serve.stderr + worker.stderr).splitlines()
                if line.startswith("embedded Redis:")
            ]
            assert len(redis_lines) == 2, redis_lines
            assert sum("(started here)" in line for line in redis_lines) == 1, redis_lines
            assert await client.ready()
            assert redis_answers(dev_dir)
            assert redis_pid(dev_dir) == shared_redis  # the same server, never a second one
            sold = (await client.event(event_id)).sections[0]
            assert sold.sold == 1, sold
        assert await serve.stop() == 0, serve.stderr
    for log in (serve.stderr, worker.stderr):
        assert f"data directory {dev_dir}" in log, log
        assert "XDG_RUNTIME_DIR" not in log, log
    assert not pid_alive(shared_redis)
    assert not redis_answers(dev_dir)
    assert (dev_dir / "servers.lock").read_text().strip() == ""


async def test_a_hold_token_survives_a_serve_restart(dev_dir: Path) -> None:
    """Without BOOKING_SECRET, a serve restarted on the same data directory accepts the hold
    token the first one signed: the buyer pays, and resuming with the queue token works."""
    with working(dev_dir) as worker:
        await worker.wait_ready()
        event_id = await create_event(dev_dir)
        with serving(dev_dir, "serve-first") as first:
            await first.wait_ready()
            queued, prompt = await buyer_prompted(first, event_id)
            assert await first.stop() == 0, first.stderr
        with serving(dev_dir, "serve-again") as again:
            await again.wait_ready()
            async with BookingClient(again.http_url, timeout_s=30) as client:
                view = await client.event(event_id)
                async with WaitingRoom.connect(view.waitroom_url) as room:
                    with anyio.fail_after(STEP_S):
                        assert (await room.resume(queued.token)).ticket == queued.ticket
                    offered = await prompted(room)
                    assert offered.hold_id == prompt.hold_id
                    key = new_key()
                    paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
                    assert await outcome_of(room, wait_s=30) == p.Confirmed(booking_id=paid.id)
        assert await worker.stop() == 0, worker.stderr
    secret = dev_dir / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() not in first.stderr + again.stderr


async def test_a_stale_lock_is_taken_over(dev_dir: Path) -> None:
    """A serve SIGKILLed leaves its lock and servers behind: the next command adopts the
    Redis that still answers, starts again the one that does not, and as the last one out
    stops them."""
    with serving(dev_dir) as serve:
        await serve.wait_ready()
        assert await serve.stop(signal.SIGKILL) == -signal.SIGKILL
    left = json.loads((dev_dir / "servers.lock").read_text())
    assert left["owner_pid"] == serve.proc.pid
    orphan = left["redis_pid"]
    assert pid_alive(orphan) and redis_answers(dev_dir)  # outlived its owner

    adopted = await run_booking(dev_dir, "reconcile")
    assert adopted.returncode == 0, adopted.stderr.decode()
    assert f"taken over from pid {serve.proc.pid}".encode() in adopted.stderr
    assert not pid_alive(orphan)  # the last one out stopped it
    assert (dev_dir / "servers.lock").read_text().strip() == ""

    with serving(dev_dir) as serve:
        await serve.wait_ready()
        crashed = redis_pid(dev_dir)
        assert crashed is not None
        assert await serve.stop(signal.SIGKILL) == -signal.SIGKILL
    os.kill(crashed, signal.SIGKILL)  # and its Redis with it
    restarted = await run_booking(dev_dir, "reconcile")
    assert restarted.returncode == 0, restarted.stderr.decode()
    assert b"taken over from pid" in restarted.stderr
    assert not redis_answers(dev_dir)


async def test_dev_up_keeps_the_servers_until_dev_down(dev_dir: Path) -> None:
    """dev up starts the servers, prints what to export and leaves them running; commands
    attach and leave without stopping them; dev down stops them."""
    up = await run_booking(dev_dir, "dev", "up")
    assert up.returncode == 0, up.stderr.decode()
    exports = up.stdout.decode()
    assert f"export REDIS_URL='unix://{dev_dir}/redis/redis.sock'" in exports
    assert "export DATABASE_URL='postgresql://" in exports
    assert f'BOOKING_SECRET="$(cat {dev_dir}/secret)"' in exports
    assert redis_answers(dev_dir)
    reconciled = await run_booking(dev_dir, "reconcile")
    assert reconciled.returncode == 0, reconciled.stderr.decode()
    assert b"data directory" in reconciled.stderr
    assert b"shared, started by pid" in reconciled.stderr  # attached, not a takeover
    assert redis_answers(dev_dir)  # pinned: the last one out left them running
    down = await run_booking(dev_dir, "dev", "down")
    assert down.returncode == 0, down.stderr.decode()
    assert not redis_answers(dev_dir)
    again = await run_booking(dev_dir, "dev", "down")
    assert b"nothing running" in again.stderr
