"""SMTP: confirmation mails leave through ``aiosmtplib`` (asyncio), over the bridge on trio.

``BOOKING_SMTP_URL`` names the server: ``smtp://[user:password@]host[:port]`` (STARTTLS
when the server offers it; port 25 by default) or ``smtps://`` (TLS from the start, port
465). Every failure to hand a message over, whatever its cause (refused connection,
timeout, a 4xx/5xx answer), is a ``MailUnavailable``: the caller keeps the mail and
tries again later.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from storage.bridge import Bridge

__all__ = ["MailUnavailable", "SmtpMailer"]


class MailUnavailable(Exception):
    """The SMTP server did not take the message (nothing was sent)."""


class SmtpMailer:
    """Sends messages to one SMTP server."""

    def __init__(self, url: str, bridge: Bridge, *, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("an SMTP URL is smtp://host[:port] or smtps://host[:port]")
        self._tls = parts.scheme == "smtps"  # TLS from the first byte
        self._host = parts.hostname  # the server
        self._port = parts.port or (465 if self._tls else 25)  # its port
        self._username = unquote(parts.username) if parts.username else None  # AUTH, if any
        self._password = unquote(parts.password) if parts.password else None  # never logged
        self._bridge = bridge  # runs aiosmtplib on the asyncio loop
        self._timeout_s = timeout_s  # per connection and command

    @property
    def address(self) -> str:
        """host:port, for logs (no credentials)."""
        return f"{self._host}:{self._port}"

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; MailUnavailable if it did not take it."""

        async def send() -> None:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._tls,
                start_tls=None,  # STARTTLS when offered
                tls_context=ssl.create_default_context() if self._tls else None,
                timeout=self._timeout_s,
            )

        try:
            await self._bridge.call(send)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailUnavailable(f"SMTP server {self.address} refused the mail: {exc}") from exc
