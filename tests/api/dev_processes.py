"""``booking`` commands run as separate processes on one data directory, as a person would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from tests.conftest import RUNTIME

#: The checkout under test: the commands import this code, whatever is installed.
ROOT = Path(__file__).resolve().parents[2]
#: Variables that would point a command at other servers or secrets than the data dir's.
_OUTSIDE = (
    "REDIS_URL",
    "DATABASE_URL",
    "BOOKING_SECRET",
    "BOOKING_ADMIN_KEY",
    "BOOKING_PUBLIC_WS_URL",
    "BOOKING_HOST",
)


def booking_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``booking`` command on ``data_dir`` and nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in _OUTSIDE}
    env.update(
        PYTHONPATH=str(ROOT),
        BOOKING_DATA_DIR=str(data_dir),
        BOOKING_RUNTIME=RUNTIME,
        BOOKING_STARTUP_WAIT_S="30",
    )
    env.update(extra)
    return env


def booking_argv(*args: str) -> list[str]:
    """``booking ARGS`` as this interpreter runs it."""
    return [sys.executable, "-m", "api.cli", *args]


async def run_booking(
    data_dir: Path, *args: str, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run a one-shot ``booking`` command to its end (from ``data_dir``'s parent)."""
    with anyio.fail_after(180):
        return await anyio.run_process(
            booking_argv(*args),
            env=booking_env(data_dir, **extra_env),
            cwd=data_dir.parent,
            check=False,
        )


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A long-running ``booking`` command (serve, worker) and the file of its stderr."""

    proc: subprocess.Popen[bytes]
    log: Path
    name: str
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def stderr(self) -> str:
        """What it wrote on stderr so far."""
        return self.log.read_text(errors="replace")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        with anyio.fail_after(60):
            return await anyio.to_thread.run_sync(self.proc.wait)

    @property
    def http_url(self) -> str:
        """Base URL of its HTTP listener (the API, or a worker's /metrics)."""
        return f"http://127.0.0.1:{self.ports['http']}"

    async def wait_ready(self) -> None:
        """Wait until its /readyz answers 200 (failing if it exits first)."""
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            with anyio.fail_after(180):
                while True:
                    if self.proc.poll() is not None:
                        raise AssertionError(
                            f"{self.name} exited with {self.proc.returncode}:\n{self.stderr}"
                        )
                    try:
                        if (await http.get(f"{self.http_url}/readyz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)


@contextmanager
def started(data_dir: Path, name: str, *args: str, **extra_env: str) -> Iterator[Running]:
    """Start ``booking ARGS`` on ``data_dir``; stop it on exit if it still runs (SIGTERM,
    then SIGKILL after 30 s)."""
    log = data_dir.parent / f"{name}.{len(list(data_dir.parent.glob(name + '.*')))}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            booking_argv(*args),
            env=booking_env(data_dir, **extra_env),
            cwd=data_dir.parent,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    running = Running(proc, log, name)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def serving(data_dir: Path, name: str = "serve", host: str = "127.0.0.1") -> Iterator[Running]:
    """``booking serve --host HOST`` on free ports."""
    http, ws = free_port(), free_port()
    args = ("serve", "--host", host, "--http-port", str(http), "--ws-port", str(ws))
    with started(data_dir, name, *args) as running:
        running.ports.update(http=http, ws=ws)
        yield running


@contextmanager
def working(data_dir: Path) -> Iterator[Running]:
    """``booking worker`` with its /metrics on a free port."""
    port = free_port()
    with started(data_dir, "worker", "worker", "--metrics-port", str(port)) as running:
        running.ports.update(http=port)
        yield running


def redis_pid(data_dir: Path) -> int | None:
    """The pid of the redis-server the data directory's lock file records."""
    import json

    text = (data_dir / "servers.lock").read_text()
    pid = json.loads(text).get("redis_pid") if text.strip() else None
    return pid if isinstance(pid, int) else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def redis_answers(data_dir: Path) -> bool:
    """True when the data directory's Redis answers PING on its socket."""
    path = data_dir.resolve() / "redis" / "redis.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
