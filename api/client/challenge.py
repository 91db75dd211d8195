"""Solving a join challenge (ALTCHA v2 proof of work), as the page's Web Worker does."""

from __future__ import annotations

import altcha
import anyio

from api.http.schemas import ChallengeView
from realtime import protocol as p

__all__ = ["solve_challenge"]


def _solve(view: ChallengeView | p.Challenge) -> str:
    challenge = altcha.Challenge.from_dict(view.challenge)
    solution = altcha.solve_challenge(challenge, timeout=0)
    if solution is None:  # only a forged challenge has no solution
        raise ValueError("the challenge has no solution")
    return altcha.Payload(challenge, solution).to_base64()


async def solve_challenge(view: ChallengeView | p.Challenge) -> str:
    """The payload to send as the ``join`` message's ``challenge`` (solved in a thread):
    of a ``challenge`` message, or of ``GET /v1/events/{id}/challenge``."""
    return await anyio.to_thread.run_sync(_solve, view)
