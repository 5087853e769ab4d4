"""The sealed-envelope service the pipeline talks to: seal, commit, look up, expire.

Everything here blocks (CPU-bound encryption, fsync, database commits), so
each call runs in a worker thread and the SMTP event loop stays responsive.
Sealing and its commit happen in one thread call: the blobs are durable
before the database row that makes them reachable is committed, and a crash
in between leaves only orphaned blobs, which :meth:`Vault.sweep` removes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from gateway.envelope.keys import Link
from gateway.envelope.seal import SealedEnvelope, Sealer, SealRequest
from gateway.logsetup import event
from gateway.store import AccountRecord, EnvelopeRecord, Store

log = logging.getLogger("sealgate.vault")


class Vault:
    def __init__(self, store: Store, *, orphan_age: float) -> None:
        self.store = store
        self.orphan_age = orphan_age
        self._sealer = Sealer(store.blobs)

    async def seal(
        self,
        request: SealRequest,
        *,
        supersede: str | None,
        keep_link: Callable[[Link], bytes] | None = None,
        with_accounts: bool = False,
        remember_thread: bool = False,
        after: Callable[[SealedEnvelope], None] | None = None,
    ) -> SealedEnvelope:
        """Seal and commit; ``supersede`` names an unfinished earlier attempt to shred.

        All in one worker thread, so that a message costs the event loop one hop:
        ``with_accounts`` looks up the sender's account and the recipients' first (K
        is wrapped to them); ``keep_link`` seals a reader's link to the reply key, and the links
        are committed with the envelope and kept until the message is settled, so that
        a retry can finish what an attempt left owed (gateway.store.pending);
        ``remember_thread`` records the message's Message-ID as protected in the same
        commit (answers to it stay protected). ``after`` runs in the same thread once
        the envelope is committed, for work that would otherwise cost a hop of its own
        (the pipeline renders and signs the notifications there); if it raises, the
        envelope stays committed and the error propagates.
        """

        def seal() -> SealedEnvelope:
            accounts = self.store.get_accounts(_addresses(request)) if with_accounts else None
            sealed = self._seal_and_commit(request, supersede, keep_link, remember_thread, accounts)
            if after is not None:
                after(sealed)
            return sealed

        return await asyncio.to_thread(seal)

    async def seal_unless_live(
        self,
        request: SealRequest,
        *,
        keep_link: Callable[[Link], bytes] | None = None,
        with_accounts: bool = False,
        remember_thread: bool = False,
        after: Callable[[SealedEnvelope], None] | None = None,
    ) -> SealedEnvelope | EnvelopeRecord:
        """As :meth:`seal`, unless a live envelope has the request's idempotency key
        already (a retry): then that envelope, and nothing is sealed. One hop, and one
        read transaction, for the lookups and the seal that usually follows them."""

        def seal_unless_live() -> SealedEnvelope | EnvelopeRecord:
            addresses = _addresses(request) if with_accounts else []
            existing, accounts = self.store.find_live_and_accounts(
                request.idempotency_key, addresses
            )
            if existing is not None:
                return existing
            sealed = self._seal_and_commit(
                request, None, keep_link, remember_thread, accounts if with_accounts else None
            )
            if after is not None:
                after(sealed)
            return sealed

        return await asyncio.to_thread(seal_unless_live)

    def _seal_and_commit(
        self,
        request: SealRequest,
        supersede: str | None,
        keep_link: Callable[[Link], bytes] | None,
        remember_thread: bool,
        accounts: Mapping[str, AccountRecord] | None,
    ) -> SealedEnvelope:
        if accounts is not None:  # by lower-cased address: K is wrapped to these too
            request = replace(
                request,
                sender_account=accounts.get(request.sender.lower()) if request.sender else None,
                recipient_accounts={
                    a: accounts[a.lower()] for a in request.recipients if a.lower() in accounts
                },  # fmt: skip
            )
        sealed = self._sealer.seal(request)
        pending = {}
        if keep_link is not None:
            pending = {grant.reader_id: keep_link(grant.link) for grant in sealed.grants}
        try:
            self.store.commit_envelope(
                sealed.record,
                supersede=supersede,
                decisions=request.decisions,
                events=request.events,
                pending=pending,
                remember_thread=remember_thread,
            )
        except BaseException:
            self.store.blobs.delete_envelope(sealed.envelope_id)
            raise
        return sealed

    async def mark_delivered(
        self, envelope_id: str, last_notified: tuple[str, str] | None = None
    ) -> None:
        await asyncio.to_thread(
            functools.partial(self.store.mark_delivered, envelope_id, last_notified=last_notified)
        )

    async def discard(self, envelope_id: str, reason: str) -> None:
        """Shred an envelope no reader will ever reach (every notification refused)."""
        await asyncio.to_thread(self.store.shred, envelope_id, "revoked", detail=reason)

    async def sweep(self) -> None:
        """Expire what is past retention and remove blobs that no envelope owns."""
        expired = await asyncio.to_thread(self.store.expire, datetime.now(UTC))
        orphans = await asyncio.to_thread(self.store.sweep_orphans, self.orphan_age)
        if expired or orphans:
            event(log, logging.INFO, "sweep", expired=len(expired), orphans=orphans)

    def close(self) -> None:
        self.store.close()


def _addresses(request: SealRequest) -> list[str]:
    """Whose accounts sealing looks up: the sender's and the recipients'."""
    return [request.sender, *request.recipients]
