"""An administrator's regular expression, run by google-re2.

Option ``pattern`` (required) is RE2 syntax (https://github.com/google/re2/wiki/Syntax),
close to Python's; ``flags`` may list ``ignorecase``, ``multiline`` (``^`` and
``$`` at line ends) and ``dotall`` (``.`` matches a line break). RE2 runs in
time linear in the text, so no pattern can make a message take exponential
time (catastrophic backtracking); the price is that look-around and
backreferences are unavailable, and patterns using them are refused when the
pack is loaded. So are patterns that match the empty string, which would hit
everywhere. The value of a hit is the matched text (group 0).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import re2

from gateway.policy.detectors._common import (
    Frozen,
    Regex,
    check_keys,
    compile_re2,
    encode,
    re2_error_text,
    str_list_option,
    str_option,
)
from gateway.policy.types import Detector, DetectorConfigError

NAME = "regex"

FLAGS = {"ignorecase": "i", "multiline": "m", "dotall": "s"}
_OPTIONS = ("pattern", "flags")


class RegexDetector(Frozen):
    """Finds the matches of one compiled pattern."""

    __slots__ = ("name", "_regex")
    name: str
    _regex: Regex

    def __init__(self, regex: Regex) -> None:
        self._init(name=NAME, _regex=regex)

    def find(self, text: str) -> list[str]:
        matches = (match.group(0) for match in self._regex.finditer(encode(text)))
        return [found.decode("utf-8", "replace") for found in matches if found]


def _why_refused(pattern: str, error: Exception) -> str:
    """Explain a pattern re2 refused: a backtracking-only feature, or a plain syntax error."""
    with warnings.catch_warnings():  # Python's parser warns about some odd patterns
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError):
            return f"not a valid regular expression: {re2_error_text(error)}"
    return (
        "re2 does not support look-around or backreferences (nor a few other constructs "
        "only backtracking engines have); rewrite the pattern without them "
        f"(re2 says: {re2_error_text(error)})"
    )


def create(options: Mapping[str, Any]) -> Detector:
    """The ``regex`` detector factory."""
    check_keys(options, _OPTIONS)
    pattern = str_option(options, "pattern")
    flags = str_list_option(options, "flags", (), choices=FLAGS, allow_empty=True)
    letters = "".join(sorted({FLAGS[flag] for flag in flags}))
    try:
        regex = compile_re2(f"(?{letters}){pattern}" if letters else pattern)
    except re2.error as error:
        raise DetectorConfigError("pattern", _why_refused(pattern, error)) from error
    if regex.fullmatch(b"") is not None:
        raise DetectorConfigError("pattern", "matches the empty string, so it would hit everywhere")
    return RegexDetector(regex)
