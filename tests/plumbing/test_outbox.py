"""plumbing/outbox.py over a real socket pair: nothing lost, order kept, failure told."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from plumbing.outbox import Outbox

pytestmark = pytest.mark.once  # no event loop: the same on both runtimes


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    yield ours, theirs
    ours.close()
    theirs.close()


def _read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def test_what_the_kernel_refuses_goes_out_later_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    outbox = Outbox(ours)
    chunks = [f"{i:06d}:".encode() + b"x" * (i % 700) for i in range(5000)]
    for chunk in chunks:
        assert outbox.write(chunk)
    assert outbox.pending  # far more than the socket's buffers hold
    received = bytearray(_read_all(theirs))
    while outbox.pending:
        assert outbox.flush()
        received += _read_all(theirs)
    assert bytes(received) == b"".join(chunks)
    assert outbox.flush()  # nothing queued: nothing to do


def test_a_failed_socket_is_told_and_its_queue_dropped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    outbox = Outbox(ours)
    while not outbox.pending:
        assert outbox.write(b"y" * 1024)
    theirs.close()
    assert not outbox.flush()  # the peer is gone: EPIPE
    assert not outbox.pending
    assert not outbox.write(b"z")  # nothing queued: written at once, and refused
