"""Ticket codes: signed with the private key, verified offline with the public one."""

from __future__ import annotations

import pytest

from engine.mail import MAX_RETRY_S, retry_delay_s
from engine.ticket_codes import InvalidTicketCode, TicketClaims, TicketCodes, verify_ticket_code

CODES = TicketCodes(bytes(range(32)))


def test_a_code_says_its_ticket_and_verifies_with_the_public_key_alone() -> None:
    """The claims come back from the code; the same ticket always gets the same code."""
    code = CODES.issue("ev1", "bk0123", "stalls", 17)
    assert code.startswith("T1.ev1.bk0123.stalls.17.")
    assert verify_ticket_code(code, CODES.public_key) == TicketClaims("ev1", "bk0123", "stalls", 17)
    assert CODES.verify(code) == TicketClaims("ev1", "bk0123", "stalls", 17)
    assert CODES.issue("ev1", "bk0123", "stalls", 17) == code
    assert CODES.issue("ev1", "bk9999", "stalls", 17) != code  # resold seat, new code
    assert len(code) < 140  # a small QR code


def test_every_changed_character_is_refused() -> None:
    """Changing any one character of a code (claims or signature, its last character's
    unused bits included) makes it fail."""
    code = CODES.issue("ev1", "bk0123", "A", 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for i, original in enumerate(code):
        for replacement in (set(alphabet) if i == len(code) - 1 else {"0", "A", "_", "."}) - {
            original
        }:
            tampered = code[:i] + replacement + code[i + 1 :]
            with pytest.raises(InvalidTicketCode):
                verify_ticket_code(tampered, CODES.public_key)


@pytest.mark.parametrize(
    "code", ["", "T1", "T2.ev1.bk.A.3." + "A" * 86, "T1.ev1.bk.A.x." + "A" * 86, "é" * 10]
)
def test_malformed_codes_are_refused(code: str) -> None:
    """Wrong version, shape, position or characters: refused before any signature check."""
    with pytest.raises(InvalidTicketCode):
        CODES.verify(code)


def test_another_deployments_key_refuses_the_code() -> None:
    """A code signed with one key fails with another key, and with a key that is not one."""
    code = CODES.issue("ev1", "bk0123", "A", 3)
    with pytest.raises(InvalidTicketCode):
        verify_ticket_code(code, TicketCodes(bytes(32)).public_key)
    with pytest.raises(InvalidTicketCode):
        verify_ticket_code(code, "not-a-key")


def test_mail_retries_double_up_to_an_hour() -> None:
    """The wait after a failed mail doubles per attempt and stops at an hour."""
    assert [retry_delay_s(n, 5.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay_s(30, 5.0) == MAX_RETRY_S
