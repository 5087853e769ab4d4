"""Keywords and phrases, as whole words.

Option ``words`` (required) lists the words and phrases; a phrase's words match
across any run of white space (line breaks and no-break spaces included). A
hit must be a whole word: no letter, digit or underscore of any script (Unicode
categories L and N) glued on either side, so ``secret`` does not match in
``secretary``. ``case_sensitive`` (default false) uses Unicode simple case
folding. All words are compiled once into a single google-re2 alternation,
longest first, so ``top secret`` wins over ``secret`` where both fit. The value
of a hit is the word as configured, so distinct values are distinct keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import re2

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
    phrase,
    re2_error_text,
    scan,
    str_list_option,
)
from gateway.policy.types import Detector, DetectorConfigError

NAME = "keywords"

_OPTIONS = ("words", "case_sensitive")


def _key(text: str, case_sensitive: bool) -> str:
    """What a word and every text it matches have in common: single spaces, maybe case-folded.

    Python's full case folding agrees with re2's simple folding on what is equal: every
    character re2 takes for another folds, in Python, to the same string.
    """
    joined = " ".join(text.split())
    return joined if case_sensitive else joined.casefold()


class KeywordDetector(Frozen):
    """Finds the configured words; a hit is told apart by its key (see :func:`_key`)."""

    __slots__ = ("name", "_regex", "_words", "_case_sensitive")
    name: str
    _regex: Regex
    _words: Mapping[str, str]
    _case_sensitive: bool

    def __init__(self, regex: Regex, words: Mapping[str, str], case_sensitive: bool) -> None:
        self._init(name=NAME, _regex=regex, _words=words, _case_sensitive=case_sensitive)

    def find(self, text: str) -> list[str]:
        return scan(self._regex, encode(text), self._check)

    def _check(self, data: bytes, match: Match) -> tuple[str | None, int]:
        start, end = match.span(1)
        key = _key(data[start:end].decode("utf-8"), self._case_sensitive)
        return self._words.get(key, key), end


def _by_key(words: tuple[str, ...], case_sensitive: bool) -> dict[str, str]:
    """Each word by its key; the same word twice is a mistake worth reporting."""
    by_key: dict[str, str] = {}
    for word in words:
        key = _key(word, case_sensitive)
        if key in by_key:
            raise DetectorConfigError("words", f"{word!r} is listed twice")
        by_key[key] = word
    return by_key


def create(options: Mapping[str, Any]) -> Detector:
    """The ``keywords`` detector factory."""
    check_keys(options, _OPTIONS)
    case_sensitive = bool_option(options, "case_sensitive", False)
    words = _by_key(str_list_option(options, "words", None), case_sensitive)
    # One group, not one per word: re2's submatch engine pays for every group on every hit.
    longest_first = sorted(words.items(), key=lambda item: len(item[0]), reverse=True)
    alternation = "|".join(phrase(word) for _, word in longest_first)
    try:
        regex = compile_re2(LEFT + f"({alternation})" + RIGHT, case_sensitive=case_sensitive)
    except re2.error as error:  # in practice only "pattern too large"
        problem = f"cannot compile the word list: {re2_error_text(error)}"
        raise DetectorConfigError("words", problem) from error
    return KeywordDetector(regex, MappingProxyType(words), case_sensitive)
