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
class Listed:
    """A session or remembered device of an address, as its owner sees it listed."""

    session_id: str  # the first 16 bytes of the token's SHA-256, hex: names it, opens nothing
    kind: str  # "account" | "device"
    created_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime


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

    def of_address(self, address: str, now: datetime) -> list[Listed]:
        """The live account sessions and remembered devices of ``address``, newest first."""
        query = (
            select(sessions)
            .where(
                sessions.c.address == address.lower(),
                sessions.c.kind.in_(("account", "device")),
                sessions.c.expires_at > now,
            )
            .order_by(sessions.c.created_at.desc())
        )
        with self.store.transaction("listing sessions", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            Listed(
                _listed_id(row.token_hash),
                row.kind,
                row.created_at,
                row.last_seen_at,
                row.expires_at,
            )  # fmt: skip
            for row in rows
        ]

    def end_listed(self, address: str, listed_id: str) -> bool:
        """End the session or device of ``address`` that :meth:`of_address` listed as
        ``listed_id``; False if there is none (another address's is never touched)."""
        mine = (sessions.c.address == address.lower(), sessions.c.kind.in_(("account", "device")))
        with self.store.transaction("ending a listed session", write=True) as conn:
            hashes = conn.scalars(select(sessions.c.token_hash).where(*mine)).all()
            found = [h for h in hashes if _listed_id(h) == listed_id]
            if len(found) != 1:
                return False
            conn.execute(delete(sessions).where(sessions.c.token_hash == found[0]))
        return True

    def end_account_sessions(self, address: str) -> int:
        """Sign an account out everywhere: every session of ``address`` ends."""
        with self.store.transaction("ending account sessions", write=True) as conn:
            return delete_account_sessions(conn, address)


def session_id(token: str) -> str:
    """How a session is named to its owner (and in the list of them)."""
    return _listed_id(token_hash(token))


def _listed_id(hashed: bytes) -> str:
    return hashed[:16].hex()


def delete_account_sessions(conn: Connection, address: str) -> int:
    """Within ``conn``'s transaction: end every session of the account of ``address``."""
    where = (sessions.c.kind == "account", sessions.c.address == address.lower())
    return conn.execute(delete(sessions).where(*where)).rowcount
