"""The one way out for mail Sealgate writes itself.

Notifications, code mails, receipts, held notices, bounces, secure replies and
releases all leave through :class:`OwnMail`: DKIM-signed with the
organisation's key when it holds one for the From domain (so they pass DMARC
at the recipient), then marked as *originated* (gateway.outbound.loopmarker),
so that when one comes back through the MTA in front it is relayed as it is,
never decided on or sealed again. Not to be confused with the development
outbox (gateway.devoutbox), which stands in for the upstream MTA itself.
"""

from __future__ import annotations

import logging

from gateway.logsetup import event
from gateway.mailauth.dkimsign import Signer, SigningError
from gateway.outbound.loopmarker import Kind, LoopMarker
from gateway.outbound.upstream import UpstreamPool

log = logging.getLogger("sealgate.ownmail")


class OwnMail:
    def __init__(self, upstream: UpstreamPool, signer: Signer, marker: LoopMarker) -> None:
        self.upstream = upstream
        self.signer = signer
        self.marker = marker

    def signed(self, data: bytes) -> bytes:
        """``data`` with our DKIM signature in front; unsigned (and a warning) without a
        key for its From domain. Signing comes after every change of ours."""
        try:
            return self.signer.sign(data) + data
        except SigningError as error:
            event(log, logging.WARNING, "not DKIM-signed", error=str(error))
            return data

    def originated(self, data: bytes) -> bytes:
        """What Sealgate sends in its own name: signed, then loop-marked as originated."""
        signed = self.signed(data)
        return self.marker.header(signed, Kind.ORIGINATED) + signed

    async def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Sign, mark and send through the upstream; raises like UpstreamPool.send
        (TemporaryError for 4xx and faults, PermanentError for 5xx)."""
        await self.deliver(sender, recipients, self.originated(data))

    async def deliver(self, sender: str, recipients: list[str], originated: bytes) -> None:
        """Send what :meth:`originated` made (in a worker thread, say); raises like
        :meth:`send`."""
        utf8 = not (
            originated.isascii() and sender.isascii() and all(r.isascii() for r in recipients)
        )
        await self.upstream.send(sender, recipients, originated, smtputf8=utf8)
