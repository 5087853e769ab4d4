"""Payment card numbers (primary account numbers, ISO/IEC 7812).

A card number is 12 to 19 digits whose last digit is the Luhn check digit
(ISO/IEC 7812-1 annex B) and whose leading digits (the issuer identification
number) and length belong to a card scheme (:data:`SCHEMES`). Test numbers
such as 4111 1111 1111 1111 are valid card numbers and are found.

Accepted ways of writing one: all digits, or groups separated by single spaces
or by single dashes (one kind per number): groups of four with a shorter last
group (4-4-4-4, 4-4-4-4-3, 4-4-4-1 ...), or 4-6-5 and 4-6-4 (American Express,
Diners Club). A candidate glued to another letter, digit or underscore is
refused; a grouped one followed by one more group (``4111 1111 1111 1111 12/28``)
is also tried as its first four groups. Option ``schemes`` limits the schemes
looked for. The value of a hit is its digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.detectors._common import (
    LEFT,
    RIGHT,
    Frozen,
    Match,
    check_keys,
    compile_re2,
    encode,
    runs,
    scan,
    str_list_option,
)
from gateway.policy.types import Detector

NAME = "payment_card"


@dataclass(frozen=True)
class Scheme:
    """A card scheme: inclusive ranges of leading digits (both ends as long) and lengths."""

    prefixes: tuple[tuple[str, str], ...]
    lengths: frozenset[int]

    def issues(self, digits: str) -> bool:
        """Whether a number of these digits can be one of this scheme's cards."""
        if len(digits) not in self.lengths:
            return False
        return any(low <= digits[: len(low)] <= high for low, high in self.prefixes)


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


SCHEMES: dict[str, Scheme] = {
    "visa": Scheme((("4", "4"),), frozenset({13, 16, 19})),
    "mastercard": Scheme((("51", "55"), ("2221", "2720")), frozenset({16})),
    "amex": Scheme((("34", "34"), ("37", "37")), frozenset({15})),
    "discover": Scheme((("6011", "6011"), ("644", "649"), ("65", "65")), _lengths(16, 19)),
    "diners": Scheme((("36", "36"), ("300", "305"), ("38", "39")), _lengths(14, 19)),
    "jcb": Scheme((("3528", "3589"),), _lengths(16, 19)),
    "maestro": Scheme((("50", "50"), ("56", "69")), _lengths(12, 19)),
    "unionpay": Scheme((("62", "62"),), _lengths(16, 19)),
}

_OPTIONS = ("schemes",)


def _grouped(separator: str) -> str:
    return (
        rf"[0-9]{{4}}(?:{separator}[0-9]{{4}}){{2,3}}(?:{separator}[0-9]{{1,4}})?"
        rf"|[0-9]{{4}}{separator}[0-9]{{6}}{separator}[0-9]{{4,5}}"
    )


# Groups apart by spaces (or a line break: wrapped text) or by dashes.
_SPACED = r"(?: |\r?\n)"
_CANDIDATE = compile_re2(LEFT + rf"([0-9]{{12,19}}|{_grouped(_SPACED)}|{_grouped('-')})" + RIGHT)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812-1 over all the digits, check digit last."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class CardDetector(Frozen):
    """Finds card numbers of the configured schemes; see the module docstring."""

    __slots__ = ("name", "_schemes")
    name: str
    _schemes: tuple[Scheme, ...]

    def __init__(self, schemes: tuple[Scheme, ...]) -> None:
        self._init(name=NAME, _schemes=schemes)

    def find(self, text: str) -> list[str]:
        return scan(_CANDIDATE, encode(text), self._check)

    def _check(self, data: bytes, match: Match) -> tuple[str | None, int]:
        start, end = match.span(1)
        groups = runs(data, start, end)
        for count in (len(groups), 4) if len(groups) > 4 else (len(groups),):
            digits = b"".join(data[a:b] for a, b in groups[:count]).decode("ascii")
            if luhn_valid(digits) and any(scheme.issues(digits) for scheme in self._schemes):
                return digits, groups[count - 1][1]
        return None, groups[0][1]  # a refused candidate's second group may start a card


def create(options: Mapping[str, Any]) -> Detector:
    """The ``payment_card`` detector factory."""
    check_keys(options, _OPTIONS)
    names = str_list_option(options, "schemes", tuple(SCHEMES), choices=SCHEMES)
    return CardDetector(tuple(SCHEMES[name] for name in dict.fromkeys(names)))
