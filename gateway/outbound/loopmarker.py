"""The loop marker: proof that a message already passed through Sealgate.

Sealgate prepends ``X-Sealgate-Loop: v=2; k=<kind>; t=<unix time>; h=<mac>``
to everything it sends upstream. The MAC is an HMAC-SHA256, under a secret only
Sealgate holds, over the kind, the time and a SHA-256 of every byte that
follows the marker line: the message as Sealgate sent it. When the upstream MTA
routes that message back, MTAs will have prepended trace fields above the
marker, but the bytes below it are unchanged and the marker verifies.

The kind says what the verified marker earns (DESIGN, "No loops, and no way
around the policy"):

- ``o``, *originated*: mail Sealgate wrote itself (notifications, codes,
  receipts, bounces, sealed output). It is relayed as is when it comes back,
  never decided on or sealed a second time.
- ``r``, *relayed*: somebody's mail that Sealgate relayed in the clear. It
  earns nothing: a colleague's forward or an alias re-injection brings it back
  with new recipients, and the policy decides again for them.
- ``p``, *relayed copy of protected mail*: as ``r``, and the message was
  protected for some of its first recipients. The policy sees it as part of a
  protected conversation (``protected_thread``), so a copy relayed in the
  clear to a colleague cannot carry the content to a new outsider even when
  what triggered the protection (a stripped header) is gone.

Loops stay bounded by counting our Received fields (``hops``), whatever the kind.

A forged marker, or a real one copied onto other content, does not verify and
earns nothing. Nor does an originated marker below anything but trace fields: a
field added above our own mail (a second Subject, an X-Data full of card
numbers) makes it a new submission that the policy decides on. A real marker on
the same bytes that a person re-sends (``Resent-*`` fields above the marker,
RFC 5322 3.6.6) does not count either:
that is a new submission, and policy applies to it. Markers expire after
``loop.max_age``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.mail import message

HEADER = "X-Sealgate-Loop"
_NAME = HEADER.lower()
_VALUE = re.compile(rb"^\s*v=2;\s*k=([orp]);\s*t=(\d{1,12});\s*h=([A-Za-z0-9_-]{43})\s*$")
_CONTEXT = b"sealgate-loop-marker/v2\0"
SECRET_BYTES = 32
RECEIVED_TAG = b"(Sealgate)"  # in the "by" clause of our Received fields


class Kind(enum.Enum):
    """What Sealgate did with a message it marked (the ``k=`` tag)."""

    ORIGINATED = "o"
    RELAYED = "r"
    RELAYED_PROTECTED = "p"


@dataclass(frozen=True)
class LoopCheck:
    """What the trace fields on a message say.

    ``kind``: the kind of a marker of ours that verifies, None if none does.
    ``hops``: how many times the message already passed a Sealgate (our
    Received fields), to stop real loops.
    """

    kind: Kind | None
    hops: int

    @property
    def originated(self) -> bool:
        """Sealgate wrote this message itself: relay it as is, never decide or seal again."""
        return self.kind is Kind.ORIGINATED

    @property
    def protected_copy(self) -> bool:
        """A copy Sealgate relayed in the clear of a message it protected for others."""
        return self.kind is Kind.RELAYED_PROTECTED


class LoopMarker:
    def __init__(
        self, secret: bytes, max_age: float, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the loop marker secret must have at least 16 bytes")
        self._secret = secret
        self._max_age = max_age
        self._clock = clock

    def header(self, following: bytes, kind: Kind) -> bytes:
        """The marker field (with CRLF) to put in front of ``following``."""
        stamp = int(self._clock())
        mac = _b64(self._mac(kind, stamp, following))
        return f"{HEADER}: v=2; k={kind.value}; t={stamp}; h={mac}\r\n".encode("ascii")

    def check(self, data: bytes) -> LoopCheck:
        """Whether ``data`` carries a marker of ours that still verifies."""
        header = message.header_block(data)
        lowered = header.lower()
        if _NAME.encode() not in lowered and RECEIVED_TAG.lower() not in lowered:
            return LoopCheck(kind=None, hops=0)
        hops = 0
        resent_above = False
        content_above = False
        kind: Kind | None = None
        for name, value, offset in message.fields(header):
            if name == "received" and RECEIVED_TAG in value:
                hops += 1
            elif name.startswith("resent-"):
                resent_above = True
            elif name == _NAME and kind is None and not resent_above:
                kind = self._verified_kind(value, data, offset)
                if kind is Kind.ORIGINATED and content_above:
                    kind = None  # something was added to our mail: a new submission
            elif kind is None and not _is_trace(name):
                content_above = True
        return LoopCheck(kind=kind, hops=hops)

    def _verified_kind(self, value: bytes, data: bytes, offset: int) -> Kind | None:
        match = _VALUE.match(value)
        if match is None:
            return None
        kind, stamp = Kind(match.group(1).decode("ascii")), int(match.group(2))
        if not 0 <= self._clock() - stamp <= self._max_age:
            return None
        line_end = data.index(b"\n", offset) + 1
        while data[line_end : line_end + 1] in (b" ", b"\t"):
            line_end = data.index(b"\n", line_end) + 1
        expected = self._mac(kind, stamp, data[line_end:])
        if not hmac.compare_digest(_b64(expected).encode("ascii"), match.group(3)):
            return None
        return kind

    def _mac(self, kind: Kind, stamp: int, following: bytes) -> bytes:
        digest = hashlib.sha256(following).digest()
        signed = _CONTEXT + kind.value.encode("ascii") + b"\0" + str(stamp).encode() + b"\0"
        return hmac.new(self._secret, signed + digest, "sha256").digest()


# What MTAs add above a message they route (RFC 5321 4.4, RFC 8601, RFC 8617, DKIM), and
# what Exchange adds and keeps to itself (its header firewall removes client-supplied ones).
_TRACE = frozenset({
    "received", "return-path", "delivered-to", "x-original-to", "authentication-results",
    "arc-seal", "arc-message-signature", "arc-authentication-results", "dkim-signature",
    _NAME,
})  # fmt: skip
_TRACE_PREFIXES = ("x-ms-exchange-organization-",)


def _is_trace(name: str) -> bool:
    return name in _TRACE or name.startswith(_TRACE_PREFIXES)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret file, creating it (mode 0600) with a random secret if missing."""
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = base64.b64encode(os.urandom(SECRET_BYTES))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_secret(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    if len(secret) < 16:
        raise ValueError(f"{path}: the loop secret must have at least 16 characters")
    return secret
