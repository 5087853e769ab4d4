"""Time-based one-time passwords (RFC 6238) as an account's second factor.

An account enrols in two steps and the server keeps nothing in between: the
first page shows a fresh seed (a QR code of its ``otpauth://`` URI, and the
seed in base32 for typing) together with an enrolment token, the seed sealed
under the TOTP key and bound to the address and the time; the second page gets
the token back with a code from the app, opens it, checks the code and only
then stores the seed, sealed again for the address (:meth:`TOTP.seal_seed`).

Codes are HMAC-SHA1, 6 digits, 30-second steps: the defaults of RFC 6238 and
the only parameters every authenticator app supports. A code is accepted for
the current step and one step either side (RFC 6238 §5.2 recommends at most
one step of network delay) and each step only once (§5.2: "the verifier MUST
NOT accept the second attempt of the OTP after the successful validation has
been issued for the first OTP"): the caller stores the step :meth:`TOTP.check`
returns and passes it back as ``last_step``.

The seed is 20 random bytes, the length of an HMAC-SHA1 output (RFC 4226 §4
R6 asks for at least 128 bits and recommends 160). The provisioning URI follows
Google's Key Uri Format, which authenticator apps read.
"""

from __future__ import annotations

import base64
import hmac
import io
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.envelope.keys import b64url, b64url_decode

STEP = 30
DIGITS = 6
ENROLMENT_MINUTES = 10
SEED_BYTES = 20
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# The clock of the node that made an enrolment token may be ahead of this one's.
ENROLMENT_FUTURE = timedelta(minutes=1)

_SEED_VERSION = b"\x01"
_ENROLMENT_VERSION = b"\x01"
_SEED_AAD = b"sealgate v1 totp seed "
_ENROLMENT_AAD = b"sealgate v1 totp enrolment "
_TIME = struct.Struct(">q")  # the token's creation time, in whole seconds since the epoch
_TOKEN_HEAD = len(_ENROLMENT_VERSION) + _TIME.size
_TOKEN_BYTES = _TOKEN_HEAD + NONCE_BYTES + SEED_BYTES + TAG_BYTES  # 57: 76 base64url characters
_CODE = re.compile("[0-9]" * DIGITS)  # ASCII digits only: str.isdigit takes "٣" too
_QR_SCALE = 4  # pixels a module: a URI of ~200 characters is 65 modules, 260 px


class TOTPError(Exception):
    """An enrolment token or a sealed seed that does not open (the message names no secret)."""


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows, and the token its form posts back."""

    token: str  # base64url: version || created || nonce || AES-256-GCM(seed)
    uri: str  # otpauth://totp/...
    svg: str  # the URI as a QR code, an <svg> element to inline
    secret: str  # the seed in base32, in groups of 4, for typing into an app

    def __repr__(self) -> str:
        return "Enrolment(...)"  # never the seed, in a log or a traceback


class TOTP:
    """Enrolment, sealing and checking of TOTP seeds under one key (``Secrets.totp``)."""

    def __init__(self, key: bytes, issuer: str) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the TOTP key must be {KEY_BYTES} bytes")
        if not issuer:
            raise ValueError("the TOTP issuer must not be empty")
        self._aead = AESGCM(key)
        self.issuer = issuer

    def __repr__(self) -> str:
        return f"TOTP(issuer={self.issuer!r})"

    # --- enrolment ----------------------------------------------------------------

    def enrolment(self, address: str, now: datetime) -> Enrolment:
        """A fresh seed for ``address``: its URI, QR code and base32, and the sealed token."""
        seed = os.urandom(SEED_BYTES)
        created = _TIME.pack(_seconds(now))
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, seed, _enrolment_aad(created, address))
        secret = _base32(seed)
        uri = self._uri(secret, address)
        return Enrolment(
            token=b64url(_ENROLMENT_VERSION + created + nonce + sealed),
            uri=uri,
            svg=qr_svg(uri),
            secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        )

    def open_enrolment(self, token: str, address: str, now: datetime) -> bytes:
        """The seed in an enrolment token made for ``address`` at most ENROLMENT_MINUTES ago."""
        try:
            raw = b64url_decode(token)
        except ValueError:
            raise TOTPError("the enrolment token is damaged") from None
        if len(raw) != _TOKEN_BYTES or raw[:1] != _ENROLMENT_VERSION:
            raise TOTPError("the enrolment token is damaged or of an unknown version")
        created = raw[1:_TOKEN_HEAD]
        nonce, sealed = (
            raw[_TOKEN_HEAD : _TOKEN_HEAD + NONCE_BYTES],
            raw[_TOKEN_HEAD + NONCE_BYTES :],
        )
        try:
            seed = self._aead.decrypt(nonce, sealed, _enrolment_aad(created, address))
        except InvalidTag:
            raise TOTPError(
                "the enrolment token does not open: damaged, or made for another account"
            ) from None
        age = timedelta(seconds=_seconds(now) - _TIME.unpack(created)[0])
        if age > timedelta(minutes=ENROLMENT_MINUTES):
            raise TOTPError(f"the enrolment is older than {ENROLMENT_MINUTES} minutes: start again")
        if age < -ENROLMENT_FUTURE:
            raise TOTPError("the enrolment token was made in the future: check the clocks")
        return seed

    def _uri(self, secret: str, address: str) -> str:
        """The Key Uri Format URI: ``otpauth://totp/ISSUER:ADDRESS?secret=...&issuer=...``.

        Issuer and address are percent-encoded (UTF-8; spaces as %20, also in
        the query). The format allows no colon inside the issuer or the
        address, and parsers that decode the label before splitting it (pyotp
        before 2.10) would split at a %3A: an issuer with a colon is left out of
        the label and given only as the parameter, which apps prefer anyway.
        """
        account = quote(address, safe="@")
        label = account if ":" in self.issuer else f"{quote(self.issuer, safe='')}:{account}"
        query = urlencode(
            {
                "secret": secret,
                "issuer": self.issuer,
                "algorithm": "SHA1",
                "digits": DIGITS,
                "period": STEP,
            },
            quote_via=quote,
            safe="",
        )
        return f"otpauth://totp/{label}?{query}"

    # --- at rest ------------------------------------------------------------------

    def seal_seed(self, seed: bytes, address: str) -> bytes:
        """version 0x01 || 12-byte nonce || AES-256-GCM(seed, aad = label || address).

        The address is lower-cased, as in the enrolment token: ``Bob@Example.NET``
        and ``bob@example.net`` are one account.
        """
        nonce = os.urandom(NONCE_BYTES)
        return _SEED_VERSION + nonce + self._aead.encrypt(nonce, seed, _seed_aad(address))

    def open_seed(self, sealed: bytes, address: str) -> bytes:
        """The seed :meth:`seal_seed` sealed for ``address`` (in any case)."""
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[:1] != _SEED_VERSION:
            raise TOTPError("the stored TOTP seed is damaged or of an unknown version")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, _seed_aad(address))
        except InvalidTag:
            raise TOTPError(
                "the stored TOTP seed does not open: damaged, another account's, "
                "or sealed under another installation secret"
            ) from None

    # --- codes --------------------------------------------------------------------

    def check(self, seed: bytes, code: str, last_step: int | None, now: datetime) -> int | None:
        """The time step ``code`` is for, or None: wrong, malformed, or a replay.

        Blanks in ``code`` are ignored ("123 456"); what remains must be
        exactly 6 ASCII digits. The steps before, at and after ``now``'s are
        tried, each compared in constant time and all three every time, so the
        time taken does not tell which one matched; a step at or before
        ``last_step`` (the one the last accepted code was for) never matches.
        If two steps have the same code, the later one is returned.
        """
        typed = "".join(code.split())
        if not _CODE.fullmatch(typed):
            return None
        generator = pyotp.TOTP(_base32(seed), digits=DIGITS, interval=STEP)
        current = _seconds(now) // STEP
        matched = None
        for step in range(max(current - 1, 0), current + 2):  # no step before the epoch
            same = hmac.compare_digest(generator.generate_otp(step), typed)
            if same and (last_step is None or step > last_step):
                matched = step
        return matched


def qr_svg(text: str) -> str:
    """``text`` as an SVG QR code: <svg>, <g> and two <path>s (ground and modules).

    No XML declaration (it is inlined in HTML), no title, no style, no scripts,
    no links; black modules on a white ground that includes the 4-module quiet
    zone, so it scans on a dark page too. Fixed size (4 px a module).
    """
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(
        out, kind="svg", xmldecl=False, nl=False, scale=_QR_SCALE, dark="#000", light="#fff"
    )
    return out.getvalue().decode("utf-8")


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the time must be timezone-aware, got {moment.isoformat()}")
    return int(moment.timestamp())


def _base32(seed: bytes) -> str:
    return base64.b32encode(seed).decode("ascii").rstrip("=")


def _enrolment_aad(created: bytes, address: str) -> bytes:
    return _ENROLMENT_AAD + created + address.lower().encode("utf-8")


def _seed_aad(address: str) -> bytes:
    return _SEED_AAD + address.lower().encode("utf-8")
