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
httpcore's connection pools, through anyio, so it runs on trio and on asyncio alike,
without the bridge.

Why not one call (a PaymentIntent created with ``confirm=true`` and the card): Stripe keeps
a key's first answer, 500 included, refuses the key with other parameters, and cannot be
asked for an intent by key or (consistently) by metadata; an intent created and confirmed
at once and answered 500 could not be found from ``K`` alone, a void could not stop it
arriving late, and another card after a decline would make a second intent for ``K``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import anyio
import httpcore
import httpx
import stripe

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


class _PooledClient(stripe.HTTPClient):
    """Stripe's HTTP client interface over httpcore's connection pools, kept for the
    adapter's life: one TLS context, keep-alive connections reused by every call.

    httpx's ``AsyncClient`` (the ``stripe`` package's ``HTTPXClient``) adds, per call, a
    request model built from the absolute URL, cookie extraction, auth and redirect
    handling the API never needs: about a third of the client's CPU per call against the
    sandbox (cProfile, ``scripts/bench_gateway.py``). Here a call is one
    ``AsyncConnectionPool.request``: the body ``stripe`` encoded, its headers, the timeout.

    httpcore's pool scans all its connections for every queued request: with one pool sized
    to a sale's concurrent payments that cost milliseconds of CPU per call (57 charges/s
    against the sandbox, 20 connections kept alive; 101 with 256). Requests go round-robin
    over ``_POOLS`` pools of ``_POOL_CONNECTIONS`` each instead. The scan also asks the
    socket of every idle connection whether it is readable (a syscall each), so the pools
    are many and small: 64 of 4 cost ~1.1-1.5 ms of CPU per charge where 16 of 16 (the
    same 256 connections) cost ~1.9-2.2 ms. A proxy in the environment
    (``HTTPS_PROXY``, ``NO_PROXY``) is honoured, as httpx would.
    """

    name = "httpcore"

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__()
        ssl_context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
        url = httpx.URL(api_base)
        proxy_url = urllib.request.getproxies().get(url.scheme)
        proxy = None
        if proxy_url and not urllib.request.proxy_bypass(url.host):
            proxy = httpcore.Proxy(proxy_url)
        self._pools = [
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                proxy=proxy,
                max_connections=_POOL_CONNECTIONS,
                max_keepalive_connections=_POOL_CONNECTIONS,
                keepalive_expiry=_KEEPALIVE_S,
            )
            for _ in range(_POOLS)
        ]
        self._turn = itertools.cycle(self._pools)
        self._extensions = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, httpx.Headers]:
        """One call: (body, status, headers), or APIConnectionError if it could not be made
        or answered (the outcome is unknown)."""
        content = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            response = await next(self._turn).request(
                method.upper(),
                url,
                headers=list(headers.items()),
                content=content,
                extensions=self._extensions,
            )
        except Exception as exc:  # every transport failure: the outcome is unknown
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Unexpected error communicating with the payment provider "
                f"(network error: a {type(exc).__name__} was raised)",
                should_retry=True,
            ) from exc
        return response.content, response.status, httpx.Headers(response.headers)

    async def sleep_async(self, secs: float) -> None:
        await anyio.sleep(secs)

    async def close_async(self) -> None:
        for pool in self._pools:
            await pool.aclose()


#: Connection pools to the gateway in one process, and connections kept alive in each.
_POOLS = 64
_POOL_CONNECTIONS = 4
#: How long an idle connection is kept (httpx's default): a provider closing idle
#: connections sooner would fail the next call on it, an outcome unknown to be resolved.
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
        self._http = _PooledClient(api_base, timeout_s)
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
