"""One-time codes (email, SMS) and the access code's lifetime budget per reader.

A code is stored only as an HMAC keyed outside the database; every try at it is
paid for before the comparison is made, so parallel guesses get no extra tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from gateway.store.database import Store
from gateway.store.schema import codes, readers


@dataclass(frozen=True)
class ActiveCode:
    code_id: int
    code_hash: bytes


class Codes:
    def __init__(self, store: Store) -> None:
        self.store = store

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
