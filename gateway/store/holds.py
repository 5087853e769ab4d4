"""Held recipients: their link sealed to the reply key, waiting for the sender's decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.store import pending
from gateway.store.database import Store, append_event
from gateway.store.schema import holds, readers


@dataclass(frozen=True)
class Hold:
    """A held recipient: their link sealed to the reply key, waiting for the sender."""

    envelope_id: str
    reader_id: str
    address: str
    missing: tuple[str, ...]  # second factors the sender must supply: "phone", "access-code"
    reason: str  # why they are held, for the sender: the rule's words
    sealed_link: bytes | None = field(repr=False)


class Holds:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add_holds(self, items: list[Hold], now: datetime) -> None:
        if not items:
            return
        with self.store.transaction(f"holding for {items[0].envelope_id}", write=True) as conn:
            conn.execute(
                insert(holds),
                [
                    {
                        "envelope_id": h.envelope_id,
                        "reader_id": h.reader_id,
                        "address": h.address,
                        "missing": ",".join(h.missing),
                        "reason": h.reason,
                        "sealed_link": h.sealed_link,
                        "state": "held",
                        "created_at": now,
                    }
                    for h in items
                ],
            )
            # Kept under the reply key in the hold now, no longer owed a notification.
            pending.forget(conn, items[0].envelope_id, [h.reader_id for h in items])
            for h in items:
                append_event(
                    conn,
                    "held",
                    envelope_id=h.envelope_id,
                    reader_id=h.reader_id,
                    address=h.address,
                    detail=f"missing={','.join(h.missing) or 'release'}",
                )

    def held(self, envelope_id: str) -> list[Hold]:
        """The envelope's held recipients, still waiting, in the order they were held."""
        query = select(holds).where(holds.c.envelope_id == envelope_id, holds.c.state == "held")
        with self.store.transaction(f"reading the holds of {envelope_id}", write=False) as conn:
            rows = conn.execute(query.order_by(holds.c.created_at, holds.c.address)).all()
        return [
            Hold(
                r.envelope_id,
                r.reader_id,
                r.address,
                tuple(m for m in r.missing.split(",") if m),
                r.reason,
                r.sealed_link,
            )
            for r in rows
        ]

    def decide_hold(
        self,
        hold: Hold,
        state: str,
        *,
        phone: str | None = None,
        methods: str | None = None,
    ) -> bool:
        """Released or cancelled: the sealed link goes; a supplied phone number and the
        methods it allows go into the reader record. False if decided before."""
        where = (
            holds.c.envelope_id == hold.envelope_id,
            holds.c.reader_id == hold.reader_id,
            holds.c.state == "held",
        )
        with self.store.transaction(f"deciding a hold of {hold.envelope_id}", write=True) as conn:
            changed = conn.execute(
                update(holds).where(*where).values(state=state, sealed_link=None)
            )
            if changed.rowcount != 1:
                return False
            values: dict[str, object] = {}
            if state == "cancelled":  # this reader will never read: its keys go now
                values.update(wrapped_key=None, encrypted_private_key=None)
            if phone is not None:
                values["phone"] = phone
            if methods is not None:
                values["methods"] = methods
            if values:
                conn.execute(
                    update(readers).where(readers.c.reader_id == hold.reader_id).values(values)
                )
            append_event(
                conn,
                state,
                envelope_id=hold.envelope_id,
                reader_id=hold.reader_id,
                address=hold.address,
                detail="by the sender",
            )
        return True
