"""Email identity: a one-time code sent to the buyer's address, exchanged for a token.

For an event whose ``identity`` is ``email``: ``send_code`` mails a 6-digit code (kept
in Redis as an HMAC only, for ``CODE_TTL_S``, in the event's hash tag); ``verify``
takes the code back (at most ``MAX_ATTEMPTS`` tries per code, then a new one must be
sent) and answers an identity token the engine signs itself (``IdentityVerifier.sign_own``)
naming the address; the buyer joins with it like with an operator's token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage

from engine.catalog import EventCatalog
from engine.errors import Conflict, IdentityRefused, InvalidRequest, Unavailable
from engine.identity import IdentityVerifier
from engine.mail import Mailer
from plumbing.clock import Clock
from storage.redis_store import RedisStore
from storage.smtp import MailUnavailable

__all__ = ["CODE_TTL_S", "MAX_ATTEMPTS", "TOKEN_TTL_S", "EmailIdentity", "EmailToken"]

#: How long a code may be used, seconds.
CODE_TTL_S = 600
#: Tries at one code; then it is forgotten and a new one must be sent.
MAX_ATTEMPTS = 5
#: How long the identity token of a verified address joins the event, seconds.
TOKEN_TTL_S = 24 * 3600
_ADDRESS = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class EmailToken:
    """The identity token of a verified address and when it stops joining (epoch seconds)."""

    token: str
    expires_s: int


class EmailIdentity:
    """Sends codes and exchanges them for identity tokens."""

    def __init__(
        self,
        catalog: EventCatalog,
        redis: RedisStore,
        verifier: IdentityVerifier,
        mailer: Mailer | None,
        clock: Clock,
        *,
        key: bytes,
        sender: str,
    ) -> None:
        self._catalog = catalog  # which events verify addresses
        self._redis = redis  # the codes, hashed
        self._verifier = verifier  # signs the tokens
        self._mailer = mailer  # None: no SMTP server, no codes
        self._clock = clock  # token expiry
        self._key = key  # HMAC key of addresses and codes
        self._sender = sender  # From of the mail

    async def send_code(self, event_id: str, address: str) -> int:
        """Mail a new code to ``address`` (replacing an earlier one); its lifetime, seconds."""
        address = await self._address(event_id, address)
        if self._mailer is None:
            # A setting of the deployment, not an outage: retrying will not help.
            raise Conflict("this deployment sends no mail (no SMTP server): no codes")
        code = f"{secrets.randbelow(1_000_000):06d}"
        await self._redis.put_email_code(
            event_id,
            self._hash(event_id, address),
            self._hash(event_id, address, code),
            CODE_TTL_S * 1000,
        )
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = address
        message["Subject"] = f"Your code: {code}"
        message.set_content(
            f"Your code to join the waiting line is {code}.\n"
            f"It works for {CODE_TTL_S // 60} minutes. If you did not ask for it, ignore this mail.\n"
        )
        try:
            await self._mailer.send(message)
        except MailUnavailable as exc:
            raise Unavailable("the code could not be sent; retry", retry_after_s=5) from exc
        return CODE_TTL_S

    async def verify(self, event_id: str, address: str, code: str) -> EmailToken:
        """The identity token of ``address`` for its code; IdentityRefused if it does not hold."""
        address = await self._address(event_id, address)
        address_hash = self._hash(event_id, address)
        kept, attempts = await self._redis.try_email_code(event_id, address_hash, CODE_TTL_S * 1000)
        if kept is None:
            raise IdentityRefused("code_expired", "no code is waiting for this address; send one")
        if attempts > MAX_ATTEMPTS:
            await self._redis.drop_email_code(event_id, address_hash)
            raise IdentityRefused("code_expired", "too many tries; send a new code")
        if not hmac.compare_digest(kept, self._hash(event_id, address, code)):
            raise IdentityRefused("code_invalid", "wrong code")
        await self._redis.drop_email_code(event_id, address_hash)  # one use
        expires_s = self._clock.now_ms() // 1000 + TOKEN_TTL_S
        token = self._verifier.sign_own(event_id, f"email:{address}", expires_s)
        return EmailToken(token, expires_s)

    async def _address(self, event_id: str, address: str) -> str:
        spec = await self._catalog.get(event_id)
        if spec.identity is None or spec.identity.kind != "email":
            raise Conflict(f"event {event_id!r} does not verify email addresses")
        address = address.strip().lower()
        if not _ADDRESS.match(address) or len(address) > 254:
            raise InvalidRequest("email must be an address like name@example.org")
        return address

    def _hash(self, *parts: str) -> str:
        return hmac.new(self._key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()
