"""scripts/bench_ws_servers.py runs end to end on the product's own servers, tiny."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.once, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_ws_servers_measures_our_servers_and_skips_a_missing_one(tmp_path: Path) -> None:
    """Both of our servers deliver every frame of both shapes (the script checks count and
    bytes, exiting non-zero otherwise) and get a row; picows, not a dependency, is
    skipped with a line when it cannot be imported."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable, "scripts/bench_ws_servers.py",
            "--servers", "ours-asyncio,ours-trio,picows",
            "--connections", "20", "--repeats", "1", "--rounds", "2",
            "--extra-path", str(tmp_path), "--timeout", "20",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "prompts: 20 connections x 2 rounds x 1 frame(s) of 350 bytes" in out
    assert "burst: 20 connections x 2 rounds x 50 frame(s) of 60 bytes" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ours-")]
    assert [row[0] for row in rows] == ["ours-asyncio", "ours-trio"] * 2
    assert all(float(row[2]) > 0 for row in rows)  # frames/s
    if importlib.util.find_spec("picows") is None:
        assert f"picows: skipped, picows is not importable from {tmp_path}" in out
