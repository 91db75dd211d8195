"""Who the client is: its address behind trusted proxies, and whether per-IP limits apply.

A request's peer is the client unless the peer is a trusted proxy; then the
``X-Forwarded-For`` entries are read from the right (each proxy appends the address it
was reached from), skipping trusted proxies: the rightmost untrusted address is the
client. Entries left of it were written by the client itself and are never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["LOOPBACK", "AddressPolicy", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Loopback: the bench's thousands of clients all come from here.
LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ValueError names a malformed one."""
    networks = []
    for cidr in cidrs:
        text = cidr.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {text!r}") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressPolicy:
    """Trusted proxies and the addresses per-IP limits spare."""

    def __init__(self, trusted: Sequence[str] = (), exempt: Sequence[str] = ()) -> None:
        self._trusted = parse_networks(trusted)  # proxies whose X-Forwarded-For is believed
        self._exempt = parse_networks(exempt)  # clients no per-IP limit applies to

    def _trusts(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in net for net in self._trusted)

    def client(self, peer: str, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address: ``peer``, or behind trusted proxies the rightmost
        untrusted ``X-Forwarded-For`` entry (every header's entries, in order).

        An entry that is not an address ends the walk at the proxy that wrote it.
        """
        if not self._trusted or not self._trusts(peer):
            return peer
        entries = [e.strip() for header in forwarded_for for e in header.split(",")]
        client = peer
        for entry in reversed(entries):
            parsed = _address(entry)
            if parsed is None:
                return client
            client = str(parsed)
            if not self._trusts(client):
                return client
        return client

    def exempt(self, address: str) -> bool:
        """True when per-IP limits do not apply to ``address``."""
        parsed = _address(address)
        return parsed is not None and any(parsed in net for net in self._exempt)
