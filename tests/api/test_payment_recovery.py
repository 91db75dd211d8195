"""A server killed after the card was charged and before the booking was recorded: the
workers' payment recovery refunds the charge, with no one asking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from api.wiring import Roles, open_services
from storage.embedded import EmbeddedServers
from tests.api.booking_process import ROOT
from tests.api.helpers import event_body, gateway_ledger, new_key, prompted, queued_in
from tests.conftest import ADMIN_KEY, RUNTIME, SECRET, make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _served_url(stderr: Path) -> str | None:
    lines = [ln for ln in stderr.read_text().splitlines() if "HTTP API:" in ln]
    return lines[0].split()[-1] if lines else None


async def _serve(servers: EmbeddedServers, stderr: Path) -> tuple[anyio.abc.Process, str]:
    """``booking serve`` as a process of its own on the session's stores and sandbox gateway;
    it and its HTTP URL once it listens."""
    assert servers.redis_url and servers.database_url
    env = {
        **os.environ,
        "BOOKING_SECRET": SECRET,
        "BOOKING_ADMIN_KEY": ADMIN_KEY,
        "REDIS_URL": servers.redis_url,
        "DATABASE_URL": servers.database_url,
    }
    argv = ["serve", "--runtime", RUNTIME, "--http-port", "0", "--ws-port", "0"]
    with stderr.open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "api.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with anyio.fail_after(60):
        while True:
            url = _served_url(stderr)
            if url is not None:
                return proc, url
            assert proc.returncode is None, "booking serve exited"
            await anyio.sleep(0.1)


async def test_a_server_killed_between_charge_and_booking_is_refunded(
    servers: EmbeddedServers, sandbox_gateway: str, data_dir: Path
) -> None:
    """The card is charged (tok_slow: charged at once, answered 30 s later), and the server
    is SIGKILLed before it can record the booking. A worker's recovery finds the payment
    stopped halfway, asks the gateway, and refunds the charge: charged minus refunded is
    unchanged, and the payment's saga ends refunded."""
    worker_settings = make_settings(
        servers.redis_url,
        servers.database_url,
        payment_window_s=2.0,
        gateway_timeout_s=0.5,
        payment_stale_s=3.5,
        payment_recovery_interval_s=0.5,
    )
    proc, url = await _serve(servers, data_dir / "serve.log")
    try:
        async with (
            open_services(worker_settings, Roles(api=False, worker=True)) as worker,
            BookingClient(url, admin_key=ADMIN_KEY) as client,
        ):
            event = await client.create_event(event_body())
            async with WaitingRoom.connect(event.waitroom_url) as room:
                await queued_in(room, "buyer-1", 2, "A")
                prompt = await prompted(room)
            before = await gateway_ledger(sandbox_gateway)
            key = new_key("killed")

            async def pay() -> None:
                with pytest.raises(Exception):  # noqa: B017 - the server dies under it
                    await client.pay(prompt.hold_id, prompt.hold_token, "tok_slow", key)

            async with anyio.create_task_group() as tg:
                tg.start_soon(pay)
                with anyio.fail_after(30):
                    while True:
                        ledger = await gateway_ledger(sandbox_gateway)
                        if ledger["charges"] > before["charges"]:
                            break
                        await anyio.sleep(0.05)
                proc.kill()  # charged; the booking is not recorded
                await proc.wait()
            charged = await gateway_ledger(sandbox_gateway)
            assert charged["charged_cents"] - before["charged_cents"] == prompt.amount_cents
            assert await worker.pg.booking_for_key(f"{prompt.hold_id}/{key}") is None

            with anyio.fail_after(60):
                while True:
                    saga = await worker.pg.saga(f"{prompt.hold_id}/{key}")
                    if saga is not None and saga.step == "refunded":
                        break
                    await anyio.sleep(0.2)
            after = await gateway_ledger(sandbox_gateway)
            assert after["balance_cents"] == before["balance_cents"]
            assert after["refunds"] - before["refunds"] == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
