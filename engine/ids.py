"""The shape of ids in paths and tokens: checked before anything is looked up."""

from __future__ import annotations

import re

__all__ = ["is_valid_id"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$", re.ASCII)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` can be an event or booking id (1-64 of ``A-Za-z0-9_-``)."""
    return _ID.match(value) is not None
