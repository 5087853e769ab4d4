"""International bank account numbers (IBAN, ISO 13616-1).

An IBAN is a two-letter ISO 3166 country code, two check digits and the
country's BBAN, with one exact length per country (the SWIFT IBAN registry,
:data:`LENGTHS`). It is valid when, with the first four characters moved to the
end and letters read as numbers (A = 10 … Z = 35), the number is 1 modulo 97
(ISO 7064 MOD 97-10); the check digits themselves are 02 to 98.

It is written compact (``NL91ABNA0417164300``) or in groups of four separated by
single spaces (``NL91 ABNA 0417 1643 00``, the "print format"; no-break spaces
count), in either case. A candidate glued to another letter, digit or
underscore is refused; in print format, the IBAN must end exactly at a group's
end, so ``NL91 ABNA 0417 1643 00 is mine`` is found and ``NL91 ABNA 0417 1643
00X1`` is not. Option ``countries`` limits the country codes looked for. The
value of a hit is the compact upper-case IBAN.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from types import MappingProxyType
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
from gateway.policy.types import Detector, DetectorConfigError

NAME = "iban"

# IBAN length per country code, from the SWIFT IBAN registry (89 countries in 2025, every SEPA
# country among them; territories such as Åland, Guernsey or Réunion use FI, GB and FR IBANs).
LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_OPTIONS = ("countries",)
# One space, no-break space or line break between groups: hard-wrapped mail and PDF
# text often break a printed IBAN across lines.
_GAP = r"(?:[ \x{A0}]|\r?\n)"
# Compact (15 to 34 characters), or groups of four with a last group of one to four; a printed
# candidate may run on into the next words, and the check cuts it at the country's length.
_CANDIDATE = compile_re2(
    LEFT
    + r"([A-Za-z]{2}[0-9]{2}(?:[0-9A-Za-z]{11,30}"
    + rf"|(?:{_GAP}[0-9A-Za-z]{{4}}){{2,8}}(?:{_GAP}[0-9A-Za-z]{{1,4}})?))"
    + RIGHT
)


def valid_check_digits(iban: str) -> bool:
    """ISO 13616 / ISO 7064 MOD 97-10 on a compact upper-case IBAN."""
    if not 2 <= int(iban[2:4]) <= 98:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


class IbanDetector(Frozen):
    """Finds IBANs of the configured countries; see the module docstring."""

    __slots__ = ("name", "_lengths")
    name: str
    _lengths: Mapping[str, int]

    def __init__(self, lengths: Mapping[str, int]) -> None:
        self._init(name=NAME, _lengths=lengths)

    def find(self, text: str) -> list[str]:
        return scan(_CANDIDATE, encode(text), self._check)

    def _check(self, data: bytes, match: Match) -> tuple[str | None, int]:
        start, end = match.span(1)
        groups = runs(data, start, end)
        retry_at = groups[0][1]  # a refused candidate's second group may start an IBAN
        length = self._lengths.get(data[start : start + 2].decode("ascii").upper())
        if length is None:
            return None, retry_at
        taken = list(accumulate(group_end - group_start for group_start, group_end in groups))
        if length not in taken:  # too short, or the country's length falls inside a group
            return None, retry_at
        count = taken.index(length) + 1
        iban = b"".join(data[a:b] for a, b in groups[:count]).decode("ascii").upper()
        if not valid_check_digits(iban):
            return None, retry_at
        return iban, groups[count - 1][1]


def create(options: Mapping[str, Any]) -> Detector:
    """The ``iban`` detector factory."""
    check_keys(options, _OPTIONS)
    countries = str_list_option(options, "countries", tuple(LENGTHS))
    for country in countries:
        if country.upper() not in LENGTHS:
            raise DetectorConfigError("countries", f"no IBAN format known for {country!r}")
    lengths = {country.upper(): LENGTHS[country.upper()] for country in countries}
    return IbanDetector(MappingProxyType(lengths))
