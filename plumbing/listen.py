"""Listening sockets that several server processes can share (SO_REUSEPORT).

With ``reuse_port`` every process binds its own socket to the same address and
the kernel spreads new connections over them, so one port is served by as many
processes as there are: each holds its share of the sockets (a process may have
20,000 open files here) and its share of the handshakes and frames.
"""

from __future__ import annotations

import socket

__all__ = ["BACKLOG", "listening_socket"]

BACKLOG = 4096  # the default 100 drops connections under a burst


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking TCP socket bound to ``host:port`` and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
