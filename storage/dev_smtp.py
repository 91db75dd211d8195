"""A development SMTP server: ``aiosmtpd`` in a process of its own, keeping every mail it
is given in a maildir (``<data dir>/mail``), where a person or a test reads it.

``booking demo`` and the tests start one (like the embedded Redis and PostgreSQL); it
accepts any sender and recipient, relays nothing, and needs no credentials. Run alone:
``python -m storage.dev_smtp MAILDIR --port 2525``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import mailbox
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from storage.embedded import stop_process

__all__ = ["DevSmtpServer", "dev_smtp_server", "read_maildir"]


def read_maildir(path: Path) -> list[EmailMessage]:
    """Every mail delivered to the maildir ``path``, oldest first (none if it is missing)."""
    if not (path / "new").is_dir():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    found = []
    for key in sorted(box.keys()):  # maildir names start with the delivery time
        with box.get_file(key) as raw:
            data = raw.read()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


class DevSmtpServer:
    """The development SMTP server as a process, listening on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.maildir = data_dir.resolve() / "mail"  # where mails land
        # where the process says its port (one file per server: demos may share a directory)
        self._port_file = data_dir.resolve() / f".smtp-{uuid.uuid4().hex[:12]}.port"
        self._port = port  # asked for (0: any free one)
        self._proc: subprocess.Popen[bytes] | None = None  # the running server, if any
        self.port = port  # the port it listens on (a free one is known once started)

    @property
    def url(self) -> str:
        """Its ``smtp://`` URL (BOOKING_SMTP_URL)."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the process; its URL once it listens."""
        self.maildir.parent.mkdir(parents=True, exist_ok=True)
        self._port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "storage.dev_smtp", str(self.maildir)]
        args += ["--port", str(self._port), "--port-file", str(self._port_file)]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self._port_file.exists():
            if self._proc.poll() is not None:
                raise RuntimeError(f"the development SMTP server exited ({self._proc.returncode})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the development SMTP server did not start within 15 s")
            time.sleep(0.02)
        self.port = int(self._port_file.read_text())
        self._port_file.unlink(missing_ok=True)
        return self.url

    def messages(self) -> list[EmailMessage]:
        """Every mail it was given."""
        return read_maildir(self.maildir)

    def stop(self) -> None:
        """Stop the process."""
        if self._proc is None:
            return
        stop_process(self._proc)
        self._proc = None


@contextmanager
def dev_smtp_server(data_dir: Path, port: int = 0) -> Iterator[DevSmtpServer]:
    """A running development SMTP server under ``data_dir``, stopped on exit."""
    server = DevSmtpServer(data_dir, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _serve(maildir: Path, port: int, port_file: Path) -> None:
    from aiosmtpd.handlers import Mailbox
    from aiosmtpd.smtp import SMTP

    handler = Mailbox(maildir)

    def protocol() -> Any:
        return SMTP(handler, hostname="booking-dev-smtp")

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(bound))
    temporary.rename(port_file)  # whole, or not there at all
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Run the server until terminated."""
    parser = argparse.ArgumentParser(prog="python -m storage.dev_smtp", description=__doc__)
    parser.add_argument("maildir", type=Path)
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--port-file", type=Path, default=None)
    args = parser.parse_args(argv)
    port_file = args.port_file or args.maildir.parent / "smtp.port"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.maildir, args.port, port_file))


if __name__ == "__main__":
    main()
