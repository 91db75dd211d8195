"""The payment port over Stripe's PaymentIntents and Refunds API (the ``stripe`` package).

The same code pays through Stripe and through the sandbox gateway process (``booking
gateway``), which speaks the subset of Stripe's API used here.

A charge under the port's idempotency key ``K`` is two calls:

1. create a PaymentIntent for the amount, unconfirmed, under the Stripe idempotency key
   ``K/create``: no money moves, and a replay with the same parameters answers the same
   intent, so :meth:`StripeGateway.retrieve` and :meth:`StripeGateway.void` find the
   intent of ``K`` by replaying it (Stripe cannot be asked by idempotency key);
2. confirm it with the card under ``K/confirm/<card digest>``: authorised and captured at
   once. A retry with the same card replays Stripe's first answer; another card after a
   decline confirms the same intent again; a confirm of an intent that succeeded already
   reads it and answers its charge, so one key is charged at most once.

Network failures, Stripe's 5xx, 409 ``idempotency_key_in_use`` and rate limits become
:class:`GatewayUnavailable` (the outcome is unknown: ask :meth:`retrieve`); card declines a
declined :class:`Charge`; refund refusals :class:`RefundRefused`. The HTTP client is
:mod:`storage.http11`'s kept connections, through anyio, so it runs on trio and on asyncio
alike, without the bridge.

Why not one call (a PaymentIntent created with ``confirm=true`` and the card): Stripe keeps
a key's first answer, 500 included, refuses the key with other parameters, and cannot be
asked for an intent by key or (consistently) by metadata; an intent created and confirmed
at once and answered 500 could not be found from ``K`` alone, a void could not stop it
arriving late, and another card after a decline would make a second intent for ``K``.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import anyio
import stripe

from storage.http11 import KeptConnections, parse_url
from storage.payment_types import (
    SANDBOX_CARDS,
    Charge,
    ChargeStatus,
    GatewayUnavailable,
    Refund,
    RefundRefused,
)

__all__ = ["STRIPE_API_BASE", "StripeGateway"]

logger = logging.getLogger(__name__)

#: Stripe's own API.
STRIPE_API_BASE = "https://api.stripe.com"

#: Failures whose outcome is unknown: the same call with the same key may be retried.
_UNKNOWN = (
    stripe.APIConnectionError,  # the network, a timeout
    stripe.APIError,  # 5xx, and 409 idempotency_key_in_use (a concurrent request)
    stripe.RateLimitError,
    stripe.AuthenticationError,  # our configuration: nothing was done
    stripe.PermissionError,
)
#: On the payment calls, also a request refused as it stands (a replayed key with other
#: parameters, an intent in a state the call does not expect): unknown, never a decline.
_UNSETTLED = (*_UNKNOWN, stripe.IdempotencyError, stripe.InvalidRequestError)


def _unavailable(exc: stripe.StripeError) -> GatewayUnavailable:
    """The port's "outcome unknown" for a provider failure."""
    return GatewayUnavailable(f"the payment provider failed: {exc.user_message or exc}")


class _KeptClient(stripe.HTTPClient):
    """Stripe's HTTP client interface over :mod:`storage.http11`'s kept connections, kept
    for the adapter's life: one TLS context (Stripe's CA bundle, as ``stripe``'s own
    clients use), keep-alive connections reused by every call.

    A call is its request written in one ``send`` (head and body) on a kept connection and
    its answer read, by a few lines of code when framed by ``Content-Length``, else by
    h11. httpx's ``AsyncClient`` (the ``stripe`` package's ``HTTPXClient``) built a request
    model, extracted cookies and handled auth and redirects per call; httpcore, which this
    adapter used next, wrote each request's head and body in two sends and scanned every
    connection of its pool, a readable-socket syscall for each idle one, per request (so it
    was 64 pools of 4 to keep the scans short). Here the gateway's origin has one pool:
    ``_MAX_CONNECTIONS`` connections at the most (the same 256: a sale's concurrent
    payments in one process), calls beyond that waiting their turn in order, and as many
    kept idle for ``_KEEPALIVE_S``; the most recently used idle connection is taken, and
    only it is polled.

    ``timeout`` bounds each phase of a call: waiting for a connection, connecting, and
    writing the request and reading its whole answer. Any failure of the transport is
    ``stripe.APIConnectionError`` (as ``stripe``'s own clients raise it: the outcome is
    unknown), and nothing is sent again here: a kept connection the gateway closed while
    idle is found so before the request is written to it and another is taken; one closed
    under the request fails the call, which ``stripe``'s ``max_network_retries`` and the
    callers, with the same idempotency keys, may retry. A proxy of the environment
    (``HTTPS_PROXY``, ``NO_PROXY``) is honoured through ``stripe``'s own ``HTTPXClient``.
    """

    name = "http11"

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__()
        self._base = api_base
        self._origin, base_path, proxied = parse_url(api_base)
        self._base_path = base_path.rstrip(b"/")
        self._proxied = stripe.HTTPXClient(timeout=timeout) if proxied else None
        self._http = KeptConnections(
            keepalive_s=_KEEPALIVE_S,
            max_idle=_MAX_CONNECTIONS,
            max_connections=_MAX_CONNECTIONS,
            timeout_s=timeout,
            ssl_context=_ssl_context,
        )

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """One call: (body, status, headers), or APIConnectionError if it could not be made
        or answered (the outcome is unknown)."""
        if self._proxied is not None:
            body, status, answer_headers = await self._proxied.request_async(
                method, url, headers, post_data
            )
            return body, status, answer_headers
        content = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            if url.startswith(self._base):
                origin, path = self._origin, self._base_path + url[len(self._base) :].encode()
            else:  # not under the base address (never so for the adapter's calls)
                origin, path, _ = parse_url(url)
            answer = await self._http.request(
                origin, method.upper().encode(), path, headers.items(), content
            )
        except Exception as exc:  # every transport failure: the outcome is unknown
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Unexpected error communicating with the payment provider "
                f"(network error: a {type(exc).__name__} was raised)",
                should_retry=True,
            ) from exc
        return answer.body, answer.status, answer.headers

    async def sleep_async(self, secs: float) -> None:
        await anyio.sleep(secs)

    async def close_async(self) -> None:
        await self._http.aclose()
        if self._proxied is not None:
            await self._proxied.close_async()  # type: ignore[no-untyped-call]


def _ssl_context() -> ssl.SSLContext:
    """The TLS context for the gateway: Stripe's CA bundle, as ``stripe``'s clients use."""
    context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
    context.set_alpn_protocols(["http/1.1"])
    return context


#: Connections to the gateway in one process, kept alive or busy (requests beyond wait).
_MAX_CONNECTIONS = 256
#: How long an idle connection is kept (httpx's default): a provider closing idle
#: connections sooner is found so before a request is written to the connection.
_KEEPALIVE_S = 5.0


def _card_digest(card_token: str) -> str:
    return hashlib.sha256(card_token.encode()).hexdigest()[:16]


class StripeGateway:
    """A :class:`engine.payments.PaymentGateway` over Stripe's API at ``api_base``.

    ``sandbox``: the sandbox's test card tokens (``tok_visa``…) may be used; otherwise they
    are declined without a call, so that no deployment pointed at a real provider takes them.
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = STRIPE_API_BASE,
        sandbox: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        self._http = _KeptClient(api_base, timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            max_network_retries=0,  # the callers retry, with the same keys
            http_client=self._http,
        )
        self.sandbox = sandbox
        self.api_base = api_base

    def __repr__(self) -> str:  # never the key
        return f"StripeGateway(api_base={self.api_base!r}, sandbox={self.sandbox})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.close_async()

    async def _call(
        self, method: str, path: str, idempotency_key: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """One API call; the object answered, as parsed JSON. Stripe's errors are raised as
        ``stripe`` raises them; the answer is not made a ``StripeObject`` (a recursive
        conversion costing more CPU than the JSON itself), as only a few fields are read."""
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        response = await self._client.raw_request_async(method, path, **params)
        data: dict[str, Any] = response.data
        return data

    async def _create(
        self, idempotency_key: str, amount_cents: int, currency: str
    ) -> dict[str, Any]:
        """The intent of ``idempotency_key``: created unconfirmed, or found by replaying that."""
        return await self._call(
            "post",
            "/v1/payment_intents",
            f"{idempotency_key}/create",
            amount=amount_cents,
            currency=currency.lower(),
            payment_method_types=["card"],
            metadata={"idempotency_key": idempotency_key},
        )

    async def _read(self, intent_id: str) -> dict[str, Any]:
        return await self._call("get", f"/v1/payment_intents/{intent_id}")

    async def charge(
        self, *, amount_cents: int, currency: str, card_token: str, idempotency_key: str
    ) -> Charge:
        """Authorise and capture ``amount_cents`` on the card, once per key."""
        if card_token in SANDBOX_CARDS and not self.sandbox:
            logger.warning("a sandbox test card was refused: this gateway is not the sandbox")
            return Charge(reference="", status=ChargeStatus.DECLINED)
        try:
            intent = await self._create(idempotency_key, amount_cents, currency)
            intent_id = intent["id"]
            try:
                confirmed = await self._call(
                    "post",
                    f"/v1/payment_intents/{intent_id}/confirm",
                    f"{idempotency_key}/confirm/{_card_digest(card_token)}",
                    payment_method_data={"type": "card", "card": {"token": card_token}},
                )
            except stripe.CardError:
                return Charge(reference=intent_id, status=ChargeStatus.DECLINED)
            except stripe.InvalidRequestError as exc:
                if exc.code != "payment_intent_unexpected_state":
                    raise
                # Succeeded (a charge under this key already) or cancelled (voided).
                confirmed = await self._read(intent_id)
        except _UNSETTLED as exc:
            raise _unavailable(exc) from exc
        if confirmed["status"] == "succeeded":
            return Charge(reference=confirmed["id"], status=ChargeStatus.SUCCEEDED)
        if confirmed["status"] == "processing":
            raise GatewayUnavailable(f"payment {confirmed['id']} is still processing")
        return Charge(reference=confirmed["id"], status=ChargeStatus.DECLINED)

    async def retrieve(
        self, *, idempotency_key: str, amount_cents: int, currency: str
    ) -> Charge | None:
        """The successful charge made under the key, or None."""
        try:
            intent = await self._create(idempotency_key, amount_cents, currency)
            current = await self._read(intent["id"])
        except _UNSETTLED as exc:
            raise _unavailable(exc) from exc
        if current["status"] == "succeeded":
            return Charge(reference=current["id"], status=ChargeStatus.SUCCEEDED)
        return None

    async def void(
        self, *, idempotency_key: str, amount_cents: int, currency: str
    ) -> Charge | None:
        """Cancel the key's intent unless it was captured; the charge if it was."""
        try:
            intent = await self._create(idempotency_key, amount_cents, currency)
            current = await self._read(intent["id"])
            if current["status"] not in ("succeeded", "canceled"):
                try:
                    current = await self._call(
                        "post",
                        f"/v1/payment_intents/{current['id']}/cancel",
                        f"{idempotency_key}/cancel",
                    )
                except stripe.InvalidRequestError as exc:
                    if exc.code != "payment_intent_unexpected_state":
                        raise
                    current = await self._read(intent["id"])
        except _UNSETTLED as exc:
            raise _unavailable(exc) from exc
        if current["status"] == "succeeded":
            return Charge(reference=current["id"], status=ChargeStatus.SUCCEEDED)
        if current["status"] != "canceled":
            raise GatewayUnavailable(
                f"payment {current['id']} could not be cancelled ({current['status']})"
            )
        return None

    async def refund(
        self, *, charge_reference: str, amount_cents: int, idempotency_key: str
    ) -> Refund:
        """Give back ``amount_cents`` of the PaymentIntent ``charge_reference``, once per key."""
        try:
            made = await self._call(
                "post",
                "/v1/refunds",
                idempotency_key,
                payment_intent=charge_reference,
                amount=amount_cents,
            )
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as exc:
            raise RefundRefused(str(exc.user_message or exc)) from exc
        except _UNKNOWN as exc:
            raise _unavailable(exc) from exc
        if made["status"] == "failed":
            raise RefundRefused(f"refund {made['id']} failed")
        return Refund(
            reference=made["id"], charge_reference=charge_reference, amount_cents=made["amount"]
        )
