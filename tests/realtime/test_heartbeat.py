"""Heartbeats go to quiet connections only, on trio's mock clock."""

from __future__ import annotations

import anyio
import pytest

from realtime.session import ClientSession, Heartbeats
from tests.realtime.recording import RecordingTransport as _Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.once, pytest.mark.mock_clock(autojump_threshold=0)]

INTERVAL_S = 15.0
BEAT = b'{"type":"heartbeat"}'


async def _run(session: ClientSession, seconds: float, *, position_every_s: float = 0) -> None:
    heartbeats = Heartbeats(BEAT, INTERVAL_S, tick_s=1.0)
    heartbeats.add(session)
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeats.run)
        end = anyio.current_time() + seconds
        if position_every_s:
            session.waiting = True
            for n in range(int(seconds / position_every_s)):
                await anyio.sleep(position_every_s)
                session.send_position(n, b'{"type":"position"}')
        await anyio.sleep_until(end)
        tg.cancel_scope.cancel()


async def test_quiet_connection_gets_a_heartbeat_each_interval() -> None:
    """Nothing else sent: one heartbeat every interval (checked once a second)."""
    transport = _Recorder()
    session = ClientSession(transport)
    t0 = session.last_sent_at
    await _run(session, 100)
    assert [round(t - t0) for t, frame in transport.sent if frame == BEAT] == [
        15,
        30,
        45,
        60,
        75,
        90,
    ]


async def test_busy_connection_gets_none() -> None:
    """A position every 10 s keeps a 15 s heartbeat from ever being due."""
    transport = _Recorder()
    await _run(ClientSession(transport), 100, position_every_s=10)
    frames = [frame for _, frame in transport.sent]
    assert BEAT not in frames
    assert len(frames) == 10


async def test_heartbeat_comes_an_interval_after_the_last_frame() -> None:
    """Positions every 40 s: heartbeats 15 s and 30 s after each frame, never sooner."""
    transport = _Recorder()
    session = ClientSession(transport)
    t0 = session.last_sent_at
    await _run(session, 119, position_every_s=40)
    kinds = [
        (round(t - t0, 3), "beat" if frame == BEAT else "position") for t, frame in transport.sent
    ]
    assert kinds == [
        (15, "beat"),
        (30, "beat"),
        (40, "position"),
        (55, "beat"),
        (70, "beat"),
        (80, "position"),
        (95, "beat"),
        (110, "beat"),
    ]
