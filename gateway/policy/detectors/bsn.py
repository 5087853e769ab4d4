"""Dutch citizen service numbers (burgerservicenummer, BSN).

A BSN has nine digits d1..d9 and passes the BSN 11-test (elfproef, inherited
from the sofinummer; the bank-account 11-test differs in its last weight)::

    9·d1 + 8·d2 + 7·d3 + 6·d4 + 5·d5 + 4·d6 + 3·d7 + 2·d8 − 1·d9 ≡ 0 (mod 11)

and is not all zeros. Accepted ways of writing one: ``123456782``,
``1234.56.782``, ``1234 56 782`` and ``123.456.782``. Eight-digit forms (a
leading zero left off) are not accepted: BSNs are issued, printed and stored
with nine digits, and eight-digit runs are mostly something else (Dutch mobile
numbers without their ``06``, order and customer numbers).

A candidate must stand alone, or it is part of a longer number:

- no letter, digit or underscore glued on either side (an IBAN or an account
  number holds nine-digit runs);
- no dot or hyphen joining it to more digits (``5.123456782``,
  ``2026-123456782``, ``123456782-01``: decimals, dates, references);
- no international dialling prefix before it (``+31 201234567``,
  ``0031 201234567``, ``+31 (0)201234567``): a Dutch phone number without its
  trunk zero has nine digits;
- not an amount: no currency before it (``€ 123456789``, ``EUR 123.456.789``),
  no decimals after a dotted form (``123.456.789,00``).

About one nine-digit number in eleven passes the 11-test by chance, so a bare
nine-digit run is weak evidence. With ``require_context`` a hit counts only when
one of ``context_words`` starts a word within ``context_window`` characters
before or after it (a prefix, so the Dutch compounds ``patiëntnummer`` and
``bsn-nummer`` count too). The value of a hit is its nine digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.policy.detectors._common import (
    LEFT,
    RIGHT,
    Frozen,
    Match,
    Regex,
    bool_option,
    check_keys,
    compile_re2,
    encode,
    int_option,
    phrase,
    scan,
    str_list_option,
)
from gateway.policy.types import Detector

NAME = "bsn"

CONTEXT_WORDS: tuple[str, ...] = (
    "bsn",
    "b.s.n.",
    "burgerservicenummer",
    "burger service nummer",
    "burgerservice nummer",
    "sofinummer",
    "sofi-nummer",
    "sofi nummer",
    "citizen service number",
    "citizen service no",
    "social security number",
    "persoonsnummer",
    "patient",
    "patiënt",
    "cliëntnummer",
    "geboortedatum",
    "geb. datum",
    "date of birth",
    "birth date",
    "verzekerde",
    "identiteitsbewijs",
    "paspoort",
    "passport",
)

_OPTIONS = ("context_words", "require_context", "context_window")
_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)

_CANDIDATE = compile_re2(
    LEFT + r"(\d{9}|\d{4}\.\d\d\.\d{3}|\d{4} \d\d \d{3}|\d{3}\.\d{3}\.\d{3})" + RIGHT
)
# What, just before a candidate, makes it part of a longer number or an amount: more digits
# and a dot or hyphen, an international dialling prefix, a currency (euro and pound in UTF-8).
_NUMBER_BEFORE = re.compile(
    rb"(?:[0-9][.\-]"
    rb"|(?:\+|(?<![0-9])00)[0-9]{1,3}[ \-]?(?:\(0\)[ \-]?)?"
    rb"|(?:\xe2\x82\xac|\xc2\xa3|\$|EUR|USD|GBP) ?)\Z"
)
_LONGEST_PREFIX = 12  # bytes _NUMBER_BEFORE reads at most: "00358-(0)-" and its look-behind
_NUMBER_AFTER = re.compile(rb"[.\-][0-9]")
_DECIMALS_AFTER = re.compile(rb",[0-9]")  # after 123.456.789: an amount in Dutch notation


def passes_11_test(digits: str) -> bool:
    """The BSN 11-test on nine digits; all zeros fails."""
    total = sum(weight * int(digit) for weight, digit in zip(_WEIGHTS, digits, strict=True))
    return total % 11 == 0 and digits != "000000000"


def _chars_back(data: bytes, pos: int, chars: int) -> int:
    """The byte offset ``chars`` UTF-8 characters before ``pos`` (or 0)."""
    while chars > 0 and pos > 0:
        pos -= 1
        if data[pos] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            chars -= 1
    return pos


def _chars_forward(data: bytes, pos: int, chars: int) -> int:
    """The byte offset ``chars`` UTF-8 characters after ``pos`` (or the end)."""
    while chars > 0 and pos < len(data):
        pos += 1
        while pos < len(data) and data[pos] & 0xC0 == 0x80:
            pos += 1
        chars -= 1
    return pos


class BsnDetector(Frozen):
    """Finds BSNs; see the module docstring for what counts."""

    __slots__ = ("name", "_context", "_require_context", "_window")
    name: str
    _context: Regex
    _require_context: bool
    _window: int

    def __init__(self, context: Regex, require_context: bool, window: int) -> None:
        self._init(name=NAME, _context=context, _require_context=require_context, _window=window)

    def find(self, text: str) -> list[str]:
        return scan(_CANDIDATE, encode(text), self._check)

    def _check(self, data: bytes, match: Match) -> tuple[str | None, int]:
        start, end = match.span(1)
        digits = data[start:end].translate(None, b". ").decode("ascii")
        if not passes_11_test(digits) or _in_longer_number(data, start, end):
            return None, end
        if self._require_context and not self._has_context(data, start, end):
            return None, end
        return digits, end

    def _has_context(self, data: bytes, start: int, end: int) -> bool:
        # One character more on the left: the word boundary before a context word.
        low = _chars_back(data, start, self._window + 1)
        high = _chars_forward(data, end, self._window)
        return self._context.search(data, low, high) is not None


def _in_longer_number(data: bytes, start: int, end: int) -> bool:
    if _NUMBER_BEFORE.search(data, max(0, start - _LONGEST_PREFIX), start) is not None:
        return True
    if _NUMBER_AFTER.match(data, end) is not None:
        return True
    return b"." in data[start:end] and _DECIMALS_AFTER.match(data, end) is not None


def create(options: Mapping[str, Any]) -> Detector:
    """The ``bsn`` detector factory."""
    check_keys(options, _OPTIONS)
    words = str_list_option(options, "context_words", CONTEXT_WORDS)
    require_context = bool_option(options, "require_context", False)
    window = int_option(options, "context_window", 60, minimum=1)
    context = compile_re2(
        LEFT + "(?:" + "|".join(phrase(word) for word in words) + ")", case_sensitive=False
    )
    return BsnDetector(context, require_context, window)
