"""How a protected recipient proves who they are: the methods offered, from the message.

The policy names the methods a rule allows (``verify = ["email", "sms",
"access-code"]``); the sender may supply what some need, in header fields that
Sealgate removes before anything leaves (gateway.mail.instructions lists them all):

- ``X-Sealgate-Access-Code: <code>``: a code the sender tells the recipient
  another way (phone, letter). Stored only as an HMAC keyed outside the
  database. A weak one (:func:`weak_access_code`) counts as not supplied: the
  recipient gets the other methods the rule allows, or is held.
- ``X-Sealgate-Phone: +31612345678`` (every protected recipient) or
  ``X-Sealgate-Phone: bob@example.net +31612345678; carol@example.be +32470123456``:
  numbers for SMS codes, E.164.

Without a rule's list, a recipient gets email codes, plus SMS when a number
was given (and an SMS provider is configured), plus the access code when one
was given. A recipient whose rule needs a method nothing was supplied for is
missing something: the pipeline holds them and asks the sender.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.mail import message

# Re-exported: the pipeline names them when it tells a sender what is missing.
from gateway.mail.instructions import ACCESS_CODE_FIELD as ACCESS_CODE_FIELD
from gateway.mail.instructions import PHONE_FIELD as PHONE_FIELD

_ACCESS_LABEL = b"sealgate access code\x00"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# The weakest access code accepted: 8 characters after normalisation, of which at least
# 4 differ, and not a straight run. 8 digits are 10**8 codes; docs/portal.md gives the
# chance of guessing one within a link's lifetime budget of wrong entries.
MIN_ACCESS_CODE_LENGTH = 8
_MIN_DISTINCT = 4


@dataclass(frozen=True)
class Factors:
    """One recipient's second factors, as the reader record stores them."""

    methods: tuple[str, ...]
    access_code_hash: bytes | None = None
    phone: str | None = None
    missing: tuple[str, ...] = ()  # "phone", "access-code": what the rule needs but lacks
    weak_access_code: bool = False  # the sender gave one, too weak to be used


def normal_access_code(code: str) -> str:
    """What is compared: blanks removed, case folded (``Tulip 4242`` = ``tulip4242``)."""
    return "".join(code.split()).casefold()


def weak_access_code(code: str) -> bool:
    """True for a code a link holder could guess within a few tries.

    Shorter than MIN_ACCESS_CODE_LENGTH after normalisation; fewer than four
    different characters (``11111111``, ``12121212``, ``abababab``); or a
    straight run up or down (``12345678``, ``87654321``, ``abcdefgh``,
    ``78901234``). What remains is at least 10**8 codes for digits alone,
    more with letters; dictionary words and birthdays are not caught, so the
    docs tell senders to use a random code.
    """
    normal = normal_access_code(code)
    if len(normal) < MIN_ACCESS_CODE_LENGTH or len(set(normal)) < _MIN_DISTINCT:
        return True
    return _straight_run(normal)


def _straight_run(text: str) -> bool:
    """Each character one step after (or before) the previous one; digits wrap 9 -> 0."""

    def step(a: str, b: str) -> int:
        if a.isdigit() and b.isdigit():
            return (int(b) - int(a)) % 10
        return ord(b) - ord(a)

    steps = {step(a, b) for a, b in zip(text, text[1:], strict=False)}
    return steps in ({1}, {-1}, {9})


def access_code_hash(secret: bytes, code: str) -> bytes:
    """The stored form of a sender-supplied access code (blanks and case do not matter)."""
    normalised = normal_access_code(code).encode("utf-8")
    return hmac.new(secret, _ACCESS_LABEL + normalised, hashlib.sha256).digest()


def normal_phone(text: str) -> str | None:
    """``+31 6 1234 5678`` -> ``+31612345678``; None if it is not an E.164 number."""
    compact = re.sub(r"[\s().-]", "", text)
    return compact if _E164.fullmatch(compact) else None


def phones(data: bytes, recipients: Sequence[str]) -> dict[str, str]:
    """Phone numbers per recipient from the X-Sealgate-Phone fields (invalid ones ignored)."""
    found: dict[str, str] = {}
    wanted = {r.lower(): r for r in recipients}
    for value in message.all_values(data, PHONE_FIELD):
        for item in re.split(r"[;,]", value):
            words = item.replace("=", " ").split()
            addressed = bool(words) and "@" in words[0]
            number = normal_phone("".join(words[1:] if addressed else words))
            if number is None:
                continue
            if not addressed:
                for recipient in recipients:
                    found.setdefault(recipient, number)
            elif words[0].lower() in wanted:
                found[wanted[words[0].lower()]] = number
    return found


def factors(
    rule: Sequence[str] | None,
    *,
    phone: str | None,
    access_code: str | None,
    secret: bytes,
    sms: bool,
) -> Factors:
    """The methods one recipient is offered, and what the rule needs that is missing.

    A weak access code is treated as not supplied (and flagged, so the sender
    can be told): the recipient gets the rule's other methods, or is held.
    """
    weak = bool(access_code) and weak_access_code(access_code or "")
    usable = access_code if access_code and not weak else None
    code_hash = access_code_hash(secret, usable) if usable else None
    if rule is None:
        methods = ["email"]
        if phone and sms:
            methods.append("sms")
        if code_hash:
            methods.append("access-code")
        return Factors(tuple(methods), code_hash, phone, weak_access_code=weak)
    available = {"email": True, "sms": bool(phone and sms), "access-code": code_hash is not None}
    methods = [m for m in rule if available.get(m)]
    missing: list[str] = []
    if not methods:
        missing = ["phone" if m == "sms" else m for m in rule if m != "email"]
    return Factors(tuple(methods), code_hash, phone, tuple(missing), weak_access_code=weak)
