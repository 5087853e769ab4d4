"""Secure replies waiting to be delivered, encrypted to the reply key, claimed with a lease."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from gateway.store.database import Store, append_event
from gateway.store.schema import replies


@dataclass(frozen=True)
class QueuedReply:
    reply_id: str
    envelope_id: str
    reader_id: str
    attempts: int
    blob: bytes


class ReplyQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

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
