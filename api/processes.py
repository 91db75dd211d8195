"""Several ``booking serve`` processes behind one HTTP port and one WebSocket port.

Each process binds the same ports with SO_REUSEPORT (plumbing/listen.py) and the
kernel spreads connections over them. Nothing is shared in memory: every process
reads the notify stream of the events its clients wait in, and payments,
joins and admin calls go through Redis and PostgreSQL, so any process can answer
any request. This is how one machine serves more clients than one process's
open-file limit (20,000 here) and more frames than one core.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.abc

from api.settings import Settings

__all__ = ["ServerProcesses", "gateway_env", "metrics_ports", "serving_processes"]

#: Line a ``booking serve --reuse-port`` process prints on stdout once it listens.
READY = b"ready"


@dataclass(frozen=True)
class ServerProcesses:
    """Where the processes listen."""

    http_url: str
    ws_url: str
    pids: tuple[int, ...]
    #: Each process's own /metrics (empty when their ports were left to the kernel).
    metrics_urls: tuple[str, ...] = ()


def metrics_ports(base: int, count: int) -> list[int]:
    """The /metrics ports of ``count`` server processes when a worker on the same host
    takes ``base`` (``BOOKING_METRICS_PORT``): the ``count`` ports after it; 0 (free
    ports) for each when ``base`` is 0."""
    return [base + 1 + i if base else 0 for i in range(count)]


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def gateway_env(settings: Settings) -> dict[str, str]:
    """The environment naming ``settings``' payment gateway, for the processes started here:
    they pay through the same one (the sandbox gateway this process resolved, or Stripe)."""
    env = {"BOOKING_GATEWAY": settings.gateway}
    if settings.stripe_api_base:
        env["BOOKING_STRIPE_API_BASE"] = settings.stripe_api_base
    if settings.stripe_api_key:
        env["BOOKING_STRIPE_API_KEY"] = settings.stripe_api_key
    return env


def _argv(
    settings: Settings, http_port: int, ws_port: int, metrics_port: int, niceness: int
) -> list[str]:
    assert settings.redis_url and settings.database_url, "servers are resolved by the parent"
    return [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--reuse-port",
        "--runtime",
        settings.runtime,
        "--log-format",
        settings.log_format,
        "--host",
        settings.host,
        "--http-port",
        str(http_port),
        "--ws-port",
        str(ws_port),
        "--metrics-port",
        str(metrics_port),
        "--redis-url",
        settings.redis_url,
        "--database-url",
        settings.database_url,
        "--nice",
        str(niceness),
    ]


async def _until_ready(proc: anyio.abc.Process) -> None:
    assert proc.stdout is not None
    buffered = b""
    async for chunk in proc.stdout:
        buffered += chunk
        if READY in buffered.splitlines():
            return
    raise RuntimeError(
        f"server process {proc.pid} exited (code {await proc.wait()}) before listening"
    )


async def _drain(proc: anyio.abc.Process) -> None:
    assert proc.stdout is not None
    async for _ in proc.stdout:  # a full pipe would block the process
        pass


@asynccontextmanager
async def serving_processes(
    settings: Settings, count: int, *, niceness: int = 0
) -> AsyncIterator[ServerProcesses]:
    """Start ``count`` API processes on ``settings``' ports (free ones for 0); yield once all
    listen; stop them (SIGTERM, then SIGKILL after 10 s) on exit. Process ``i`` serves its
    own /metrics on ``settings.metrics_port + 1 + i`` (see ``metrics_ports``).

    ``niceness``: how much lower than this process they run (``booking serve --nice``).

    A process that exits while the others serve fails the block with RuntimeError.
    """
    http_port = settings.http_port or _free_port(settings.host)
    ws_port = settings.ws_port or _free_port(settings.host)
    env = {**os.environ, "BOOKING_SECRET": settings.secret, "BOOKING_ADMIN_KEY": settings.admin_key}
    env |= gateway_env(settings)
    if settings.public_ws_url:
        env["BOOKING_PUBLIC_WS_URL"] = settings.public_ws_url
    ports = metrics_ports(settings.metrics_port, count)
    procs: list[anyio.abc.Process] = []
    stopping = False

    async def watch(proc: anyio.abc.Process) -> None:
        code = await proc.wait()
        if not stopping:
            raise RuntimeError(f"server process {proc.pid} exited with code {code}")

    try:
        async with anyio.create_task_group() as tg:
            for port in ports:
                argv = _argv(settings, http_port, ws_port, port, niceness)
                procs.append(
                    await anyio.open_process(argv, stdout=subprocess.PIPE, stderr=None, env=env)
                )
            with anyio.fail_after(120):
                for proc in procs:
                    await _until_ready(proc)
            for proc in procs:
                tg.start_soon(_drain, proc)
                tg.start_soon(watch, proc)
            yield ServerProcesses(
                f"http://{settings.host}:{http_port}",
                settings.ws_url(ws_port),
                tuple(p.pid for p in procs),
                tuple(f"http://{settings.host}:{port}/metrics" for port in ports if port),
            )
            stopping = True
            tg.cancel_scope.cancel()
    finally:
        stopping = True
        with anyio.CancelScope(shield=True):
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            with anyio.move_on_after(10):
                for proc in procs:
                    await proc.wait()
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
