"""Portal sessions (one reader), remembered devices (an address) and account sessions
(an account holder, signed in), by token hash.

A token is stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from gateway.store.database import Store
from gateway.store.schema import sessions


@dataclass(frozen=True)
class Session:
    kind: str  # "session" | "device" | "account"
    reader_id: str | None
    address: str | None
    method: str | None  # for a device: the second factor it proved


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


class Sessions:
    def __init__(self, store: Store) -> None:
        self.store = store

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
                    "last_seen_at": now,
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

    def account_session(self, token: str, now: datetime, idle: timedelta) -> Session | None:
        """The account session of ``token`` if it has been used within ``idle`` (and has
        not expired); its idle clock starts again. None otherwise."""
        fresh = or_(sessions.c.last_seen_at.is_(None), sessions.c.last_seen_at > now - idle)
        where = (
            sessions.c.token_hash == token_hash(token),
            sessions.c.kind == "account",
            sessions.c.expires_at > now,
            fresh,
        )
        with self.store.transaction("using an account session", write=True) as conn:
            row = conn.execute(select(sessions).where(*where)).first()
            if row is None:
                return None
            conn.execute(update(sessions).where(*where).values(last_seen_at=now))
        return Session(row.kind, row.reader_id, row.address, row.method)

    def end_account_sessions(self, address: str) -> int:
        """Sign an account out everywhere: every session of ``address`` ends."""
        with self.store.transaction("ending account sessions", write=True) as conn:
            return delete_account_sessions(conn, address)


def delete_account_sessions(conn: Connection, address: str) -> int:
    """Within ``conn``'s transaction: end every session of the account of ``address``."""
    where = (sessions.c.kind == "account", sessions.c.address == address.lower())
    return conn.execute(delete(sessions).where(*where)).rowcount
