"""The portal's state in the store, by concern, on the envelopes' store.

Everything here is short-lived and holds secrets only as hashes: codes
(gateway.store.codes), throttles, sessions, secure replies waiting for delivery,
held recipients and protected conversations each have a module of their own;
:class:`PortalState` puts them together for the portal and the pipeline and
sweeps what is spent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select

from gateway.store.codes import SEND_WINDOW, Codes
from gateway.store.database import Store, append_event
from gateway.store.holds import Holds
from gateway.store.records import LIVE_STATES
from gateway.store.replies import ReplyQueue
from gateway.store.schema import codes, envelopes, events, holds, readers, sessions, throttles
from gateway.store.sessions import Sessions
from gateway.store.threads import Threads
from gateway.store.throttles import Throttles


class PortalState:
    """The portal's queries, by concern (same database, same transactions as the envelopes)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.codes = Codes(store)
        self.throttles = Throttles(store)
        self.sessions = Sessions(store)
        self.replies = ReplyQueue(store)
        self.holds = Holds(store)
        self.threads = Threads(store)

    def sweep(self, now: datetime, *, keep: timedelta = timedelta(days=1)) -> int:
        """Forget expired sessions, expired codes sent before the send window, decided
        holds (and those of ended envelopes) and stale throttles."""
        with self.store.transaction("sweeping portal state", write=True) as conn:
            removed = conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount
            # Spent codes stay for the send window: they are its log of codes sent.
            sent_earlier = codes.c.created_at <= now - SEND_WINDOW
            removed += conn.execute(
                delete(codes).where(sent_earlier, codes.c.expires_at <= now)
            ).rowcount
            live = select(envelopes.c.envelope_id).where(envelopes.c.state.in_(LIVE_STATES))
            removed += conn.execute(
                delete(holds).where(or_(holds.c.state != "held", holds.c.envelope_id.not_in(live)))
            ).rowcount
            removed += conn.execute(
                delete(throttles).where(
                    throttles.c.window_start <= now - keep,
                    or_(throttles.c.locked_until.is_(None), throttles.c.locked_until <= now),
                )
            ).rowcount
        return removed

    def record_first(self, kind: str, envelope_id: str, reader_id: str, address: str,
                     detail: str) -> bool:  # fmt: skip
        """Record an event; True if it is the reader's first of this kind (one indexed
        lookup, whatever the length of the trail)."""
        earlier = (
            select(events.c.event_id)
            .where(
                events.c.envelope_id == envelope_id,
                events.c.reader_id == reader_id,
                events.c.kind == kind,
            )
            .limit(1)
        )
        with self.store.transaction(f"recording a {kind} event", write=True) as conn:
            # The reader's row, locked: two requests at once cannot both be the first.
            conn.execute(
                select(readers.c.reader_id)
                .where(readers.c.reader_id == reader_id)
                .with_for_update()
            )
            first = conn.scalar(earlier) is None
            append_event(conn, kind, envelope_id=envelope_id, reader_id=reader_id,
                         address=address, detail=detail)  # fmt: skip
        return first
