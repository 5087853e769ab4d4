"""The sender's view of what they sent (docs/senders.md): their protected messages with,
per recipient, what happened to it; withdrawing one recipient; a new expiry.

Statuses come from the audit trail and the holds, not from new columns: each
recipient's newest step of notified, opened, downloaded, replied, with its time, and
whether they are held, refused by their mail server, or withdrawn. A withdrawn
recipient's wrapped key is shredded (set to NULL) like a revoked envelope's, so their
link opens nothing any more; the other recipients keep reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, func, select, update

from gateway.store.database import Store, append_event
from gateway.store.records import LIVE_STATES, EnvelopeRecord
from gateway.store.schema import envelopes, events, holds, pending_links, readers

# The steps a recipient goes through, in order (event kind -> status): their status is
# the furthest reached.
_STEP_NAMES = {
    "reader-notified": "notified",
    "opened": "opened",
    "downloaded": "downloaded",
    "replied": "replied",
}


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient of a sent message, as the sender sees them."""

    reader_id: str
    address: str
    kind: str  # "guest" | "account" (the sender's own copy is not listed)
    status: str  # "sealed", "notified", "opened", "downloaded", "replied", "held",
    # "refused", "withdrawn", "revoked" (the whole message) or "expired"
    times: dict[str, datetime] = field(default_factory=dict)  # step -> first time
    held_reason: str = ""


@dataclass(frozen=True)
class SentSummary:
    """One of a sender's messages, as their list shows it."""

    envelope_id: str
    created_at: datetime
    expires_at: datetime
    live: bool
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class SentMessage:
    envelope: EnvelopeRecord
    recipients: tuple[RecipientStatus, ...]


class SentMessages:
    def __init__(self, store: Store) -> None:
        self.store = store

    def of_sender(self, sender: str, *, limit: int = 50) -> list[SentSummary]:
        """The sender's newest messages, each with its recipients (the sender's own copy
        left out): two queries, whatever the number of messages."""
        sender = sender.lower()
        query = (
            select(
                envelopes.c.envelope_id,
                envelopes.c.created_at,
                envelopes.c.expires_at,
                envelopes.c.state,
            )  # fmt: skip
            .where(func.lower(envelopes.c.sender) == sender)
            .order_by(envelopes.c.created_at.desc(), envelopes.c.envelope_id.desc())
            .limit(limit)
        )
        with self.store.transaction("listing sent messages", write=False) as conn:
            rows = conn.execute(query).all()
            recipients: dict[str, list[str]] = {row.envelope_id: [] for row in rows}
            named = conn.execute(
                select(readers.c.envelope_id, readers.c.address, readers.c.kind)
                .where(readers.c.envelope_id.in_(list(recipients)))
                .order_by(readers.c.envelope_id, readers.c.position)
            )
            for envelope_id, address, kind in named:
                if not (kind == "account" and address.lower() == sender):
                    recipients[envelope_id].append(address)
        now = datetime.now(UTC)
        return [
            SentSummary(
                row.envelope_id,
                row.created_at,
                row.expires_at,
                row.state in LIVE_STATES and row.expires_at > now,
                tuple(recipients[row.envelope_id]),
            )  # fmt: skip
            for row in rows
        ]

    def message(self, envelope_id: str) -> SentMessage | None:
        """The message with every recipient's status; None if there is no such envelope."""
        envelope = self.store.get(envelope_id)
        if envelope is None:
            return None
        with self.store.transaction("reading a sent message", write=False) as conn:
            trail = conn.execute(
                select(events.c.kind, events.c.reader_id, events.c.address, events.c.at)
                .where(events.c.envelope_id == envelope_id)
                .order_by(events.c.event_id)
            ).all()
            held = {
                row.reader_id: row
                for row in conn.execute(select(holds).where(holds.c.envelope_id == envelope_id))
            }
        recipients = tuple(
            _status(envelope, reader.reader_id, reader.address, reader.kind, trail, held)
            for reader in envelope.readers
            if not (reader.kind == "account" and reader.address.lower() == envelope.sender.lower())
        )
        return SentMessage(envelope, recipients)

    def withdraw(self, envelope_id: str, reader_id: str, detail: str) -> bool:
        """Shred one recipient's key: their link opens nothing any more, the others keep
        reading. False if the envelope has ended or the recipient was withdrawn before."""
        live = and_(envelopes.c.envelope_id == envelope_id, envelopes.c.state.in_(LIVE_STATES))
        mine = and_(
            readers.c.envelope_id == envelope_id,
            readers.c.reader_id == reader_id,
            readers.c.wrapped_key.is_not(None) | readers.c.encrypted_private_key.is_not(None),
        )
        with self.store.transaction(f"withdrawing {envelope_id}/{reader_id}", write=True) as conn:
            if conn.scalar(select(envelopes.c.envelope_id).where(live)) is None:
                return False
            address = conn.scalar(select(readers.c.address).where(mine))
            if address is None:
                return False
            shredded = {"wrapped_key": None, "encrypted_private_key": None}
            conn.execute(update(readers).where(mine).values(shredded))
            conn.execute(
                pending_links.delete().where(
                    pending_links.c.envelope_id == envelope_id,
                    pending_links.c.reader_id == reader_id,
                )
            )
            append_event(conn, "withdrawn", envelope_id=envelope_id, reader_id=reader_id,
                         address=address, detail=detail)  # fmt: skip
        return True

    def new_link(
        self, envelope_id: str, reader_id: str, link_id_hash: bytes, wrapped_key: bytes
    ) -> tuple[bytes, bytes] | None:
        """Give a guest recipient of a live envelope a new link: its hash and K wrapped
        under it replace the old ones, so the old link opens nothing any more. The old
        (hash, wrapped key), to put back if the new link cannot be sent
        (:meth:`restore_link`); None if the recipient was withdrawn or the envelope ended."""
        live = and_(envelopes.c.envelope_id == envelope_id, envelopes.c.state.in_(LIVE_STATES))
        mine = and_(
            readers.c.envelope_id == envelope_id,
            readers.c.reader_id == reader_id,
            readers.c.kind == "guest",
            readers.c.wrapped_key.is_not(None),
        )
        with self.store.transaction(
            f"a new link for {envelope_id}/{reader_id}", write=True
        ) as conn:
            if conn.scalar(select(envelopes.c.envelope_id).where(live)) is None:
                return None
            old = conn.execute(
                select(readers.c.link_id_hash, readers.c.wrapped_key, readers.c.address).where(mine)
            ).first()
            if old is None:
                return None
            conn.execute(
                update(readers)
                .where(mine)
                .values(
                    link_id_hash=link_id_hash, wrapped_key=wrapped_key, encrypted_private_key=None
                )
            )
            append_event(conn, "renotified", envelope_id=envelope_id, reader_id=reader_id,
                         address=old.address, detail="a new link from the sender")  # fmt: skip
        return old.link_id_hash, old.wrapped_key

    def restore_link(
        self, envelope_id: str, reader_id: str, old: tuple[bytes, bytes], new_hash: bytes
    ) -> None:
        """Put back the link :meth:`new_link` replaced (its notification did not go out)."""
        mine = and_(
            readers.c.envelope_id == envelope_id,
            readers.c.reader_id == reader_id,
            readers.c.link_id_hash == new_hash,
        )
        with self.store.transaction(f"restoring the link of {reader_id}", write=True) as conn:
            conn.execute(
                update(readers).where(mine).values(link_id_hash=old[0], wrapped_key=old[1])
            )
            append_event(conn, "renotify-failed", envelope_id=envelope_id, reader_id=reader_id,
                         detail="the old link works again")  # fmt: skip

    def set_expiry(self, envelope_id: str, expires_at: datetime, detail: str) -> bool:
        """A live envelope's new expiry (the sweeper ends it then); False if it has ended."""
        live = and_(envelopes.c.envelope_id == envelope_id, envelopes.c.state.in_(LIVE_STATES))
        with self.store.transaction(f"changing the expiry of {envelope_id}", write=True) as conn:
            changed = conn.execute(update(envelopes).where(live).values(expires_at=expires_at))
            if changed.rowcount != 1:
                return False
            until = expires_at.isoformat(timespec="minutes")
            append_event(conn, "expiry-changed", envelope_id=envelope_id,
                         detail=f"{detail} until={until}")  # fmt: skip
        return True


def _status(
    envelope: EnvelopeRecord,
    reader_id: str,
    address: str,
    kind: str,
    trail: Sequence[Row[Any, Any, Any, Any]],  # (kind, reader_id, address, at), oldest first
    held: dict[str, Row[Any]],
) -> RecipientStatus:
    times: dict[str, datetime] = {}
    withdrawn = refused = False
    for row in trail:
        mine = row.reader_id == reader_id or (
            row.reader_id is None and (row.address or "").lower() == address.lower()
        )
        if not mine:
            continue
        if row.kind in _STEP_NAMES:
            times.setdefault(_STEP_NAMES[row.kind], row.at)
        withdrawn = withdrawn or row.kind == "withdrawn"
        refused = refused or row.kind in ("reader-refused", "bounced")
    hold = held.get(reader_id)
    status = next((name for step, name in reversed(_STEP_NAMES.items()) if name in times), "sealed")
    if hold is not None and hold.state == "held":
        status = "held"
    if refused and status in ("sealed", "notified"):
        status = "refused"
    if withdrawn:
        status = "withdrawn"
    if not envelope.is_live():
        status = "revoked" if envelope.state in ("revoked", "superseded") else "expired"
    reason = hold.reason if hold is not None and hold.state == "held" else ""
    return RecipientStatus(reader_id, address, kind, status, times, reason)
