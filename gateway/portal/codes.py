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
from gateway.store.access import Access, ActiveCode
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
        self.retry_after = max(1, int((until - datetime.now(UTC)).total_seconds() + 0.999))


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
        sent_until = self.access.count(
            f"send:{reader.reader_id}",
            now,
            limit=self.settings.codes_per_hour + 1,  # locked only when one more is asked
            window=_WINDOW,
            lockout=_WINDOW,
        )
        if sent_until is not None:
            raise Locked(sent_until)
        code = "".join(secrets.choice("0123456789") for _ in range(self.settings.code_length))
        ttl = timedelta(minutes=self.settings.code_minutes)
        self.access.issue_code(reader.reader_id, method, self._hash(reader, code), now, ttl)
        return code

    def check(self, reader: ReaderRecord, method: str, code: str, client: str) -> Outcome:
        """Compare an entered code; count a wrong one against the link and the client."""
        now = datetime.now(UTC)
        for key in (f"link:{reader.reader_id}", f"client:{client}"):
            until = self.access.locked_until(key, now)
            if until is not None:
                return Outcome(False, "locked", retry_after=Locked(until).retry_after)
        entered = "".join(code.split())
        if method == "access-code":
            right = reader.access_code_hash is not None and hmac.compare_digest(
                access_code_hash(self.secret, entered), reader.access_code_hash
            )
            if right:
                return self._succeeded(reader)
            return self._failed(reader, client, None, now)
        active = self.access.active_code(reader.reader_id, method, now)
        right = active is not None and hmac.compare_digest(
            self._hash(reader, entered), active.code_hash
        )
        if right and active is not None and self.access.code_used(active.code_id):
            return self._succeeded(reader)
        return self._failed(reader, client, active, now)

    def _succeeded(self, reader: ReaderRecord) -> Outcome:
        self.access.clear(f"link:{reader.reader_id}")
        return Outcome(True)

    def _failed(
        self, reader: ReaderRecord, client: str, active: ActiveCode | None, now: datetime
    ) -> Outcome:
        settings = self.settings
        left = settings.code_attempts
        if active is not None:
            left = settings.code_attempts - self.access.code_failed(
                active.code_id, settings.code_attempts
            )
        lockout = timedelta(minutes=settings.lockout_minutes)
        backoff = timedelta(seconds=settings.backoff_seconds)
        locks = [
            self.access.count(
                f"link:{reader.reader_id}",
                now,
                limit=settings.link_attempts,
                window=_WINDOW,
                lockout=lockout,
                backoff=backoff,
            ),
            self.access.count(
                f"client:{client}",
                now,
                limit=settings.client_attempts,
                window=_WINDOW,
                lockout=lockout,
                backoff=backoff,
            ),
        ]
        until = max((lock for lock in locks if lock is not None), default=None)
        if until is not None and until - now >= lockout:
            return Outcome(False, "locked", retry_after=Locked(until).retry_after)
        retry = Locked(until).retry_after if until is not None else 0
        return Outcome(False, "wrong-code", attempts_left=max(0, left), retry_after=retry)

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
