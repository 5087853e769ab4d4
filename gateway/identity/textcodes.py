"""Codes by text message (SMS) as an account's second factor.

The server keeps no pending code. A code goes to the phone and a token to the
browser: the token holds the time it was issued, a random nonce and an
HMAC-SHA256 over the purpose, the address, the phone number, the time, the
nonce and the code. The browser posts the token back with the code the person
typed; the HMAC is recomputed and compared in constant time. Each token opens
once: the factor's ``last_step`` keeps the issue time (in milliseconds) of the
last one accepted, and only a later one is taken (a conditional UPDATE, so two
workers cannot both accept it).

The purpose binds a token to what it was asked for: an enrolment code cannot
sign in, and a sign-in code cannot enrol a number. The phone number is stored
sealed with AES-256-GCM under a key derived from the installation secret, bound
to the address, like the TOTP seed: a copy of the database alone does not list
the account holders' numbers.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import struct
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.envelope.keys import b64url, b64url_decode

DIGITS = 6
VALID = timedelta(minutes=5)  # texts can take a minute or two to arrive
# The clock of the node that issued a token may be ahead of this one's.
FUTURE = timedelta(minutes=1)
PURPOSES = ("enrol", "sign-in")

_VERSION = b"\x01"
_TIME = struct.Struct(">q")  # milliseconds since the epoch
_NONCE = 8
_MAC = 32
_TOKEN_BYTES = len(_VERSION) + _TIME.size + _NONCE + _MAC
_PHONE_VERSION = b"\x01"
_PHONE_AAD = b"sealgate v1 account phone "
_CODE = re.compile("[0-9]" * DIGITS)


class TextCodeError(Exception):
    """A sealed phone number that does not open (the message names no number)."""


class TextCodes:
    """Codes by text for accounts, and their phone numbers at rest, under one key
    (``Secrets.account_texts``)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the text-code key must be 32 bytes")
        self._mac_key = hmac.digest(key, b"codes", "sha256")
        self._aead = AESGCM(hmac.digest(key, b"phones", "sha256"))

    def __repr__(self) -> str:
        return "TextCodes(...)"

    def challenge(self, purpose: str, address: str, phone: str, now: datetime) -> tuple[str, str]:
        """(token, code): the code goes to ``phone``, the token to the browser."""
        code = "".join(secrets.choice("0123456789") for _ in range(DIGITS))
        issued = _TIME.pack(_milliseconds(now))
        nonce = os.urandom(_NONCE)
        mac = self._mac(purpose, address, phone, issued, nonce, code)
        return b64url(_VERSION + issued + nonce + mac), code

    def check(
        self,
        token: str,
        code: str,
        purpose: str,
        address: str,
        phone: str,
        last_issued: int | None,
        now: datetime,
    ) -> int | None:
        """The token's issue time (milliseconds) if ``code`` is the one sent with it for
        this purpose, address and phone, at most VALID ago and later than
        ``last_issued``; else None, the same for every reason."""
        typed = "".join(code.split())
        try:
            raw = b64url_decode(token)
        except ValueError:
            return None
        if len(raw) != _TOKEN_BYTES or raw[:1] != _VERSION or not _CODE.fullmatch(typed):
            return None
        issued, nonce, mac = raw[1:9], raw[9 : 9 + _NONCE], raw[9 + _NONCE :]
        right = self._mac(purpose, address, phone, issued, nonce, typed)
        when = _TIME.unpack(issued)[0]
        age = timedelta(milliseconds=_milliseconds(now) - when)
        fresh = -FUTURE <= age <= VALID and (last_issued is None or when > last_issued)
        return when if hmac.compare_digest(mac, right) and fresh else None

    def _mac(
        self, purpose: str, address: str, phone: str, issued: bytes, nonce: bytes, code: str
    ) -> bytes:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {purpose!r}")
        message = b"\x00".join(
            (purpose.encode(), address.lower().encode(), phone.encode(), issued, nonce,
             code.encode())
        )  # fmt: skip
        return hmac.digest(self._mac_key, message, "sha256")

    # --- the number at rest ---------------------------------------------------------

    def seal_phone(self, phone: str, address: str) -> bytes:
        """version 0x01 || 12-byte nonce || AES-256-GCM(phone, aad = label || address)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, phone.encode("ascii"), _phone_aad(address))
        return _PHONE_VERSION + nonce + sealed

    def open_phone(self, sealed: bytes, address: str) -> str:
        """The number :meth:`seal_phone` sealed for ``address``."""
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != _PHONE_VERSION:
            raise TextCodeError("the stored phone number is damaged or of an unknown version")
        try:
            plain = self._aead.decrypt(sealed[1:13], sealed[13:], _phone_aad(address))
        except InvalidTag:
            raise TextCodeError(
                "the stored phone number does not open: damaged, another account's, "
                "or sealed under another installation secret"
            ) from None
        return plain.decode("ascii")


def _milliseconds(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the time must be timezone-aware, got {moment.isoformat()}")
    return int(moment.timestamp() * 1000)


def _phone_aad(address: str) -> bytes:
    return _PHONE_AAD + address.lower().encode("utf-8")
