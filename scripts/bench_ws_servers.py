"""What a WebSocket server costs per frame it pushes and per connection it opens, per server.

Each server runs in a process of its own with the same tiny handler: a connection waits
for one ``go`` text message; once every connection has sent it, one task writes
``--rounds`` rounds, each giving every connection the same number of text frames of the
same size (the ``prompts`` shape: one 350-byte frame per connection per round, as a flash
sale writes one prompt per socket; the ``burst`` shape: 50 frames of 60 bytes, like
position updates), yielding to the loop between rounds. A client process on uvloop (the
product's ``api/client/ws.py``, the same for every server) opens ``--connections``
connections, sends the ``go``s, reads everything and checks the count and the bytes of
what it received, failing loudly otherwise.

The server's CPU (user + system, from ``/proc``, children included) is sampled around the
opening of the connections (per handshake: accept, upgrade, the handler set up) and
around the rounds (per frame sent, the ``go`` each connection sent included); it is the
figure to compare on a shared machine, frames/s the one that moves with the load.

    PYTHONPATH=. .venv/bin/python scripts/bench_ws_servers.py [--servers ours-asyncio,...]

Servers: ``ours-asyncio`` (``realtime/transport.py``'s listener, ``realtime/connection.py``
on asyncio + uvloop, frames written through ``realtime/session.py``'s ``ClientSession``
as the hub writes them), ``ours-trio`` (the same on trio), and, when importable from
``--extra-path`` (default ``/tmp/wsservers``, e.g. ``pip install --target /tmp/wsservers
picows==2.3.1``), ``picows`` (picows's server on uvloop, its defaults: aiofastnet's
transport when installed) and ``picows-uvloop`` (the same on uvloop's own transport).
A server whose package is missing is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.cpu import tree_seconds

SERVERS = ("ours-asyncio", "ours-trio", "picows", "picows-uvloop")
#: Servers that need a package outside the product's dependencies (under --extra-path).
_EXTERNAL = {"picows": "picows", "picows-uvloop": "picows"}
#: (frames per connection per round, frame payload bytes, rounds) of each shape.
SHAPES = {"prompts": (1, 350, 100), "burst": (50, 60, 4)}
_GO = "go"


def _payload(size: int) -> bytes:
    """``size`` bytes of JSON text, the same for every server."""
    head, tail = b'{"type":"prompt","pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


# The servers


def _serve_ours(backend: str, port: int, connections: int, per_round: int, rounds: int, size: int) -> None:  # fmt: skip
    import anyio
    import anyio.lowlevel
    from websockets.exceptions import ConnectionClosed

    from realtime.connection import ServerConnection
    from realtime.session import ClientSession
    from realtime.transport import serve_websockets

    payload = _payload(size)
    ready: list[ClientSession] = []
    all_ready = anyio.Event()

    async def handler(ws: ServerConnection) -> None:
        # No bound on what may queue: the bench must not drop a frame.
        session = ClientSession(ws, max_pending=1 << 30)
        if await ws.recv() != _GO:
            raise SystemExit("expected go")
        ready.append(session)
        if len(ready) == connections:
            all_ready.set()
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()  # until the client closes

    async def push() -> None:
        await all_ready.wait()
        for _ in range(rounds):
            for session in ready:
                for _ in range(per_round):
                    session.send(payload)  # framed per send, as a prompt is
            await anyio.lowlevel.checkpoint()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: serve_websockets(handler, "127.0.0.1", port, task_status=task_status))  # fmt: skip
            await push()

    if backend == "trio":
        anyio.run(main, backend="trio")
    else:
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


def _serve_picows(aiofastnet: bool | None, port: int, connections: int, per_round: int, rounds: int, size: int) -> None:  # fmt: skip
    import picows  # type: ignore[import-not-found,unused-ignore]
    import uvloop
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    payload = _payload(size)
    ready: list[WSTransport] = []

    async def push(transports: list[WSTransport]) -> None:
        for _ in range(rounds):
            for transport in transports:
                for _ in range(per_round):
                    transport.send(WSMsgType.TEXT, payload)
            await asyncio.sleep(0)

    class Listener(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                if frame.get_payload_as_ascii_text() != _GO:
                    raise SystemExit("expected go")
                ready.append(transport)
                if len(ready) == connections:
                    asyncio.get_running_loop().create_task(push(ready))
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    async def main() -> None:
        server = await picows.ws_create_server(
            lambda request: Listener(), "127.0.0.1", port, use_aiofastnet=aiofastnet
        )
        await server.serve_forever()

    uvloop.run(main())


def _serve(server: str, *args: int) -> None:
    if server == "ours-asyncio":
        _serve_ours("asyncio", *args)
    elif server == "ours-trio":
        _serve_ours("trio", *args)
    elif server == "picows":
        _serve_picows(None, *args)
    elif server == "picows-uvloop":
        _serve_picows(False, *args)
    else:
        raise SystemExit(f"unknown server {server!r}")


# The load


@dataclass
class Run:
    """One server's figures for one shape."""

    handshake_us: float  # server CPU per connection opened
    frame_us: float  # server CPU per frame pushed
    frames_per_s: float  # frames received by the client per second of the rounds
    load: float  # the 1-minute load average at the end


async def _load(
    port: int,
    connections: int,
    per_round: int,
    rounds: int,
    size: int,
    cpu: Callable[[], float],
    timeout_s: float,
) -> tuple[float, float, float, float]:
    """(handshake CPU s, frame CPU s, rounds' seconds, frames) with ``connections`` clients;
    exits with what was received if a phase takes longer than ``timeout_s``."""
    from api.client.ws import connect_ws

    expected = per_round * rounds
    payload = _payload(size)
    opening = asyncio.Semaphore(64)  # connects at once (the listen backlogs are ~100)
    opened = 0
    all_open, go, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()
    received: list[tuple[int, int]] = []  # (frames, bytes) of each connection, once complete
    so_far = [0, 0]  # frames and bytes received by every connection so far
    extra = 0  # frames received past the expected ones
    all_received = asyncio.Event()

    async def one() -> None:
        nonlocal opened
        async with opening:
            cm = connect_ws(f"ws://127.0.0.1:{port}/", open_timeout=60)
            ws: Any = await cm.__aenter__()
        try:
            opened += 1
            if opened == connections:
                all_open.set()
            await go.wait()
            await ws.send(_GO)
            count = nbytes = 0
            for _ in range(expected):
                message = await ws.recv(decode=False)
                count += 1
                nbytes += len(message)
                so_far[0] += 1
                so_far[1] += len(message)
                if message != payload:
                    raise SystemExit(f"received a frame unlike the one sent: {message[:80]!r}")
            received.append((count, nbytes))
            if len(received) == connections:
                all_received.set()
            await finish.wait()
            # The loop reads a connection as data arrives (api/client/ws.py): a frame
            # sent past the expected ones is in its queue by now.
            nonlocal extra
            extra += len(getattr(ws, "_messages", ()))
        finally:
            await cm.__aexit__(None, None, None)

    tasks = [asyncio.create_task(one()) for _ in range(connections)]
    failed = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))

    async def until(event: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait([waiter, failed], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not event.is_set():
            if not failed.done():
                raise SystemExit(
                    f"after {timeout_s:g} s: {opened} of {connections} connections open, "
                    f"{so_far[0]} of {connections * expected} frames received ({so_far[1]} bytes)"
                )
            waiter.cancel()
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise SystemExit(f"a client failed: {task.exception()!r}")
            raise SystemExit("the clients ended early")

    start = cpu()
    await until(all_open)
    await asyncio.sleep(0.3)  # the servers' last handshakes' bookkeeping
    opened_cpu = cpu()
    started = time.perf_counter()
    go.set()
    await until(all_received)
    elapsed = time.perf_counter() - started
    pushed_cpu = cpu()
    await asyncio.sleep(0.3)  # any frame sent past the expected ones arrives
    finish.set()
    await asyncio.gather(*tasks)
    frames = sum(c for c, _ in received)
    nbytes = sum(b for _, b in received)
    if frames != connections * expected or nbytes != frames * size or extra:
        raise SystemExit(
            f"received {frames + extra} frames, {nbytes} bytes and {extra} frames more; "
            f"sent {connections * expected} frames, {connections * expected * size} bytes"
        )
    return opened_cpu - start, pushed_cpu - opened_cpu, elapsed, frames


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_env(server: str, extra_path: str) -> dict[str, str]:
    env = dict(os.environ)
    if server in _EXTERNAL:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), extra_path) if p)
    return env


def _available(server: str, extra_path: str) -> bool:
    """Whether the server's package imports (the product's own servers always do)."""
    if server not in _EXTERNAL:
        return True
    found = subprocess.run(
        [sys.executable, "-c", f"import {_EXTERNAL[server]}"],
        env=_server_env(server, extra_path),
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def _measure(
    server: str, shape: tuple[int, int, int], connections: int, extra_path: str, timeout_s: float
) -> Run:
    import uvloop

    per_round, size, rounds = shape
    port = _free_port()
    argv = [sys.executable, __file__, "--serve", server, "--port", str(port)]
    argv += ["--connections", str(connections), "--shape", f"{per_round},{size},{rounds}"]
    proc = subprocess.Popen(argv, env=_server_env(server, extra_path))
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise SystemExit(f"{server} exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.2)  # past the probe connection's own handling
        opened, pushed, elapsed, frames = uvloop.run(
            _load(
                port,
                connections,
                per_round,
                rounds,
                size,
                lambda: tree_seconds(proc.pid),
                timeout_s,
            )
        )
    finally:
        proc.terminate()
        proc.wait()
    return Run(opened / connections * 1e6, pushed / frames * 1e6, frames / elapsed, os.getloadavg()[0])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per server, alternating")
    parser.add_argument("--rounds", type=int, help="rounds of every shape (default: the shape's)")
    parser.add_argument("--extra-path", default="/tmp/wsservers", help="where picows is")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="most seconds a phase may take (then fail)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        per_round, size, rounds = (int(x) for x in args.shape.split(","))
        _serve(args.serve, args.port, args.connections, per_round, rounds, size)
        return
    servers = []
    for server in args.servers.split(","):
        if server not in SERVERS:
            raise SystemExit(f"unknown server {server!r}")
        if _available(server, args.extra_path):
            servers.append(server)
        else:
            print(f"{server}: skipped, {_EXTERNAL[server]} is not importable from {args.extra_path}")  # fmt: skip
    for name in args.shapes.split(","):
        per_round, size, rounds = SHAPES[name]
        shape = (per_round, size, args.rounds or rounds)
        print(
            f"\n{name}: {args.connections} connections x {shape[2]} rounds x "
            f"{per_round} frame(s) of {size} bytes, {args.repeats} runs per server"
        )
        runs: dict[str, list[Run]] = {server: [] for server in servers}
        for repeat in range(args.repeats):
            for server in servers:
                run = _measure(server, shape, args.connections, args.extra_path, args.timeout)
                runs[server].append(run)
                print(
                    f"  run {repeat + 1} {server:14s} {run.frame_us:6.2f} µs/frame "
                    f"{run.frames_per_s:9.0f} frames/s {run.handshake_us:6.0f} µs/handshake "
                    f"load {run.load:.2f}",
                    flush=True,
                )
        print(
            f"  {'server':14s} {'CPU µs/frame':>13s} {'frames/s':>10s} "
            f"{'CPU µs/handshake':>17s} {'load':>5s}   (medians)"
        )
        for server in servers:
            rs = runs[server]
            print(
                f"  {server:14s} {statistics.median(r.frame_us for r in rs):13.2f} "
                f"{statistics.median(r.frames_per_s for r in rs):10.0f} "
                f"{statistics.median(r.handshake_us for r in rs):17.0f} "
                f"{statistics.median(r.load for r in rs):5.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
