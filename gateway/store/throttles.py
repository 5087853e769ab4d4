"""Counts of failures (or uses) per key, shared by every worker and node.

Throttles live in the database, not in memory, so that several worker processes
(and restarts) share one count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row

from gateway.store.database import Store
from gateway.store.schema import throttles


@dataclass(frozen=True)
class Counted:
    failures: int  # within the window, this one included
    until: datetime | None  # locked until (a backoff or the lockout)
    limit_reached: bool


class Throttles:
    def __init__(self, store: Store) -> None:
        self.store = store

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
