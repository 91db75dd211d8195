"""Several server processes on one pair of ports: the kernel spreads clients, any process
answers any request, and the supervisor notices a process that dies."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import replace

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.processes import serving_processes
from api.wiring import Roles, open_services
from bench.harness import BenchOptions, run_bench
from plumbing.listen import listening_socket
from storage.embedded import EmbeddedServers
from tests.conftest import ADMIN_KEY, RUNTIME, make_settings


@pytest.mark.once
def test_reuse_port_sockets_share_a_port_and_its_connections() -> None:
    """Two listening sockets on one port with SO_REUSEPORT both get connections; without it
    the second cannot bind."""
    first = listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port, reuse_port=True)
    try:
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = []
        for listener in (first, second):
            listener.setblocking(True)
            listener.settimeout(0.2)
            n = 0
            try:
                while True:
                    listener.accept()[0].close()
                    n += 1
            except TimeoutError:
                pass
            accepted.append(n)
        for c in clients:
            c.close()
        assert sum(accepted) == 64
        assert min(accepted) > 0, f"connections per socket: {accepted}"
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port, reuse_port=False)
    finally:
        first.close()
        second.close()


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_sale_over_two_server_processes(servers: EmbeddedServers) -> None:
    """A sale whose clients and payments land on two processes keeps every invariant."""
    base = free_port_run(3)
    settings = make_settings(
        servers.redis_url, servers.database_url, runtime=RUNTIME, metrics_port=base
    )
    worker_only = replace(settings, metrics_port=0)
    async with (
        open_services(worker_only, Roles(api=False, worker=True)),
        serving_processes(settings, 2, niceness=3) as running,
    ):
        # They yield the CPU to this process (the worker here), as `booking demo` asks.
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in running.pids] == [mine + 3] * 2
        options = BenchOptions(
            scenario="steady",
            clients=200,
            seats=150,
            hold_seconds=2,
            max_active_holds=60,
            max_seconds=60,
            arrival_s=1.0,
            runtime=RUNTIME,
            processes=1,
        )
        report = await run_bench(running.http_url, ADMIN_KEY, options, progress=None)
        # Each process serves its own /metrics on the ports after the base; scraping
        # them all counts every booking, whichever process took the payment.
        assert running.metrics_urls == tuple(
            f"http://127.0.0.1:{port}/metrics" for port in (base + 1, base + 2)
        )
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            counted = [
                sum(
                    sample.value
                    for family in text_string_to_metric_families((await http.get(url)).text)
                    for sample in family.samples
                    if sample.name == "booking_bookings_total"
                    and sample.labels["event"] == report.event_id
                )
                for url in running.metrics_urls
            ]
    assert report.problems == []
    assert report.audit["sold_in_postgres"] == report.seats_sold > 0
    assert sum(counted) == report.outcomes["confirmed"]


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.mark.anyio
@pytest.mark.once
async def test_supervisor_fails_when_a_process_dies(servers: EmbeddedServers) -> None:
    """A server process that exits fails the block (``booking serve --processes`` then exits 1)."""
    settings = make_settings(servers.redis_url, servers.database_url)
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="exited with code -9")):
        async with serving_processes(settings, 2) as running:
            os.kill(running.pids[0], signal.SIGKILL)
            with anyio.fail_after(10):
                await anyio.sleep_forever()
