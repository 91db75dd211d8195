"""The sandbox gateway: a process speaking the subset of Stripe's API the adapter uses.

``booking gateway`` serves it. Bodies are form-encoded, answers Stripe-shaped JSON;
``Authorization: Bearer sk_test_...``; ``Idempotency-Key`` works as Stripe's: the same key
with the same parameters answers the first answer again (5xx included, with
``Idempotent-Replayed: true``), other parameters a 400 ``idempotency_error``, and a key whose
first request still runs a 409 ``idempotency_key_in_use``. Its state (intents, refunds,
idempotent answers) is kept in SQLite in the data directory, so it outlives a restart.

What a payment does is chosen by its card token (``storage.payment_types.SANDBOX_CARDS``).
``GET /v1/ledger`` (the sandbox's own) says how much was charged and refunded, cent for cent.

| route | does |
|---|---|
| ``POST /v1/payment_intents`` | create (``amount``, ``currency``), unconfirmed |
| ``GET /v1/payment_intents/{id}`` | read |
| ``POST /v1/payment_intents/{id}/confirm`` | pay with ``payment_method_data[card][token]`` |
| ``POST /v1/payment_intents/{id}/cancel`` | cancel an intent not captured |
| ``POST /v1/refunds`` | refund ``amount`` (default: what is left) of ``payment_intent`` |
| ``GET /v1/ledger`` | charged, refunded and their difference, in cents |
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage.payment_types import SANDBOX_CARDS
from storage.sandbox_store import DB_FILE, SandboxStore

__all__ = ["DB_FILE", "SandboxOptions", "sandbox_app"]

logger = logging.getLogger(__name__)

#: Answers not kept for their idempotency key (the request did not run, as Stripe's; or
#: its caller went away: a timeout card).
_NOT_KEPT = (401, 409, 429, 504)


@dataclass(frozen=True)
class SandboxOptions:
    """The sandbox's knobs."""

    #: Added to every confirm and refund, seconds.
    latency_s: float = 0.0
    #: How long ``tok_slow`` takes to answer (it is charged at once), seconds.
    slow_s: float = 30.0


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, sort_keys=True).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(status: int, kind: str, message: str, **extra: Any) -> Response:
    return _json(status, {"error": {"type": kind, "message": message, **extra}})


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> Response:
    extra = {k: v for k, v in (("code", code), ("param", param)) if v}
    return _error(400, "invalid_request_error", message, **extra)


@dataclass
class _Sandbox:
    store: SandboxStore
    options: SandboxOptions
    running: set[tuple[str, str]] = field(default_factory=set)  # keys whose request runs

    def api_key(self, request: Request) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.startswith("sk_test_"):
            return None
        return key

    async def idempotent(
        self, request: Request, run: Callable[[dict[str, str]], Awaitable[Response]]
    ) -> Response:
        """Authenticate, parse the form, and run ``run`` once per idempotency key."""
        api_key = self.api_key(request)
        if api_key is None:
            return _error(401, "invalid_request_error", "Invalid API Key provided (sk_test_...)")
        body = (await request.body()).decode("utf-8", errors="replace")
        pairs = parse_qsl(body, keep_blank_values=True)
        params = dict(pairs)
        key = request.headers.get("idempotency-key")
        if key is None or request.method != "POST":
            return await run(params)
        fingerprint = hashlib.sha256(
            json.dumps([request.url.path, sorted(pairs)]).encode()
        ).hexdigest()
        slot = (api_key, key)
        if slot in self.running:
            return _error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                "going through)",
                code="idempotency_key_in_use",
            )
        kept = self.store.answer(api_key, key)
        if kept is not None:
            request_seen, status, stored = kept
            if request_seen != fingerprint:
                return _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                )
            return Response(
                stored,
                status_code=status,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
            )
        self.running.add(slot)
        try:
            response = await run(params)
            if response.status_code not in _NOT_KEPT:
                self.store.keep(
                    api_key, key, fingerprint, response.status_code, bytes(response.body)
                )
            response.headers["Idempotency-Key"] = key
            return response
        finally:
            self.running.discard(slot)

    async def create(self, request: Request) -> Response:
        async def run(params: dict[str, str]) -> Response:
            try:
                amount = int(params.get("amount", ""))
            except ValueError:
                return _invalid("Missing required param: amount.", param="amount")
            currency = params.get("currency", "")
            if amount < 1:
                return _invalid("Amount must be at least 1.", param="amount")
            if len(currency) != 3 or not currency.isalpha():
                return _invalid("Invalid currency.", param="currency")
            metadata = {
                k.removeprefix("metadata[").removesuffix("]"): v
                for k, v in params.items()
                if k.startswith("metadata[")
            }
            intent_id = self.store.create_intent(amount, currency.lower(), metadata)
            return _json(200, self.store.intent(intent_id))

        return await self.idempotent(request, run)

    async def read(self, request: Request) -> Response:
        if self.api_key(request) is None:
            return _error(401, "invalid_request_error", "Invalid API Key provided (sk_test_...)")
        intent = self.store.intent(request.path_params["intent"])
        if intent is None:
            return _missing("payment_intent", request.path_params["intent"])
        return _json(200, intent)

    async def confirm(self, request: Request) -> Response:
        intent_id = request.path_params["intent"]

        async def run(params: dict[str, str]) -> Response:
            intent = self.store.intent(intent_id)
            if intent is None:
                return _missing("payment_intent", intent_id)
            if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
                return _unexpected_state(intent, "confirm")
            card = params.get("payment_method_data[card][token]")
            if card is None:
                return _invalid(
                    "Missing required param: payment_method_data[card][token].",
                    param="payment_method_data",
                )
            if self.options.latency_s:
                await anyio.sleep(self.options.latency_s)
            if card == "tok_timeout":  # never answers: waits until the caller gives up
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                return _error(504, "api_error", "the caller went away")
            if SANDBOX_CARDS.get(card) == "succeeds" or card in (
                "tok_fail_after_charge",
                "tok_slow",
            ):
                self.store.set_status(intent_id, "succeeded", received=intent["amount"])
                if card == "tok_fail_after_charge":
                    return _error(500, "api_error", "An unknown error occurred (after charging).")
                if card == "tok_slow":
                    await anyio.sleep(self.options.slow_s)
                return _json(200, self.store.intent(intent_id))
            failure = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            }
            self.store.set_status(intent_id, "requires_payment_method", error=failure)
            return _json(
                402, {"error": {**failure, "payment_intent": self.store.intent(intent_id)}}
            )

        return await self.idempotent(request, run)

    async def cancel(self, request: Request) -> Response:
        intent_id = request.path_params["intent"]

        async def run(params: dict[str, str]) -> Response:
            intent = self.store.intent(intent_id)
            if intent is None:
                return _missing("payment_intent", intent_id)
            if intent["status"] in ("succeeded", "canceled"):
                return _unexpected_state(intent, "cancel")
            self.store.set_status(intent_id, "canceled")
            return _json(200, self.store.intent(intent_id))

        return await self.idempotent(request, run)

    async def refund(self, request: Request) -> Response:
        async def run(params: dict[str, str]) -> Response:
            intent_id = params.get("payment_intent", "")
            intent = self.store.intent(intent_id)
            if intent is None:
                return _missing("payment_intent", intent_id)
            if intent["status"] != "succeeded":
                return _invalid(
                    f"PaymentIntent {intent_id} has no successful charge to refund.",
                    code="charge_not_refundable",
                )
            left = intent["amount_received"] - self.store.refunded(intent_id)
            if left <= 0:
                return _invalid(
                    f"Charge for {intent_id} has already been refunded.",
                    code="charge_already_refunded",
                )
            try:
                amount = int(params.get("amount", left))
            except ValueError:
                return _invalid("Invalid integer: amount.", param="amount")
            if amount < 1:
                return _invalid("Amount must be at least 1.", param="amount")
            if amount > left:
                return _invalid(
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({left})",
                    code="amount_too_large",
                    param="amount",
                )
            if self.options.latency_s:
                await anyio.sleep(self.options.latency_s)
            return _json(
                200, {**self.store.add_refund(intent_id, amount), "currency": intent["currency"]}
            )

        return await self.idempotent(request, run)

    async def ledger(self, request: Request) -> Response:
        if self.api_key(request) is None:
            return _error(401, "invalid_request_error", "Invalid API Key provided (sk_test_...)")
        return _json(200, self.store.ledger())

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})


def _missing(kind: str, name: str) -> Response:
    return _invalid(f"No such {kind}: '{name}'", code="resource_missing", param=kind)


def _unexpected_state(intent: dict[str, Any], action: str) -> Response:
    return _invalid(
        f"You cannot {action} this PaymentIntent because it has a status of {intent['status']}.",
        code="payment_intent_unexpected_state",
    )


def sandbox_app(store: SandboxStore, options: SandboxOptions = SandboxOptions()) -> Starlette:
    """The sandbox gateway's ASGI app over ``store``."""
    sandbox = _Sandbox(store, options)
    return Starlette(
        routes=[
            Route("/healthz", sandbox.healthz),
            Route("/v1/payment_intents", sandbox.create, methods=["POST"]),
            Route("/v1/payment_intents/{intent}", sandbox.read, methods=["GET"]),
            Route("/v1/payment_intents/{intent}/confirm", sandbox.confirm, methods=["POST"]),
            Route("/v1/payment_intents/{intent}/cancel", sandbox.cancel, methods=["POST"]),
            Route("/v1/refunds", sandbox.refund, methods=["POST"]),
            Route("/v1/ledger", sandbox.ledger, methods=["GET"]),
        ]
    )
