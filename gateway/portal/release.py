"""The sender's decision on held recipients: supply what is missing and release, or cancel.

A held recipient was sealed for like any other; only its link was kept,
encrypted to the gateway's reply key (gateway.envelope.reply.seal_link), and
no notification went out. Releasing opens that link, completes the reader's
second factor with what the sender supplied (a mobile number), and sends the
notification through the upstream. Cancelling forgets the link, and an
envelope nobody else can read is crypto-shredded at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.envelope.keys import Link
from gateway.envelope.reply import ReplyError, ReplyKey
from gateway.errors import GatewayError
from gateway.identity.secondfactor import MIN_ACCESS_CODE_LENGTH, normal_phone
from gateway.logsetup import event
from gateway.notify import Notifier, Original
from gateway.portal.replies import Send
from gateway.store import EnvelopeRecord, Store
from gateway.store.holds import Hold
from gateway.store.portalstate import PortalState

log = logging.getLogger("sealgate.portal")


class Releaser:
    def __init__(
        self,
        store: Store,
        state: PortalState,
        reply_key: Callable[[], ReplyKey],
        notifier: Callable[[], Notifier],
        send: Send,
        portal_url: Callable[[], str],
    ) -> None:
        self.store = store
        self.state = state
        self.reply_key = reply_key
        self.notifier = notifier
        self.send = send
        self.portal_url = portal_url

    async def held(self, envelope_id: str) -> list[Hold]:
        return await asyncio.to_thread(self.state.holds.held, envelope_id)

    async def release(self, envelope: EnvelopeRecord, phones: dict[str, str]) -> list[str]:
        """Notify every held recipient whose missing pieces are now supplied; the problems
        of those still held (a number that is not one, ...)."""
        problems: list[str] = []
        key = await asyncio.to_thread(self.reply_key)
        for hold in await self.held(envelope.envelope_id):
            reader = next((r for r in envelope.readers if r.reader_id == hold.reader_id), None)
            if reader is None or hold.sealed_link is None:
                continue
            methods = [m for m in reader.methods.split(",") if m]
            phone = None
            if "phone" in hold.missing:
                phone = normal_phone(phones.get(hold.address, ""))
                if phone is None:
                    problems.append(f"{hold.address}: a mobile number like +31612345678")
                    continue
                methods = [*methods, "sms"] if "sms" not in methods else methods
            elif "access-code" in hold.missing:
                problems.append(
                    f"{hold.address}: send the message again with an access code of at least "
                    f"{MIN_ACCESS_CODE_LENGTH} characters"
                )
                continue
            try:
                await self._notify(envelope, hold, key)
            except (ReplyError, GatewayError, ValueError) as error:
                event(log, logging.WARNING, "release failed", envelope=envelope.envelope_id,
                      error=str(error))  # fmt: skip
                problems.append(f"{hold.address}: could not be notified now; try again later")
                continue
            await asyncio.to_thread(
                self.state.holds.decide_hold,
                hold,
                "released",
                phone=phone,
                methods=",".join(methods),
            )
        return problems

    async def cancel(self, envelope: EnvelopeRecord) -> None:
        """Forget the held links; shred the envelope if no other reader was notified."""
        held = await self.held(envelope.envelope_id)
        for hold in held:
            await asyncio.to_thread(self.state.holds.decide_hold, hold, "cancelled")
        guests = {r.reader_id for r in envelope.readers if r.kind == "guest"}
        if guests <= {hold.reader_id for hold in held}:
            await asyncio.to_thread(
                self.store.shred, envelope.envelope_id, "revoked", detail="cancelled by the sender"
            )

    async def _notify(self, envelope: EnvelopeRecord, hold: Hold, key: ReplyKey) -> None:
        assert hold.sealed_link is not None
        link = await asyncio.to_thread(key.open_link, hold.sealed_link)  # RSA: off the loop
        await self.notify(envelope, hold.address, link)

    async def notify(self, envelope: EnvelopeRecord, address: str, link: Link) -> None:
        """The notification with ``link`` to ``address``, through the upstream, as the
        sealing sends it (released holds, and a sender's "send again")."""
        original = Original(
            sender=envelope.sender,
            sender_name=envelope.sender_name,
            subject=None,
            message_id=envelope.message_id,
            references=(),
            content_language=None,
        )
        data = self.notifier().notification(
            original, address, link.url(self.portal_url()), envelope.expires_at
        )
        await self.send(envelope.sender, [address], data)
