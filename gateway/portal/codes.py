"""The second factor: one-time codes, the sender's access code, and how tries are bounded.

Codes are random digits, stored only as an HMAC keyed with a secret outside
the database, compared in constant time, valid for minutes, and spent by a
right entry or by too many wrong ones.

Guessing is bounded without letting a link holder lock the mailbox owner out:

- A one-time code (email, SMS) goes only to the recipient's mailbox or phone,
  so whoever makes the portal send one gives it to the owner. A new code does
  not cancel the earlier ones: each stays valid until it expires, is used, or
  has had ``code_attempts`` tries. An entry is compared with every live code
  and costs each of them a try, so several codes give no extra guesses. At most
  ``codes_per_hour`` are sent in any hour (a rolling window, not a lock): a
  flood of requests stops new codes for a while, never the ones the owner has.
- The sender's access code can be guessed at by anyone holding a forwarded
  link. Its wrong entries count per link per hour (each waiting a little
  longer than the one before, locked at the limit) and against the link's
  lifetime budget (``access_code_attempts``, kept with the reader); once the
  budget is spent, access-code entry is closed for good on that link.
- Every wrong entry also counts per client address, and a client over its
  limit is locked out for a while.

The counts live in the database, so every worker process shares them; every
attempt goes into the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.config import Portal
from gateway.identity.secondfactor import access_code_hash
from gateway.store.portalstate import PortalState
from gateway.store.records import ReaderRecord
from gateway.store.throttles import Counted

_WINDOW = timedelta(hours=1)
_CODE_LABEL = b"sealgate one-time code\x00"


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to: ``ok``, or why not, with what the page should say."""

    ok: bool
    error: str = ""  # "wrong-code" | "locked" | "closed" (the access code's budget is spent)
    attempts_left: int = 0
    retry_after: int = 0  # seconds, for "locked"


class SendLimit(Exception):
    """The hour's codes were sent; a new one can be sent in ``retry_after`` seconds. The
    codes sent already keep working."""

    def __init__(self, until: datetime) -> None:
        super().__init__("send-limit")
        self.retry_after = _seconds(until)


def _seconds(until: datetime) -> int:
    """Whole seconds from now until ``until``, at least 1."""
    return max(1, int((until - datetime.now(UTC)).total_seconds() + 0.999))


class CodeBook:
    def __init__(self, state: PortalState, secret: bytes, settings: Portal) -> None:
        self.state = state
        self.secret = secret
        self.settings = settings

    def issue(self, reader: ReaderRecord, method: str) -> str:
        """A new code for the reader (earlier ones keep working); SendLimit when
        ``codes_per_hour`` were sent within the last hour. Wrong guesses never stop it,
        and nothing sent is withdrawn: each code goes only to the recipient."""
        now = datetime.now(UTC)
        code = "".join(secrets.choice("0123456789") for _ in range(self.settings.code_length))
        ttl = timedelta(minutes=self.settings.code_minutes)
        refused_until = self.state.codes.issue_code(
            reader.reader_id, method, self._hash(reader, code), now, ttl,
            per_hour=self.settings.codes_per_hour,
        )  # fmt: skip
        if refused_until is not None:
            raise SendLimit(refused_until)
        return code

    def access_code_closed(self, reader: ReaderRecord) -> bool:
        """Whether the link's lifetime budget of wrong access codes is spent."""
        return reader.access_code_failures >= self.settings.access_code_attempts

    def check(self, reader: ReaderRecord, method: str, code: str, client: str) -> Outcome:
        """Compare an entered code; what the page should say.

        Every comparison is paid for before it is made, atomically: one try on the
        client and, for one-time codes, one try of each live code; for the access code, one
        try on the link this hour and one of its lifetime budget. So parallel guesses
        (several requests, several workers) get no more tries than the limits. A right
        code gives the client its try back: many recipients behind one address (an
        office's NAT) are never locked out by each other's successes.
        """
        if method == "access-code" and self.access_code_closed(reader):
            return Outcome(False, "closed")
        now = datetime.now(UTC)
        settings = self.settings
        client_key = f"client:{client}"
        limits = {client_key: settings.client_attempts}
        if method == "access-code":
            limits[f"access-code:{reader.reader_id}"] = settings.link_attempts
        for key in limits:
            until = self.state.throttles.locked_until(key, now)
            if until is not None:
                return Outcome(False, "locked", retry_after=_seconds(until))
        counts = {
            key: self._count(key, limit, now, backoff=key != client_key)
            for key, limit in limits.items()
        }
        if any(counts[key].failures > limit for key, limit in limits.items()):
            return self._wrong(list(counts.values()), 0)
        entered = "".join(code.split())
        if method == "access-code":
            tried = self._try_access_code(reader, entered)
            if tried is None:
                return Outcome(False, "closed")
            right, left = tried
            link_key = f"access-code:{reader.reader_id}"
            left = min(left, limits[link_key] - counts[link_key].failures)
        else:
            right, left = self._try_one_time_code(reader, method, entered, now)
        if right:
            for key in limits:
                if key != client_key:
                    self.state.throttles.clear(key)
            self.state.throttles.uncount(client_key, settings.client_attempts)
            return Outcome(True)
        return self._wrong(list(counts.values()), max(0, left))

    def _try_access_code(self, reader: ReaderRecord, entered: str) -> tuple[bool, int] | None:
        """Whether it is the sender's access code, paid for from the link's lifetime budget
        (a right one gives its try back); the tries left, or None once the budget is spent."""
        budget = self.settings.access_code_attempts
        left = self.state.codes.reserve_access_guess(reader.reader_id, budget)
        if left is None:
            return None
        right = reader.access_code_hash is not None and hmac.compare_digest(
            access_code_hash(self.secret, entered), reader.access_code_hash
        )
        if right:
            self.state.codes.return_access_guess(reader.reader_id)
        elif left == 0:
            return None
        return right, left

    def _try_one_time_code(
        self, reader: ReaderRecord, method: str, entered: str, now: datetime
    ) -> tuple[bool, int]:
        """Whether it is one of the reader's live codes, paid for with one try of each of
        them (a match spends that code and gives the others their try back); the most
        tries any of them has left.

        Every live code is compared, each in constant time and without stopping at a
        match, so the time taken does not tell which code it was."""
        tried = self.state.codes.reserve_tries(
            reader.reader_id, method, now, self.settings.code_attempts
        )
        entered_hash = self._hash(reader, entered)
        matched: int | None = None
        for code in tried:
            if hmac.compare_digest(entered_hash, code.code_hash):
                matched = code.code_id
        if matched is not None:
            others = [c.code_id for c in tried if c.code_id != matched]
            self.state.codes.code_used(matched, others)
        return matched is not None, max((c.tries_left for c in tried), default=0)

    def _count(self, key: str, limit: int, now: datetime, *, backoff: bool) -> Counted:
        """One try under ``key``. Backoff only for a link's access code: per client it would
        let a few strangers' typos behind one address make everyone there wait, and a
        one-time code has its own few attempts."""
        return self.state.throttles.count(
            key,
            now,
            limit=limit,
            window=_WINDOW,
            lockout=timedelta(minutes=self.settings.lockout_minutes),
            backoff=timedelta(seconds=self.settings.backoff_seconds if backoff else 0),
        )

    @staticmethod
    def _wrong(counts: list[Counted], attempts_left: int) -> Outcome:
        until = max((c.until for c in counts if c.until is not None), default=None)
        if any(c.limit_reached for c in counts) and until is not None:
            return Outcome(False, "locked", retry_after=_seconds(until))
        retry = _seconds(until) if until is not None else 0
        return Outcome(False, "wrong-code", attempts_left=attempts_left, retry_after=retry)

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
