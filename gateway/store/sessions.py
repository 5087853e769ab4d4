"""Portal sessions (one reader) and remembered devices (an address), by token hash.

A token is stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from gateway.store.database import Store
from gateway.store.schema import sessions


@dataclass(frozen=True)
class Session:
    kind: str  # "session" | "device"
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
