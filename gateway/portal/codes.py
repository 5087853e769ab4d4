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
        """Compare an entered code; count a wrong one against the link and the client.

        Every comparison is paid for before it is made, atomically: a one-time code's
        attempt is reserved, an access code's try counted against the link. So parallel
        guesses (several requests, several workers) get no more tries than the limits.
        """
        now = datetime.now(UTC)
        for key in (f"link:{reader.reader_id}", f"client:{client}"):
            until = self.access.locked_until(key, now)
            if until is not None:
                return Outcome(False, "locked", retry_after=_seconds(until))
        entered = "".join(code.split())
        if method == "access-code":
            return self._check_access_code(reader, entered, client, now)
        active = self.access.active_code(reader.reader_id, method, now)
        left = None
        if active is not None:
            left = self.access.reserve_attempt(active.code_id, self.settings.code_attempts)
        right = (
            active is not None
            and left is not None
            and hmac.compare_digest(self._hash(reader, entered), active.code_hash)
        )
        if right and active is not None:
            self.access.code_used(active.code_id)
            self.access.clear(f"link:{reader.reader_id}")
            return Outcome(True)
        link = self._count(f"link:{reader.reader_id}", self.settings.link_attempts, now)
        return self._wrong(link, self._count_client(client, now), left or 0)

    def _check_access_code(
        self, reader: ReaderRecord, entered: str, client: str, now: datetime
    ) -> Outcome:
        link = self._count(f"link:{reader.reader_id}", self.settings.link_attempts, now)
        if link.failures > self.settings.link_attempts:
            return self._wrong(link, None, 0)
        right = reader.access_code_hash is not None and hmac.compare_digest(
            access_code_hash(self.secret, entered), reader.access_code_hash
        )
        if right:
            self.access.clear(f"link:{reader.reader_id}")
            return Outcome(True)
        left = max(0, self.settings.link_attempts - link.failures)
        return self._wrong(link, self._count_client(client, now), left)

    def _count(self, key: str, limit: int, now: datetime) -> Counted:
        return self.access.count(
            key,
            now,
            limit=limit,
            window=_WINDOW,
            lockout=timedelta(minutes=self.settings.lockout_minutes),
            backoff=timedelta(seconds=self.settings.backoff_seconds),
        )

    def _count_client(self, client: str, now: datetime) -> Counted:
        return self._count(f"client:{client}", self.settings.client_attempts, now)

    @staticmethod
    def _wrong(link: Counted, client: Counted | None, attempts_left: int) -> Outcome:
        counts = [c for c in (link, client) if c is not None]
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
