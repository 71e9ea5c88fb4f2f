"""Masking personal data before an exchange enters the training pool.

Owns finding and replacing emails, phone numbers, payment card numbers, IBANs, US social security
numbers and IP addresses with placeholders such as `[EMAIL]`. Validation is left to kept
libraries: `phonenumbers` (Google's libphonenumber) decides what is a real phone number,
`python-stdnum` checks card numbers (Luhn) and IBANs, and `ipaddress` checks IPs, so a year or a
quantity is not masked as a phone number. The stored conversation itself is never altered:
only the copy that may be trained on is masked.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

import phonenumbers
from stdnum import iban, luhn

EMAIL = re.compile(r"\b[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# (placeholder, pattern, check on the matched text); order matters: the longer, stricter
# formats go first so an IBAN's digits are not taken for a card number.
RULES = (
    ("EMAIL", EMAIL, None),
    ("IBAN", IBAN, iban.is_valid),
    ("CARD", CARD, lambda s: luhn.is_valid(re.sub(r"[ -]", "", s))),
    ("SSN", SSN, None),
    ("IP", IPV4, _valid_ip),
    ("IP", IPV6, _valid_ip),
)


def mask(text: str, region: str = "US") -> tuple[str, Counter]:
    """`text` with personal data replaced by placeholders, and how many of each were found.

    `region` is where phone numbers without a country code are read as local.

    >>> mask("Mail ana@example.org or call (415) 555-2671.")
    ('Mail [EMAIL] or call [PHONE].', Counter({'EMAIL': 1, 'PHONE': 1}))
    >>> mask("Card 4111 1111 1111 1111, not 4111 1111 1111 1112.")[0]
    'Card [CARD], not 4111 1111 1111 1112.'
    >>> mask("IBAN DE89 3704 0044 0532 0130 00; server 10.0.0.7; SSN 078-05-1120")[0]
    'IBAN [IBAN]; server [IP]; SSN [SSN]'
    >>> mask("In 1969, 600000000 people watched; version 1.2.3.4567 shipped.")
    ('In 1969, 600000000 people watched; version 1.2.3.4567 shipped.', Counter())
    """
    found: Counter = Counter()
    for label, pattern, check in RULES:

        def replace(m: re.Match, label=label, check=check) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            found[label] += 1
            return f"[{label}]"

        text = pattern.sub(replace, text)
    matches = list(phonenumbers.PhoneNumberMatcher(text, region))
    for m in reversed(matches):  # from the end, so earlier offsets stay valid
        text = text[: m.start] + "[PHONE]" + text[m.end :]
    if matches:
        found["PHONE"] += len(matches)
    return text, found
