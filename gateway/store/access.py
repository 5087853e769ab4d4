"""The portal's state in the store: one-time codes, throttles, sessions, replies, threads.

Everything here is short-lived and holds secrets only as hashes: a code as an
HMAC keyed outside the database, a session or device token as its SHA-256.
Throttles live in the database, not in memory, so that several worker
processes (and restarts) share one count of failed attempts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row

from gateway.store import pending
from gateway.store.database import Store, append_event
from gateway.store.records import LIVE_STATES
from gateway.store.schema import (
    codes,
    envelopes,
    events,
    holds,
    readers,
    replies,
    sessions,
    threads,
    throttles,
)


@dataclass(frozen=True)
class ActiveCode:
    code_id: int
    code_hash: bytes


@dataclass(frozen=True)
class Counted:
    failures: int  # within the window, this one included
    until: datetime | None  # locked until (a backoff or the lockout)
    limit_reached: bool


@dataclass(frozen=True)
class Session:
    kind: str  # "session" | "device"
    reader_id: str | None
    address: str | None
    method: str | None  # for a device: the second factor it proved


@dataclass(frozen=True)
class QueuedReply:
    reply_id: str
    envelope_id: str
    reader_id: str
    attempts: int
    blob: bytes


@dataclass(frozen=True)
class Hold:
    """A held recipient: their link sealed to the reply key, waiting for the sender."""

    envelope_id: str
    reader_id: str
    address: str
    missing: tuple[str, ...]  # second factors the sender must supply: "phone", "access-code"
    reason: str  # why they are held, for the sender: the rule's words
    sealed_link: bytes | None = field(repr=False)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def message_id_hash(message_id: str) -> bytes:
    """Message-IDs compared case-sensitively, without the angle brackets' surroundings."""
    return hashlib.sha256(message_id.strip().encode("utf-8", "surrogateescape")).digest()


class Access:
    """The portal's queries, on the envelopes' store (same database, same transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # codes

    def issue_code(
        self, reader_id: str, method: str, code_hash: bytes, now: datetime, ttl: timedelta
    ) -> None:
        """A new code for the reader; earlier unused codes of the reader stop working."""
        with self.store.transaction(f"issuing a code for {reader_id}", write=True) as conn:
            conn.execute(
                update(codes)
                .where(codes.c.reader_id == reader_id, codes.c.used == 0)
                .values(used=1)
            )
            conn.execute(
                insert(codes),
                {
                    "reader_id": reader_id,
                    "method": method,
                    "code_hash": code_hash,
                    "created_at": now,
                    "expires_at": now + ttl,
                    "failures": 0,
                    "used": 0,
                },
            )

    def active_code(self, reader_id: str, method: str, now: datetime) -> ActiveCode | None:
        query = (
            select(codes.c.code_id, codes.c.code_hash)
            .where(
                codes.c.reader_id == reader_id,
                codes.c.method == method,
                codes.c.used == 0,
                codes.c.expires_at > now,
            )
            .order_by(codes.c.code_id.desc())
            .limit(1)
        )
        with self.store.transaction(f"reading the code of {reader_id}", write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else ActiveCode(row.code_id, row.code_hash)

    def reserve_attempt(self, code_id: int, max_attempts: int) -> int | None:
        """Take one of the code's attempts before comparing; the attempts left after it, or
        None when none was left. Atomic, so parallel guesses cannot share an attempt."""
        this = codes.c.code_id == code_id
        with self.store.transaction("counting an attempt at a code", write=True) as conn:
            taken = conn.execute(
                update(codes)
                .where(this, codes.c.used == 0, codes.c.failures < max_attempts)
                .values(failures=codes.c.failures + 1)
            )
            if taken.rowcount != 1:
                return None
            attempts = int(conn.scalar(select(codes.c.failures).where(this)) or 0)
            if attempts >= max_attempts:  # the last one: spent whatever it brings
                conn.execute(update(codes).where(this).values(used=1))
        return max_attempts - attempts

    def code_used(self, code_id: int) -> None:
        """Spend the code (a right entry; its last attempt may have spent it already)."""
        with self.store.transaction("spending a code", write=True) as conn:
            conn.execute(update(codes).where(codes.c.code_id == code_id).values(used=1))

    # the access code's lifetime budget

    def reserve_access_guess(self, reader_id: str, budget: int) -> int | None:
        """Take one of the reader's lifetime access-code tries before comparing; the tries
        left after it, or None when the budget was spent already. Atomic, like
        reserve_attempt: parallel guesses cannot share a try."""
        this = readers.c.reader_id == reader_id
        failures = readers.c.access_code_failures
        with self.store.transaction("counting an access-code try", write=True) as conn:
            taken = conn.execute(
                update(readers)
                .where(this, failures < budget)
                .values(access_code_failures=failures + 1)
            )
            if taken.rowcount != 1:
                return None
            spent = int(conn.scalar(select(failures).where(this)) or 0)
        return max(0, budget - spent)

    def return_access_guess(self, reader_id: str) -> None:
        """A right access code costs nothing: give its try back."""
        failures = readers.c.access_code_failures
        with self.store.transaction("giving back an access-code try", write=True) as conn:
            conn.execute(
                update(readers)
                .where(readers.c.reader_id == reader_id, failures > 0)
                .values(access_code_failures=failures - 1)
            )

    # throttles

    def locked_until(self, key: str, now: datetime) -> datetime | None:
        query = select(throttles.c.locked_until).where(throttles.c.key == key)
        with self.store.transaction("reading a throttle", write=False) as conn:
            until = conn.scalar(query)
        return until if until is not None and until > now else None

    def count(
        self,
        key: str,
        now: datetime,
        *,
        limit: int,
        window: timedelta,
        lockout: timedelta,
        backoff: timedelta = timedelta(0),
    ) -> Counted:
        """Count one failure (or one use) under ``key``: how many now, and until when the
        key is locked (None: not locked).

        Failures within ``window`` add up; at ``limit`` the key is locked for
        ``lockout``. Before that each failure waits ``backoff`` doubled per
        failure (1, 2, 4, ... times), never longer than the lockout.
        """
        with self.store.transaction("counting against a throttle", write=True) as conn:
            row = _locked_throttle(conn, key, now)
            # A new window when the old one is over, or when a lock-out served its time.
            served = row.locked_until is not None and row.locked_until <= now
            if (
                row.failures == 0
                or row.window_start + window <= now
                or (served and row.failures >= limit)
            ):
                failures, start = 1, now
            else:
                failures, start = row.failures + 1, row.window_start
            if failures >= limit:
                until: datetime | None = now + lockout
            elif backoff:
                until = now + min(backoff * 2 ** (failures - 1), lockout)
            else:
                until = None
            values = {"failures": failures, "window_start": start, "locked_until": until}
            conn.execute(update(throttles).where(throttles.c.key == key).values(values))
        return Counted(failures, until, failures >= limit)

    def uncount(self, key: str, limit: int) -> None:
        """Take one try back (a success); a lock it caused goes with it."""
        with self.store.transaction("giving back a try", write=True) as conn:
            conn.execute(
                update(throttles)
                .where(throttles.c.key == key, throttles.c.failures > 0)
                .values(
                    failures=throttles.c.failures - 1,
                    locked_until=case(
                        (throttles.c.failures - 1 < limit, None),
                        else_=throttles.c.locked_until,
                    ),
                )
            )

    def clear(self, key: str) -> None:
        with self.store.transaction("clearing a throttle", write=True) as conn:
            conn.execute(delete(throttles).where(throttles.c.key == key))

    # sessions and remembered devices

    def add_session(
        self,
        token: str,
        *,
        kind: str,
        now: datetime,
        expires_at: datetime,
        reader_id: str | None = None,
        address: str | None = None,
        method: str | None = None,
    ) -> None:
        with self.store.transaction(f"starting a {kind}", write=True) as conn:
            conn.execute(
                insert(sessions),
                {
                    "token_hash": token_hash(token),
                    "kind": kind,
                    "reader_id": reader_id,
                    "address": address,
                    "method": method,
                    "created_at": now,
                    "expires_at": expires_at,
                },
            )

    def session(self, token: str, now: datetime) -> Session | None:
        query = select(sessions).where(
            sessions.c.token_hash == token_hash(token), sessions.c.expires_at > now
        )
        with self.store.transaction("reading a session", write=False) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Session(row.kind, row.reader_id, row.address, row.method)

    def end_session(self, token: str) -> None:
        with self.store.transaction("ending a session", write=True) as conn:
            conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash(token)))

    def sweep(self, now: datetime, *, keep: timedelta = timedelta(days=1)) -> int:
        """Forget expired sessions, spent or expired codes, decided holds (and those of
        ended envelopes) and stale throttles."""
        with self.store.transaction("sweeping portal state", write=True) as conn:
            removed = conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount
            removed += conn.execute(
                delete(codes).where(or_(codes.c.expires_at <= now, codes.c.used == 1))
            ).rowcount
            live = select(envelopes.c.envelope_id).where(envelopes.c.state.in_(LIVE_STATES))
            removed += conn.execute(
                delete(holds).where(or_(holds.c.state != "held", holds.c.envelope_id.not_in(live)))
            ).rowcount
            removed += conn.execute(
                delete(throttles).where(
                    throttles.c.window_start <= now - keep,
                    or_(throttles.c.locked_until.is_(None), throttles.c.locked_until <= now),
                )
            ).rowcount
        return removed

    # secure replies

    def queue_reply(
        self,
        reply_id: str,
        envelope_id: str,
        reader_id: str,
        address: str,
        blob: bytes,
        now: datetime,
    ) -> bool:
        """Keep an uploaded reply (encrypted to the reply key) until it is delivered.

        False if this reply id was uploaded before (a retried upload): nothing changes.
        """
        with self.store.transaction(f"queueing reply {reply_id}", write=True) as conn:
            if conn.scalar(select(replies.c.reply_id).where(replies.c.reply_id == reply_id)):
                return False
            conn.execute(
                insert(replies),
                {
                    "reply_id": reply_id,
                    "envelope_id": envelope_id,
                    "reader_id": reader_id,
                    "created_at": now,
                    "state": "queued",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "blob": blob,
                },
            )
            append_event(
                conn,
                "replied",
                envelope_id=envelope_id,
                reader_id=reader_id,
                address=address,
                detail=f"reply={reply_id} size={len(blob)}",
            )
        return True

    def reply_known(self, reply_id: str) -> bool:
        query = select(replies.c.reply_id).where(replies.c.reply_id == reply_id)
        with self.store.transaction("looking up a reply", write=False) as conn:
            return conn.scalar(query) is not None

    def claim_reply(self, now: datetime, lease: timedelta) -> QueuedReply | None:
        """The next due reply, claimed for ``lease``: another worker's sweep skips it until
        then, so a reply is delivered once. One at a time: each may be tens of MB."""
        due = (
            select(replies.c.reply_id)
            .where(replies.c.state == "queued", replies.c.next_attempt_at <= now)
            .order_by(replies.c.next_attempt_at)
            .limit(5)
        )
        with self.store.transaction("claiming a queued reply", write=True) as conn:
            for reply_id in conn.scalars(due).all():
                claimed = conn.execute(
                    update(replies)
                    .where(
                        replies.c.reply_id == reply_id,
                        replies.c.state == "queued",
                        replies.c.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=now + lease)
                )
                if claimed.rowcount == 1:
                    row = conn.execute(select(replies).where(replies.c.reply_id == reply_id)).one()
                    return QueuedReply(
                        row.reply_id, row.envelope_id, row.reader_id, row.attempts, row.blob
                    )
        return None

    def reply_done(self, reply_id: str, state: str, detail: str = "") -> None:
        """Delivered or failed for good: the ciphertext goes, the row and an event stay."""
        with self.store.transaction(f"finishing reply {reply_id}", write=True) as conn:
            row = conn.execute(
                select(replies.c.envelope_id, replies.c.reader_id).where(
                    replies.c.reply_id == reply_id
                )
            ).first()
            conn.execute(
                update(replies).where(replies.c.reply_id == reply_id).values(state=state, blob=None)
            )
            if row is not None:
                append_event(
                    conn,
                    f"reply-{state}",
                    envelope_id=row.envelope_id,
                    reader_id=row.reader_id,
                    detail=f"reply={reply_id} {detail}".strip(),
                )

    def reply_retry(self, reply_id: str, at: datetime) -> None:
        with self.store.transaction(f"deferring reply {reply_id}", write=True) as conn:
            conn.execute(
                update(replies)
                .where(replies.c.reply_id == reply_id)
                .values(attempts=replies.c.attempts + 1, next_attempt_at=at)
            )

    # the audit trail

    def record_first(self, kind: str, envelope_id: str, reader_id: str, address: str,
                     detail: str) -> bool:  # fmt: skip
        """Record an event; True if it is the reader's first of this kind (one indexed
        lookup, whatever the length of the trail)."""
        earlier = (
            select(events.c.event_id)
            .where(
                events.c.envelope_id == envelope_id,
                events.c.reader_id == reader_id,
                events.c.kind == kind,
            )
            .limit(1)
        )
        with self.store.transaction(f"recording a {kind} event", write=True) as conn:
            # The reader's row, locked: two requests at once cannot both be the first.
            conn.execute(
                select(readers.c.reader_id)
                .where(readers.c.reader_id == reader_id)
                .with_for_update()
            )
            first = conn.scalar(earlier) is None
            append_event(conn, kind, envelope_id=envelope_id, reader_id=reader_id,
                         address=address, detail=detail)  # fmt: skip
        return first

    # held recipients

    def add_holds(self, items: list[Hold], now: datetime) -> None:
        if not items:
            return
        with self.store.transaction(f"holding for {items[0].envelope_id}", write=True) as conn:
            conn.execute(
                insert(holds),
                [
                    {
                        "envelope_id": h.envelope_id,
                        "reader_id": h.reader_id,
                        "address": h.address,
                        "missing": ",".join(h.missing),
                        "reason": h.reason,
                        "sealed_link": h.sealed_link,
                        "state": "held",
                        "created_at": now,
                    }
                    for h in items
                ],
            )
            # Kept under the reply key in the hold now, no longer owed a notification.
            pending.forget(conn, items[0].envelope_id, [h.reader_id for h in items])
            for h in items:
                append_event(
                    conn,
                    "held",
                    envelope_id=h.envelope_id,
                    reader_id=h.reader_id,
                    address=h.address,
                    detail=f"missing={','.join(h.missing) or 'release'}",
                )

    def held(self, envelope_id: str) -> list[Hold]:
        """The envelope's held recipients, still waiting, in the order they were held."""
        query = select(holds).where(holds.c.envelope_id == envelope_id, holds.c.state == "held")
        with self.store.transaction(f"reading the holds of {envelope_id}", write=False) as conn:
            rows = conn.execute(query.order_by(holds.c.created_at, holds.c.address)).all()
        return [
            Hold(
                r.envelope_id,
                r.reader_id,
                r.address,
                tuple(m for m in r.missing.split(",") if m),
                r.reason,
                r.sealed_link,
            )
            for r in rows
        ]

    def decide_hold(
        self,
        hold: Hold,
        state: str,
        *,
        phone: str | None = None,
        methods: str | None = None,
    ) -> bool:
        """Released or cancelled: the sealed link goes; a supplied phone number and the
        methods it allows go into the reader record. False if decided before."""
        where = (
            holds.c.envelope_id == hold.envelope_id,
            holds.c.reader_id == hold.reader_id,
            holds.c.state == "held",
        )
        with self.store.transaction(f"deciding a hold of {hold.envelope_id}", write=True) as conn:
            changed = conn.execute(
                update(holds).where(*where).values(state=state, sealed_link=None)
            )
            if changed.rowcount != 1:
                return False
            values: dict[str, object] = {}
            if state == "cancelled":  # this reader will never read: its keys go now
                values.update(wrapped_key=None, encrypted_private_key=None)
            if phone is not None:
                values["phone"] = phone
            if methods is not None:
                values["methods"] = methods
            if values:
                conn.execute(
                    update(readers).where(readers.c.reader_id == hold.reader_id).values(values)
                )
            append_event(
                conn,
                state,
                envelope_id=hold.envelope_id,
                reader_id=hold.reader_id,
                address=hold.address,
                detail="by the sender",
            )
        return True

    # protected conversations

    def add_thread(self, message_ids: list[str], envelope_id: str, now: datetime) -> None:
        """Remember Message-IDs of a protected conversation (hashed)."""
        hashes = {message_id_hash(m) for m in message_ids if m}
        if not hashes:
            return
        with self.store.transaction(f"recording the thread of {envelope_id}", write=True) as conn:
            known = _known(conn, hashes)
            new = [
                {"message_id_hash": h, "envelope_id": envelope_id, "created_at": now}
                for h in hashes - known
            ]
            if new:
                conn.execute(insert(threads), new)

    def in_protected_thread(self, message_ids: list[str]) -> bool:
        """True if any of these Message-IDs belongs to a protected conversation."""
        hashes = {message_id_hash(m) for m in message_ids if m}
        if not hashes:
            return False
        with self.store.transaction("looking up a thread", write=False) as conn:
            return bool(_known(conn, hashes))


def _locked_throttle(conn: Connection, key: str, now: datetime) -> Row[Any]:
    """The throttle's row, created if missing, locked for this transaction: concurrent
    counts wait for each other instead of overwriting (PostgreSQL: FOR UPDATE; SQLite:
    write transactions are serialised by BEGIN IMMEDIATE already)."""
    new = {"key": key, "failures": 0, "window_start": now, "locked_until": None}
    insert_ = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert_(throttles).values(new)
    # An upsert that changes nothing still locks the row (PostgreSQL) and returns it, in one
    # statement: a row deleted by a concurrent clear() cannot slip in between.
    upsert = statement.on_conflict_do_update(
        index_elements=[throttles.c.key], set_={"key": statement.excluded.key}
    ).returning(*throttles.c)
    return conn.execute(upsert).one()


def _known(conn: Connection, hashes: set[bytes]) -> set[bytes]:
    query = select(threads.c.message_id_hash).where(threads.c.message_id_hash.in_(sorted(hashes)))
    return {row[0] for row in conn.execute(query)}
