"""Protected conversations: hashed Message-IDs, for the policy's protected_thread."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gateway.store.database import Store
from gateway.store.schema import threads


def message_id_hash(message_id: str) -> bytes:
    """Message-IDs compared case-sensitively, without the angle brackets' surroundings."""
    return hashlib.sha256(message_id.strip().encode("utf-8", "surrogateescape")).digest()


class Threads:
    def __init__(self, store: Store) -> None:
        self.store = store

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


def _known(conn: Connection, hashes: set[bytes]) -> set[bytes]:
    query = select(threads.c.message_id_hash).where(threads.c.message_id_hash.in_(sorted(hashes)))
    return {row[0] for row in conn.execute(query)}
