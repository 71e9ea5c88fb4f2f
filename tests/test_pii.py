"""Personal data masking on the pool's copy of each exchange: what is masked and what is not."""

from __future__ import annotations

import json

import pytest

from feedback.pool.pii import mask
from tests.conftest import DATA


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to j.doe+news@mail.co.uk today", "write to [EMAIL] today"),
        ("call +44 20 7946 0958 or 415-555-2671", "call [PHONE] or [PHONE]"),
        ("Visa 4242-4242-4242-4242 exp 12/29", "Visa [CARD] exp 12/29"),
        ("GB82 WEST 1234 5698 7654 32 is my IBAN", "[IBAN] is my IBAN"),
        ("ssh to 192.168.0.12 or 2001:db8::8a2e:370:7334", "ssh to [IP] or [IP]"),
        ("SSN 123-45-6789", "SSN [SSN]"),
    ],
)
def test_personal_data_is_replaced_by_its_kind(text, masked):
    assert mask(text)[0] == masked


@pytest.mark.parametrize(
    "text",
    [
        "The Battle of Hastings was in 1066; 40,000 people fought.",
        "Version 3.11.4 of Python, see PEP 8 and RFC 2616.",
        "A 16-digit number that fails Luhn: 1234 5678 9012 3456.",
        "999.999.999.999 is not an address, and 12:30 is a time.",
        "Dates like 2026-11-21 and ratios like 16:9 stay.",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    assert mask(text) == (text, {})


def test_naughty_strings_are_masked_or_kept_byte_for_byte():
    """No string from the Big List of Naughty Strings breaks the masker; the ones with no
    personal data come back unchanged."""
    strings = json.loads((DATA / "blns" / "blns.json").read_text())
    changed = []
    for s in strings:
        out, found = mask(s)
        if not found:
            assert out == s
        else:
            changed.append((s, out))
    # The only ones touched are those with something that validates as personal data.
    assert all("[" in out for _, out in changed)
    assert len(changed) < 10, changed
