"""What the built-in detectors share: option checking, token scanning, immutability.

Scanning: a detector encodes the text to UTF-8 once and searches the bytes with
one google-re2 pattern (linear time, DFA speed), which finds candidates; Python
then validates each candidate (a checksum, a length table). Patterns put
:data:`LEFT` before and :data:`RIGHT` after the candidate, so a hit is never
glued to a letter, digit or underscore of any script. :func:`scan` resumes
after each candidate at a place its check chooses, so a candidate that
over-reaches (an IBAN followed by a word) does not swallow the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import re2

from gateway.policy.types import DetectorConfigError

# A compiled google-re2 pattern (the library has no type stubs).
Regex = Any

LEFT = r"(?:^|[^\pL\pN_])"
RIGHT = r"(?:$|[^\pL\pN_])"
# Any run of white space, no-break spaces included (HTML bodies are full of them).
SPACES = r"[\s\p{Z}]+"

# A match of a compiled google-re2 pattern.
Match = Any
# Checks a candidate: its value (None to drop it) and the offset to search on from.
Check = Callable[[bytes, Match], tuple[str | None, int]]

_ALPHANUMERIC_RUN = re.compile(rb"[0-9A-Za-z]+")


def compile_re2(pattern: str, *, case_sensitive: bool = True) -> Regex:
    """Compile with re2, quietly: re2 otherwise logs syntax errors to stderr itself."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = case_sensitive
    return re2.compile(pattern, options)


def re2_error_text(error: Exception) -> str:
    """re2's own message for a pattern it refused (the library hands it over as bytes)."""
    message = error.args[0] if error.args else error
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def phrase(words: str) -> str:
    """A pattern for a word or phrase whose words may be separated by any white space."""
    return SPACES.join(re2.escape(word) for word in words.split())


def encode(text: str) -> bytes:
    """The UTF-8 bytes detectors search; a lone surrogate becomes ``?`` rather than an error."""
    return text.encode("utf-8", "replace")


def scan(regex: Regex, data: bytes, check: Check) -> list[str]:
    """Run ``check`` on every match of ``regex`` in ``data`` and collect the values it keeps."""
    found: list[str] = []
    pos = 0
    while (match := regex.search(data, pos)) is not None:
        value, resume = check(data, match)
        if value is not None:
            found.append(value)
        pos = resume if resume > match.start() else match.end()  # forward, whatever the check
    return found


def runs(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the ASCII letter-and-digit groups in data[start:end] (``NL91 ABNA`` has two)."""
    return [match.span() for match in _ALPHANUMERIC_RUN.finditer(data, start, end)]


class Frozen:
    """Base of the detectors: fields are set once in ``__init__``, so one can serve all threads."""

    __slots__ = ()

    def _init(self, **fields: object) -> None:
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


# --- Options -------------------------------------------------------------------------------


def _kind(value: object) -> str:
    return type(value).__name__


def check_keys(options: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse options that are not a table, and keys the detector does not know."""
    if not isinstance(options, Mapping):
        raise DetectorConfigError("options", f"must be a table, not {_kind(options)}")
    for key in options:
        if key not in known:
            raise DetectorConfigError(str(key), "unknown option")


def bool_option(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise DetectorConfigError(key, f"must be true or false, not {_kind(value)}")
    return value


def int_option(options: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DetectorConfigError(key, f"must be a whole number, not {_kind(value)}")
    if value < minimum:
        raise DetectorConfigError(key, f"must be at least {minimum}")
    return value


def str_option(options: Mapping[str, Any], key: str) -> str:
    """A required, non-empty string."""
    if key not in options:
        raise DetectorConfigError(key, "required option is missing")
    value = options[key]
    if not isinstance(value, str):
        raise DetectorConfigError(key, f"must be a string, not {_kind(value)}")
    if not value:
        raise DetectorConfigError(key, "must not be empty")
    return value


def str_list_option(
    options: Mapping[str, Any],
    key: str,
    default: tuple[str, ...] | None,
    *,
    choices: Collection[str] | None = None,
    allow_empty: bool = False,
) -> tuple[str, ...]:
    """A list of non-blank strings; required when ``default`` is None.

    With ``choices``, each item must be one of them (compared as given).
    """
    if key not in options:
        if default is None:
            raise DetectorConfigError(key, "required option is missing")
        return default
    value = options[key]
    if not isinstance(value, list | tuple):
        raise DetectorConfigError(key, f"must be a list of strings, not {_kind(value)}")
    if not value and not allow_empty:
        raise DetectorConfigError(key, "must not be empty")
    for index, item in enumerate(value, start=1):
        if not isinstance(item, str) or not item.strip():
            raise DetectorConfigError(key, f"item {index} must be a non-blank string")
        if choices is not None and item not in choices:
            allowed = ", ".join(sorted(choices))
            raise DetectorConfigError(key, f"unknown value {item!r} (choose from {allowed})")
    return tuple(value)
