"""One-time codes (email, SMS) and the access code's lifetime budget per reader.

A code is stored only as an HMAC keyed outside the database; every try at it is
paid for before the comparison is made, so parallel guesses get no extra tries.

A reader may hold several one-time codes at once: a new code does not cancel the
earlier ones, so someone who makes the portal send codes (to the owner's mailbox,
never to themselves) cannot spoil the code the owner is about to type. A try is
charged to every live code of the reader and method, so several codes do not
multiply the tries. The rows double as the log of codes sent, for the rolling
hourly limit on sending: the sweep keeps them for ``SEND_WINDOW``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from gateway.store.database import Store
from gateway.store.schema import codes, readers

SEND_WINDOW = timedelta(hours=1)  # codes_per_hour counts the codes sent within this


@dataclass(frozen=True)
class TriedCode:
    """A live code one try was taken from, and the tries it has left after that one."""

    code_id: int
    code_hash: bytes
    tries_left: int


class Codes:
    def __init__(self, store: Store) -> None:
        self.store = store

    def issue_code(self, reader_id: str, method: str, code_hash: bytes, now: datetime,
                   ttl: timedelta, *, per_hour: int) -> datetime | None:  # fmt: skip
        """Store a new code for the reader (earlier ones stay valid), unless ``per_hour``
        codes were sent to the reader within the last ``SEND_WINDOW``: then nothing is
        stored, and the answer is when the oldest of them leaves the window (None: issued).

        The reader's row is locked first, so parallel requests (several workers) cannot
        both take the last place in the window."""
        recent = codes.c.created_at > now - SEND_WINDOW
        with self.store.transaction(f"issuing a code for {reader_id}", write=True) as conn:
            conn.execute(
                select(readers.c.reader_id)
                .where(readers.c.reader_id == reader_id)
                .with_for_update()
            )
            sent: list[datetime] = list(
                conn.execute(
                    select(codes.c.created_at)
                    .where(codes.c.reader_id == reader_id, recent)
                    .order_by(codes.c.created_at.desc())
                    .limit(per_hour)
                ).scalars()
            )
            if len(sent) >= per_hour:
                return min(sent) + SEND_WINDOW
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
        return None

    def reserve_tries(
        self, reader_id: str, method: str, now: datetime, max_tries: int
    ) -> list[TriedCode]:
        """Take one try from every live code of the reader and method (unused, unexpired,
        fewer than ``max_tries`` taken) before comparing; those codes, to compare against.

        One statement, so it is atomic: on PostgreSQL a parallel try waits for the row and
        sees its count, on SQLite write transactions are serialised. A code whose last try
        this was is dead from now on, whatever the comparison brings."""
        failures = codes.c.failures
        take = (
            update(codes)
            .where(
                codes.c.reader_id == reader_id,
                codes.c.method == method,
                codes.c.used == 0,
                codes.c.expires_at > now,
                failures < max_tries,
            )
            .values(failures=failures + 1)
            .returning(codes.c.code_id, codes.c.code_hash, failures)
        )
        with self.store.transaction("counting a try at the codes", write=True) as conn:
            rows = conn.execute(take).all()
        return [TriedCode(r.code_id, r.code_hash, max_tries - r.failures) for r in rows]

    def code_used(self, code_id: int, others: list[int]) -> None:
        """Spend the code a right entry matched (it works once), and give ``others``, the
        codes that entry was also paid with, their try back: the owner's right code is no
        guess at the others, which stay valid for another device."""
        with self.store.transaction("spending a code", write=True) as conn:
            conn.execute(update(codes).where(codes.c.code_id == code_id).values(used=1))
            if others:
                conn.execute(
                    update(codes)
                    .where(codes.c.code_id.in_(others), codes.c.failures > 0)
                    .values(failures=codes.c.failures - 1)
                )

    def reserve_access_guess(self, reader_id: str, budget: int) -> int | None:
        """Take one of the reader's lifetime access-code tries before comparing; the tries
        left after it, or None when the budget was spent already. Atomic, like
        reserve_tries: parallel guesses cannot share a try."""
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
