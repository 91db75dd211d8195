"""The line's records as the edges read them: the event's state and the outcomes.

They are decoded in ``storage/`` (where the scripts' answers are read) and pass
unchanged through the waiting room to the realtime channel, so there is one
union of outcomes from the stores to the edge; this module is where the edges
import them from.
"""

from __future__ import annotations

from storage.records import Confirmed, EventState, Expired, Left, Outcome, Prompted, SoldOut

__all__ = ["Confirmed", "EventState", "Expired", "Left", "Outcome", "Prompted", "SoldOut"]
