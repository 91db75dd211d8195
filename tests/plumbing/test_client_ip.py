"""The client's address behind trusted proxies, and the exempt addresses."""

from __future__ import annotations

import pytest

from plumbing.client_ip import LOOPBACK, AddressPolicy

PROXIES = ("10.0.0.0/8", "192.0.2.1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", [], "203.0.113.5"),  # no proxy
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # an untrusted peer's header is ignored
        ("10.1.2.3", [], "10.1.2.3"),  # a trusted peer without a header
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # left of it: the client's word
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1, 192.0.2.1"], "198.51.100.1"),  # two proxies
        ("10.1.2.3", ["10.9.9.9, 10.8.8.8"], "10.9.9.9"),  # all trusted: the leftmost
        ("10.1.2.3", ["198.51.100.1, garbage"], "10.1.2.3"),  # garbage ends the walk
        ("10.1.2.3", [" 2001:db8::1 "], "2001:db8::1"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
    ],
)
def test_the_rightmost_untrusted_address_is_the_client(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert AddressPolicy(PROXIES).client(peer, forwarded) == client


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert AddressPolicy().client("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_exempt_addresses() -> None:
    policy = AddressPolicy(exempt=LOOPBACK)
    assert policy.exempt("127.0.0.1") and policy.exempt("127.8.0.1") and policy.exempt("::1")
    assert not policy.exempt("198.51.100.1") and not policy.exempt("") and not policy.exempt("x")
    assert not AddressPolicy().exempt("127.0.0.1")


def test_malformed_networks_are_refused() -> None:
    with pytest.raises(ValueError, match="not an address or CIDR"):
        AddressPolicy(("10.0.0.0/33",))
