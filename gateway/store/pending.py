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
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from gateway.store.database import Store, append_event
from gateway.store.schema import events, pending_links

# The audit trail's kinds that say how far the delivery of an envelope got.
_PROGRESS = ("reader-notified", "reader-refused", "bounced", "held", "held-notice")


@dataclass(frozen=True)
class Progress:
    """What the attempts so far did for one unsettled envelope (from its audit trail)."""

    owed: dict[str, bytes] = field(default_factory=dict, repr=False)  # reader id -> kept link
    notified: frozenset[str] = frozenset()  # reader ids whose notification was accepted
    refused: dict[str, str] = field(default_factory=dict)  # address -> the upstream's reply
    bounced: frozenset[str] = frozenset()  # addresses the sender was told about
    held: frozenset[str] = frozenset()  # reader ids held for the sender's release
    held_notice: bool = False  # the sender's notice about held recipients went out

    @property
    def started(self) -> bool:
        """Whether anything of this envelope reached anyone."""
        return bool(self.notified or self.bounced or self.held_notice)


class PendingLinks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def progress(self, envelope_id: str) -> Progress:
        """The kept links and what earlier attempts sent, in one read."""
        links = select(pending_links.c.reader_id, pending_links.c.sealed_link).where(
            pending_links.c.envelope_id == envelope_id
        )
        trail = select(events.c.kind, events.c.reader_id, events.c.address, events.c.detail).where(
            events.c.envelope_id == envelope_id, events.c.kind.in_(_PROGRESS)
        )
        with self.store.transaction(f"reading the progress of {envelope_id}", write=False) as conn:
            owed = {row.reader_id: row.sealed_link for row in conn.execute(links)}
            rows = conn.execute(trail).all()
        return Progress(
            owed=owed,
            notified=frozenset(r.reader_id for r in rows if r.kind == "reader-notified"),
            refused={r.address: r.detail for r in rows if r.kind == "reader-refused"},
            bounced=frozenset(r.address for r in rows if r.kind == "bounced"),
            held=frozenset(r.reader_id for r in rows if r.kind == "held"),
            held_notice=any(r.kind == "held-notice" for r in rows),
        )

    def notified(self, envelope_id: str, reader_id: str, address: str) -> None:
        """The reader's notification was accepted upstream: its kept link goes."""
        self._settle_reader(envelope_id, reader_id, address, "reader-notified", "")

    def refused(self, envelope_id: str, reader_id: str, address: str, reply: str) -> None:
        """The upstream refused the reader's notification for good: its kept link goes
        (the sender is told in the bounce; no retry notifies them)."""
        self._settle_reader(envelope_id, reader_id, address, "reader-refused", reply[:300])

    def bounced(self, envelope_id: str, addresses: Iterable[str]) -> None:
        """The sender was told about these refused recipients."""
        with self.store.transaction(f"recording a bounce of {envelope_id}", write=True) as conn:
            for address in addresses:
                append_event(conn, "bounced", envelope_id=envelope_id, address=address)

    def held_notice_sent(self, envelope_id: str) -> None:
        self.store.record_event("held-notice", envelope_id=envelope_id)

    def _settle_reader(
        self, envelope_id: str, reader_id: str, address: str, kind: str, detail: str
    ) -> None:
        with self.store.transaction(f"recording a {kind} of {envelope_id}", write=True) as conn:
            forget(conn, envelope_id, [reader_id])
            append_event(
                conn,
                kind,
                envelope_id=envelope_id,
                reader_id=reader_id,
                address=address,
                detail=detail,
            )


def forget(conn: Connection, envelope_id: str, reader_ids: Iterable[str] | None = None) -> None:
    """Within ``conn``'s transaction: drop the kept links (of these readers, or all)."""
    where = [pending_links.c.envelope_id == envelope_id]
    if reader_ids is not None:
        where.append(pending_links.c.reader_id.in_(list(reader_ids)))
    conn.execute(delete(pending_links).where(*where))
