"""Embedded servers start from the data directory users give, relative or absolute."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from storage.embedded import embedded_redis

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
