"""Redis key names: the one place they are spelled.

Every key of an event carries the event's hash tag (``{E}``) so that every script
touches a single cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EVENTS_KEY", "EventKeys", "edge_bucket", "event_keys"]

#: Set of every event id this deployment knows; read by workers to find work.
EVENTS_KEY = "events"


@dataclass(frozen=True, slots=True)
class EventKeys:
    """The keys of one event."""

    event_id: str
    #: Hash: configuration and state (``state``, ``opens_at_ms``, prices, caps).
    meta: str
    #: Hash: counters (``seq``, ``serving``, ``free``, ``held``, ``sold``, per section).
    stats: str
    #: Stream: the waiting line, one entry per join, entry id ``<seq>-0``.
    queue: str
    #: Hash: ticket seq -> JSON record of that ticket's state and hold.
    tickets: str
    #: Hash: client id -> ticket seq (one place per client per event).
    clients: str
    #: Sorted set: ticket seq of each open hold, scored by its release time in ms.
    expiry: str
    #: Stream: outcomes for the realtime servers (prompts, expiries, confirmations).
    notify: str
    #: Stream: the event's log as the relay publishes it (fields ``seq``, ``entry``), trimmed.
    log: str
    #: Hash: realtime server id -> its last delivery report for this event
    #: (``"<prompts not yet written> <notify id read up to> <expires ms>"``), read by admission.
    backlog: str

    def join_bucket(self, kind: str, name: str) -> str:
        """Hash: a token bucket limiting joins to this event per ``kind`` (client, ip) and name."""
        return f"ev:{{{self.event_id}}}:bucket:{kind}:{name}"

    def challenge_difficulty(self) -> str:
        """String: the join challenge's difficulty as an admin set it (absent: the spec's)."""
        return f"ev:{{{self.event_id}}}:challenge"

    def used_challenge(self, nonce: str) -> str:
        """String: a join challenge already solved and used, until it expires."""
        return f"ev:{{{self.event_id}}}:challenge:used:{nonce}"

    def email_code(self, address_hash: str) -> str:
        """String: the HMAC of the one-time code sent to an address, expiring with it."""
        return f"ev:{{{self.event_id}}}:code:{address_hash}"

    def email_attempts(self, address_hash: str) -> str:
        """String: attempts at an address's code, expiring with it."""
        return f"ev:{{{self.event_id}}}:code:{address_hash}:n"

    def seat_map(self, section_id: str) -> str:
        """String: one character per seat of a section, rows separated by ``|``."""
        return f"ev:{{{self.event_id}}}:map:{section_id}"


def event_keys(event_id: str) -> EventKeys:
    """Return the keys of ``event_id``."""
    prefix = f"ev:{{{event_id}}}"
    return EventKeys(
        event_id=event_id,
        meta=f"{prefix}:meta",
        stats=f"{prefix}:stats",
        queue=f"{prefix}:queue",
        tickets=f"{prefix}:tickets",
        clients=f"{prefix}:clients",
        expiry=f"{prefix}:expiry",
        notify=f"{prefix}:notify",
        log=f"{prefix}:log",
        backlog=f"{prefix}:backlog",
    )


def edge_bucket(route: str, kind: str, name: str) -> str:
    """Hash: a token bucket limiting one route of the edge per ``kind`` (ip, hold, admin)
    and name; every bucket of a route shares the route's hash tag."""
    return f"edge:{{{route}}}:bucket:{kind}:{name}"
