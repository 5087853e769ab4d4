"""The second factor: one-time codes, the sender's access code, throttles and lock-outs.

Codes are random digits, stored only as an HMAC keyed with a secret outside
the database, compared in constant time, valid for minutes, and spent by a
right entry or by too many wrong ones. Wrong entries count per link and per
client address (in the database, so every worker process shares the count):
each waits a little longer than the one before, and at the limit the link or
the client is locked out for a while. Every attempt goes into the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.config import Portal
from gateway.secondfactor import access_code_hash
from gateway.store.access import Access, Counted
from gateway.store.records import ReaderRecord

_WINDOW = timedelta(hours=1)
_CODE_LABEL = b"sealgate one-time code\x00"


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to: ``ok``, or why not, with what the page should say."""

    ok: bool
    error: str = ""  # "wrong-code" | "locked"
    attempts_left: int = 0
    retry_after: int = 0  # seconds, for "locked"


class Locked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__("locked")
        self.retry_after = _seconds(until)


def _seconds(until: datetime) -> int:
    """Whole seconds from now until ``until``, at least 1."""
    return max(1, int((until - datetime.now(UTC)).total_seconds() + 0.999))


class CodeBook:
    def __init__(self, access: Access, secret: bytes, settings: Portal) -> None:
        self.access = access
        self.secret = secret
        self.settings = settings

    def issue(self, reader: ReaderRecord, method: str) -> str:
        """A new code for the reader (earlier ones stop working); Locked when too many
        were sent this hour or the link is locked."""
        now = datetime.now(UTC)
        self._refuse_if_locked(f"link:{reader.reader_id}", now)
        self._refuse_if_locked(f"send:{reader.reader_id}", now)
        sent = self.access.count(
            f"send:{reader.reader_id}",
            now,
            limit=self.settings.codes_per_hour + 1,  # locked only when one more is asked
            window=_WINDOW,
            lockout=_WINDOW,
        )
        if sent.until is not None:
            raise Locked(sent.until)
        code = "".join(secrets.choice("0123456789") for _ in range(self.settings.code_length))
        ttl = timedelta(minutes=self.settings.code_minutes)
        self.access.issue_code(reader.reader_id, method, self._hash(reader, code), now, ttl)
        return code

    def check(self, reader: ReaderRecord, method: str, code: str, client: str) -> Outcome:
        """Compare an entered code; what the page should say.

        Every comparison is paid for before it is made, atomically: one try on the link
        and on the client, and for a one-time code one of its attempts. So parallel
        guesses (several requests, several workers) get no more tries than the limits.
        A right code gives the client its try back: many recipients behind one address
        (an office's NAT) are never locked out by each other's successes.
        """
        now = datetime.now(UTC)
        link_key, client_key = f"link:{reader.reader_id}", f"client:{client}"
        for key in (link_key, client_key):
            until = self.access.locked_until(key, now)
            if until is not None:
                return Outcome(False, "locked", retry_after=_seconds(until))
        settings = self.settings
        link = self._count(link_key, settings.link_attempts, now, backoff=True)
        on_client = self._count(client_key, settings.client_attempts, now, backoff=False)
        if link.failures > settings.link_attempts or on_client.failures > settings.client_attempts:
            return self._wrong(link, on_client, 0)
        entered = "".join(code.split())
        if method == "access-code":
            right = reader.access_code_hash is not None and hmac.compare_digest(
                access_code_hash(self.secret, entered), reader.access_code_hash
            )
            left = settings.link_attempts - link.failures
        else:
            right, left = self._try_one_time_code(reader, method, entered, now)
        if right:
            self.access.clear(link_key)
            self.access.uncount(client_key, settings.client_attempts)
            return Outcome(True)
        return self._wrong(link, on_client, max(0, left))

    def _try_one_time_code(
        self, reader: ReaderRecord, method: str, entered: str, now: datetime
    ) -> tuple[bool, int]:
        """Whether it is the reader's current code, spending one of its attempts (and the
        code, if right); the attempts it has left."""
        active = self.access.active_code(reader.reader_id, method, now)
        if active is None:
            return False, 0
        left = self.access.reserve_attempt(active.code_id, self.settings.code_attempts)
        if left is None:
            return False, 0
        right = hmac.compare_digest(self._hash(reader, entered), active.code_hash)
        if right:
            self.access.code_used(active.code_id)
        return right, left

    def _count(self, key: str, limit: int, now: datetime, *, backoff: bool) -> Counted:
        """One try under ``key``. Backoff only per link: per client it would let a few
        strangers' typos behind one address lock everyone there out."""
        return self.access.count(
            key,
            now,
            limit=limit,
            window=_WINDOW,
            lockout=timedelta(minutes=self.settings.lockout_minutes),
            backoff=timedelta(seconds=self.settings.backoff_seconds if backoff else 0),
        )

    @staticmethod
    def _wrong(link: Counted, client: Counted, attempts_left: int) -> Outcome:
        counts = [link, client]
        until = max((c.until for c in counts if c.until is not None), default=None)
        if any(c.limit_reached for c in counts) and until is not None:
            return Outcome(False, "locked", retry_after=_seconds(until))
        retry = _seconds(until) if until is not None else 0
        return Outcome(False, "wrong-code", attempts_left=attempts_left, retry_after=retry)

    def _refuse_if_locked(self, key: str, now: datetime) -> None:
        until = self.access.locked_until(key, now)
        if until is not None:
            raise Locked(until)

    def _hash(self, reader: ReaderRecord, code: str) -> bytes:
        message = _CODE_LABEL + reader.reader_id.encode("ascii") + b"\x00" + code.encode()
        return hmac.new(self.secret, message, hashlib.sha256).digest()


def mask_address(address: str) -> str:
    """``bob@example.net`` -> ``b***@example.net``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_phone(number: str) -> str:
    """``+31612345678`` -> ``+31 •••••••78``."""
    if len(number) < 6:
        return "•••"
    return f"{number[:3]} {'•' * (len(number) - 5)}{number[-2:]}"
