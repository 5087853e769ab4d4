"""Protected conversations: hashed Message-IDs, for the policy's protected_thread."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from gateway.store.schema import envelopes, threads

if TYPE_CHECKING:
    from gateway.store.database import Store

# Built once (every protected message records its thread): a Message-ID known already
# keeps the first envelope of its conversation.
_RECORD = {
    name: insert_(threads).on_conflict_do_nothing(index_elements=[threads.c.message_id_hash])
    for name, insert_ in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}


def message_id_hash(message_id: str) -> bytes:
    """Message-IDs compared case-sensitively, without the angle brackets' surroundings."""
    return hashlib.sha256(message_id.strip().encode("utf-8", "surrogateescape")).digest()


class Threads:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add_thread(self, message_ids: list[str], envelope_id: str, now: datetime) -> None:
        """Remember Message-IDs of a protected conversation (hashed)."""
        if not any(message_ids):
            return
        with self.store.transaction(f"recording the thread of {envelope_id}", write=True) as conn:
            record_thread(conn, message_ids, envelope_id, now)

    def protected_elsewhere(self, message_id: str, transaction_key: str) -> bool:
        """Whether Sealgate protected a message with this Message-ID in another transaction.

        ``transaction_key`` is this transaction's idempotency key: a retry of the
        same transaction has the same key and is not "elsewhere". A copy that a
        colleague's forward or an alias brings back has other recipients, so another
        key, even when a forwarder re-wrote its bytes and the loop marker no longer
        verifies.
        """
        query = (
            select(threads.c.envelope_id)
            .join(envelopes, envelopes.c.envelope_id == threads.c.envelope_id)
            .where(
                threads.c.message_id_hash == message_id_hash(message_id),
                envelopes.c.idempotency_key != transaction_key,
            )
            .limit(1)
        )
        with self.store.transaction("looking up a protected message", write=False) as conn:
            return conn.execute(query).first() is not None

    def in_protected_thread(self, message_ids: list[str]) -> bool:
        """True if any of these Message-IDs belongs to a protected conversation."""
        hashes = {message_id_hash(m) for m in message_ids if m}
        if not hashes:
            return False
        with self.store.transaction("looking up a thread", write=False) as conn:
            return bool(_known(conn, hashes))


def record_thread(
    conn: Connection, message_ids: list[str], envelope_id: str, now: datetime
) -> None:
    """Within ``conn``'s transaction: remember these Message-IDs (hashed) as protected."""
    hashes = sorted({message_id_hash(m) for m in message_ids if m})
    if not hashes:
        return
    conn.execute(
        _RECORD["postgresql" if conn.dialect.name == "postgresql" else "sqlite"],
        [{"message_id_hash": h, "envelope_id": envelope_id, "created_at": now} for h in hashes],
    )


def _known(conn: Connection, hashes: set[bytes]) -> set[bytes]:
    query = select(threads.c.message_id_hash).where(threads.c.message_id_hash.in_(sorted(hashes)))
    return {row[0] for row in conn.execute(query)}
