"""Links owed to guest readers until their message is settled.

DESIGN, "Retries are idempotent and finish what is missing": a protected
message owes several upstream transactions (a notification per reader, the
relayed copy, a bounce), and any of them can fail with a 4xx after others were
accepted. The MTA then retries the whole message. Sealing afresh would give
every reader a second link and kill the first, already in their mailbox. So
each guest reader's link is kept here, sealed to the organisation's reply key,
until their notification is accepted (committed with the envelope itself,
``Store.commit_envelope(pending=...)``); a retry sends the same link to the
readers still owed one. Whatever is left goes when the message is settled
(``Store.mark_delivered``) or the envelope ends (shredding): from then on the
link exists only in the recipient's mailbox.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from gateway.store.database import Store, append_event
from gateway.store.schema import pending_links


class PendingLinks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def owed(self, envelope_id: str) -> dict[str, bytes]:
        """Reader id -> sealed link, for the readers still owed their notification."""
        query = select(pending_links.c.reader_id, pending_links.c.sealed_link).where(
            pending_links.c.envelope_id == envelope_id
        )
        with self.store.transaction(f"reading the links of {envelope_id}", write=False) as conn:
            return {row.reader_id: row.sealed_link for row in conn.execute(query)}

    def notified(self, envelope_id: str, reader_id: str, address: str) -> None:
        """The reader's notification was accepted upstream: its kept link goes."""
        action = f"recording a notification of {envelope_id}"
        with self.store.transaction(action, write=True) as conn:
            forget(conn, envelope_id, [reader_id])
            append_event(
                conn,
                "reader-notified",
                envelope_id=envelope_id,
                reader_id=reader_id,
                address=address,
            )

    def bounced(self, envelope_id: str) -> bool:
        """Whether the bounce for this envelope's message was accepted already."""
        return any(e.kind == "bounced" for e in self.store.events(envelope_id))

    def record_bounce(self, envelope_id: str) -> None:
        self.store.record_event("bounced", envelope_id=envelope_id)


def forget(conn: Connection, envelope_id: str, reader_ids: Iterable[str] | None = None) -> None:
    """Within ``conn``'s transaction: drop the kept links (of these readers, or all)."""
    where = [pending_links.c.envelope_id == envelope_id]
    if reader_ids is not None:
        where.append(pending_links.c.reader_id.in_(list(reader_ids)))
    conn.execute(delete(pending_links).where(*where))
