"""The ``bots`` scenario: fair buyers against one actor with 10,000 client ids.

Fair buyers are one person each: one client id, one address, one identity when the
event asks for one, arriving over the join window. The actor spreads its client ids
over a few devices and addresses and joins with as many ids as it can until the
window ends; with identity required it only has the few real identities it could get
(reused across its ids), and with a join challenge it pays the same proof of work per
join as a fair buyer. The sale opens when the window ends (everyone is in line, as in a
flash sale); whoever is prompted pays. The report is the actor's share of the seats.

Every client runs on loopback; the addresses are sent as ``X-Forwarded-For`` and the
server must trust loopback as a proxy and exempt nobody from its limits
(``BOOKING_TRUSTED_PROXIES=127.0.0.0/8``, ``BOOKING_LIMIT_EXEMPT=none``). Bounded in
clients and in time: everything stops at ``max_seconds``.

``python -m bench.bots`` starts embedded Redis and PostgreSQL and the system in this
process, runs the clients of each defence setting in a niced child process, and prints
the table.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
from websockets.exceptions import WebSocketException

from api.client import ApiError, BookingClient, WaitingRoom, solve_challenge
from bench.client import IDENTITY_AUDIENCE, IDENTITY_ISSUER, identity_token
from bench.harness import require_loopback
from bench.scenarios import event_body
from plumbing.runtime import run
from realtime import protocol as p

__all__ = ["BotsOptions", "BotsReport", "Buyer", "run_bots"]

#: Seats a fair buyer asks for.
FAIR_QUANTITY = 2


@dataclass(frozen=True)
class BotsOptions:
    """One run: the buyers, the actor, the defences, the bounds."""

    fair: int = 2000
    bot_ids: int = 10_000
    bot_addresses: int = 20
    bot_devices: int = 20  # joins the actor makes at once (each solves its own challenge)
    bot_identities: int = 20  # real identities the actor has when one is required
    identity: bool = False
    max_per_person: int = 4  # with identity; also what each of the actor's joins asks
    challenge_difficulty: int = 0
    seats: int = 600
    window_s: float = 20.0  # joins until the sale opens
    hold_seconds: int = 10
    max_seconds: float = 240.0
    identity_secret: str = ""
    seed: int = 1


@dataclass
class Buyer:
    """One join: a fair buyer's, or one of the actor's ids."""

    kind: str  # "fair" or "bot"
    client_id: str
    person: int  # the identity's index (the actor's repeat)
    quantity: int
    address: str
    ticket: int = 0
    refused: str = ""  # the error code of a refused join or a failed connection
    prompted: bool = False
    outcome: str = ""
    seats: int = 0  # confirmed


@dataclass
class BotsReport:
    """What a run saw."""

    options: dict[str, Any]
    buyers: list[Buyer]
    audit: dict[str, Any]
    elapsed_s: float
    opened_after_s: float
    server_cpu_s: float = 0.0  # filled in by the process serving, when it measures
    bot_attempts: int = 0  # the actor's joins tried before the window ended
    stopped_early: bool = False

    def of(self, kind: str) -> list[Buyer]:
        """The buyers of one kind."""
        return [b for b in self.buyers if b.kind == kind]

    def seats(self, kind: str) -> int:
        """Seats confirmed to one kind."""
        return sum(b.seats for b in self.of(kind))

    def actor_share(self) -> float:
        """The actor's share of the seats sold."""
        total = self.seats("bot") + self.seats("fair")
        return self.seats("bot") / total if total else 0.0

    def seats_per_actor_identity(self) -> dict[int, int]:
        """Seats confirmed per identity the actor used."""
        out: dict[int, int] = {}
        for b in self.of("bot"):
            out[b.person] = out.get(b.person, 0) + b.seats
        return out

    def summary(self) -> dict[str, Any]:
        """The numbers of the table."""
        bots, fair = self.of("bot"), self.of("fair")
        refused: dict[str, int] = {}
        for b in bots:
            if b.refused:
                refused[b.refused] = refused.get(b.refused, 0) + 1
        return {
            "identity": self.options["identity"],
            "difficulty": self.options["challenge_difficulty"],
            "fair_buyers": len(fair),
            "fair_joined": sum(1 for b in fair if b.ticket),
            "fair_seats": self.seats("fair"),
            "actor_attempts": self.bot_attempts,
            "actor_joins": sum(1 for b in bots if b.ticket),
            "actor_places": len({(b.ticket) for b in bots if b.ticket}),
            "actor_refused": refused,
            "actor_seats": self.seats("bot"),
            "actor_share": round(self.actor_share(), 4),
            "actor_most_per_identity": max(self.seats_per_actor_identity().values(), default=0),
            "capacity": self.audit.get("capacity"),
            "sold": self.audit.get("sold_in_postgres"),
            "oversold": self.audit.get("oversold"),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "elapsed_s": round(self.elapsed_s, 1),
            "stopped_early": self.stopped_early,
        }


def _event(options: BotsOptions) -> dict[str, Any]:
    body = event_body(
        options.seats,
        hold_seconds=options.hold_seconds,
        max_active_holds=options.seats,
        name="Bench: bots",
    )
    if options.identity:
        body["identity"] = {"kind": "jwt", "issuer": IDENTITY_ISSUER, "audience": IDENTITY_AUDIENCE}
        body["max_per_person"] = options.max_per_person
    if options.challenge_difficulty:
        body["challenge_difficulty"] = options.challenge_difficulty
    return body


class _Run:
    def __init__(self, options: BotsOptions, http: BookingClient, event_id: str, url: str):
        self.options = options
        self.http = http
        self.event_id = event_id
        self.url = url
        self.tokens: dict[str, str] = {}

    def token(self, subject: str) -> str | None:
        if not self.options.identity:
            return None
        if subject not in self.tokens:
            self.tokens[subject] = identity_token(self.options.identity_secret, subject)
        return self.tokens[subject]

    async def buyer(
        self, b: Buyer, subject: str, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Join; started once queued or refused; then pay when prompted."""
        started = False
        held = 0
        try:
            headers = {"X-Forwarded-For": b.address}
            async with WaitingRoom.connect(self.url, headers=headers) as room:
                join = p.Join(
                    quantity=b.quantity, client_id=b.client_id, identity=self.token(subject)
                )
                await room.send(join)
                while True:
                    msg = await room.receive()
                    match msg:
                        case p.Challenge():  # proof of work asked: solve it, join again
                            solved = await solve_challenge(msg)
                            await room.send(msgspec.structs.replace(join, challenge=solved))
                        case p.Queued():
                            b.ticket = msg.ticket
                            if not started:
                                started = True
                                task_status.started()
                        case p.Prompt():
                            if b.prompted:
                                continue
                            b.prompted, held = True, len(msg.seats)
                            try:
                                await self.http.pay(
                                    msg.hold_id, msg.hold_token, "tok_visa", secrets.token_hex(8)
                                )
                            except ApiError as exc:
                                b.refused = f"payment {exc.code}"
                        case p.Confirmed():
                            b.outcome, b.seats = "confirmed", held
                            return
                        case p.Expired():
                            b.outcome = "expired"
                            return
                        case p.SoldOut():
                            b.outcome = "sold_out"
                            return
                        # Sold out for now: the bots' sale cancels nothing, so none returns.
                        case p.Position(sold_out_for_now=True):
                            b.outcome = "sold_out"
                            return
                        case p.Left():
                            b.outcome = "left"
                            return
                        case p.Error():
                            b.refused = b.refused or msg.code
                            b.outcome = "refused"
                            return
                        case _:
                            pass
        except (OSError, WebSocketException, ApiError) as exc:
            b.refused = b.refused or type(exc).__name__
            b.outcome = b.outcome or "error"
        finally:
            if not started:
                task_status.started()


async def run_bots(http_url: str, admin_key: str, options: BotsOptions) -> BotsReport:
    """Run the scenario against the deployment at ``http_url`` (loopback only)."""
    require_loopback(http_url)
    rng = random.Random(options.seed)
    deadline = time.monotonic() + options.max_seconds
    async with (
        BookingClient(http_url, admin_key=admin_key) as admin,
        BookingClient(http_url, max_connections=64, timeout_s=None) as http,
    ):
        created = await admin.create_event(_event(options))
        require_loopback(created.waitroom_url)
        await admin.pause(created.id)
        run = _Run(options, http, created.id, created.waitroom_url)
        fair = [
            Buyer(
                "fair",
                f"fair-{i}",
                i,
                FAIR_QUANTITY,
                f"10.{1 + i // 65000}.{i // 250 % 250}.{i % 250 + 1}",
            )
            for i in range(options.fair)
        ]
        bots: list[Buyer] = []
        started = time.monotonic()
        window_end = started + options.window_s
        attempts = 0
        stopped_early = True

        async def fair_buyer(tg: anyio.abc.TaskGroup, b: Buyer, at: float) -> None:
            await anyio.sleep(at)
            await tg.start(run.buyer, b, b.client_id)

        async def device(tg: anyio.abc.TaskGroup, k: int) -> None:
            nonlocal attempts
            while time.monotonic() < window_end and attempts < options.bot_ids:
                i = attempts
                attempts += 1
                person = i % options.bot_identities
                b = Buyer(
                    "bot",
                    f"bot-{i}",
                    person,
                    options.max_per_person,
                    f"10.250.0.{i % options.bot_addresses + 1}",
                )
                bots.append(b)
                with anyio.move_on_after(max(0.0, window_end - time.monotonic())):
                    await tg.start(run.buyer, b, f"actor-{person}")

        opened_after = 0.0
        with anyio.move_on_after(options.max_seconds):
            async with anyio.create_task_group() as clients:
                async with anyio.create_task_group() as joining:
                    for b in fair:
                        at = rng.uniform(0, options.window_s * 0.9)
                        joining.start_soon(fair_buyer, clients, b, at)
                    for k in range(options.bot_devices):
                        joining.start_soon(device, clients, k)
                await anyio.sleep(max(0.0, window_end - time.monotonic()))
                await admin.resume(created.id)
                opened_after = time.monotonic() - started
                # Superseded sockets (one identity, many ids) never hear an outcome: the
                # run ends once every fair buyer is done and no hold is open, with the line
                # empty or sold out (its places kept for seats no one here will return).
                while time.monotonic() < deadline:
                    await anyio.sleep(0.5)
                    if any(not b.outcome for b in fair):
                        continue
                    view = await admin.event(created.id)
                    done = view.queue_length == 0 or view.state == "sold_out"
                    if done and view.active_holds == 0:
                        stopped_early = False
                        break
                clients.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        audit = msgspec.to_builtins(await admin.audit(created.id, settled=True))
        return BotsReport(
            asdict(replace(options, identity_secret="")),
            fair + bots,
            audit,
            elapsed,
            opened_after,
            bot_attempts=attempts,
            stopped_early=stopped_early,
        )


def _cpu_s(pid: int) -> float:
    """User + system CPU of process ``pid`` so far, seconds (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_of(options: BotsOptions, difficulties: list[int]) -> list[BotsOptions]:
    """The defence settings compared: none, identity, each difficulty, both (the highest)."""
    out = [replace(options, identity=False, challenge_difficulty=0)]
    out.append(replace(options, identity=True, challenge_difficulty=0))
    out += [replace(options, identity=False, challenge_difficulty=d) for d in difficulties]
    out.append(replace(options, identity=True, challenge_difficulty=max(difficulties)))
    return out


ROW = (
    "{identity!s:>8} {difficulty:>10} {fair_joined:>6} {fair_seats:>6} {actor_attempts:>8} "
    "{actor_joins:>7} {actor_places:>7} {actor_seats:>6} {actor_share:>6.1%} "
    "{actor_most_per_identity:>8} {sold:>5}/{capacity:<5} {server_cpu_s:>7} {elapsed_s:>6}"
)
HEAD = (
    f"{'identity':>8} {'difficulty':>10} {'fair':>6} {'seats':>6} {'tried':>8} "
    f"{'joined':>7} {'places':>7} {'seats':>6} {'share':>6} {'per id':>8} {'sold':>11} "
    f"{'cpu s':>7} {'time s':>6}"
)


async def _main(args: argparse.Namespace) -> int:
    if args.nice:
        os.nice(args.nice)
    options = BotsOptions(
        fair=args.fair,
        bot_ids=args.bot_ids,
        bot_addresses=args.bot_addresses,
        bot_devices=args.bot_devices,
        bot_identities=args.bot_identities,
        max_per_person=args.max_per_person,
        seats=args.seats,
        window_s=args.window,
        hold_seconds=args.hold_seconds,
        max_seconds=args.max_seconds,
        identity_secret=args.identity_secret,
    )
    difficulties = [int(d) for d in args.difficulties.split(",") if d.strip()]
    print("actor: fair buyers/seats; tried/joined/places/seats/share/most per identity")
    print(HEAD, flush=True)
    summaries = []
    for setting in settings_of(options, difficulties):
        before = _cpu_s(args.server_pid) if args.server_pid else 0.0
        report = await run_bots(args.url, args.admin_key, setting)
        if args.server_pid:
            report.server_cpu_s = _cpu_s(args.server_pid) - before
        summary = report.summary()
        summaries.append(summary)
        print(ROW.format(**summary), flush=True)
        bound = setting.max_per_person * setting.bot_identities
        if setting.identity and summary["actor_seats"] > bound:
            print(f"BOUND BROKEN: the actor got {summary['actor_seats']} > {bound}")
            return 1
    if args.json:
        await anyio.Path(args.json).write_bytes(msgspec.json.encode(summaries))
    return 0


def main() -> int:
    """``python -m bench.bots --url URL``: the defence settings in turn, one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--admin-key", default=os.environ.get("BOOKING_ADMIN_KEY", ""))
    parser.add_argument("--identity-secret", default=os.environ.get("BOOKING_IDENTITY_SECRET", ""))
    parser.add_argument("--fair", type=int, default=500)
    parser.add_argument("--bot-ids", type=int, default=10_000)
    parser.add_argument("--bot-addresses", type=int, default=20)
    parser.add_argument("--bot-devices", type=int, default=20)
    parser.add_argument("--bot-identities", type=int, default=20)
    parser.add_argument("--max-per-person", type=int, default=4)
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--hold-seconds", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=180.0)
    parser.add_argument("--difficulties", default="10000,50000")
    parser.add_argument("--server-pid", type=int, default=0, help="measure this process's CPU")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--runtime", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    result = run(lambda: _main(args), args.runtime)
    return 130 if result is None else result


if __name__ == "__main__":
    sys.exit(main())
