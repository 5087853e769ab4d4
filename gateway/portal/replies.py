"""Secure replies: taken from the browser encrypted, delivered to the original sender.

The browser encrypts a reply to the organisation's reply key
(gateway.envelope.reply); the portal keeps the ciphertext in the store until
it is delivered. Delivery decrypts it in memory, writes a normal message to
the original sender (threaded on the original's Message-ID, marked as a
secure reply) and hands it to the upstream MTA, DKIM-signed. Once the
upstream took it, the ciphertext is deleted; a transient failure is retried
with backoff, a permanent one is recorded and the ciphertext deleted too.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from gateway.envelope.reply import MAGIC, ReplyError, ReplyKey
from gateway.errors import PermanentError, TemporaryError
from gateway.logsetup import event
from gateway.notify import Notifier
from gateway.store import Store, StoreError
from gateway.store.portalstate import PortalState
from gateway.store.replies import QueuedReply

log = logging.getLogger("sealgate.portal")

Send = Callable[[str, list[str], bytes], Awaitable[None]]
_ID = slice(len(MAGIC), len(MAGIC) + 16)
_MAX_ATTEMPTS = 12  # with doubling backoff from two minutes: several days
_LEASE = timedelta(minutes=10)  # a claimed reply is not claimed again before this


def reply_id(blob: bytes) -> str:
    """The reply id the browser chose (its 16 bytes after the magic), as hex; ValueError
    when the blob does not even start like a reply."""
    if len(blob) < _ID.stop or not blob.startswith(MAGIC):
        raise ValueError("not a secure reply")
    return blob[_ID].hex()


class ReplyDesk:
    def __init__(
        self,
        store: Store,
        state: PortalState,
        key: Callable[[], ReplyKey],
        notifier: Callable[[], Notifier],
        send: Send,
        *,
        from_address: str,
        hostname: str,
        max_plaintext: int,
    ) -> None:
        self.store = store
        self.state = state
        self.key = key
        self.notifier = notifier
        self.send = send
        self.from_address = from_address
        self.hostname = hostname
        self.max_plaintext = max_plaintext
        self._lock = asyncio.Lock()  # one delivery round at a time in this process

    async def deliver_due(self) -> int:
        """Deliver every queued reply that is due, one claimed at a time; the number delivered."""
        async with self._lock:
            delivered = 0
            while True:
                reply = await asyncio.to_thread(
                    self.state.replies.claim_reply, datetime.now(UTC), _LEASE
                )
                if reply is None:
                    return delivered
                delivered += await self._deliver(reply)

    async def _deliver(self, reply: QueuedReply) -> int:
        try:
            message, message_id, to = await asyncio.to_thread(self._compose, reply)
            await self.send(self.from_address, [to], message)
        except (ReplyError, PermanentError, ValueError) as error:
            # ValueError: the notifier cannot write it (an address that cannot be written).
            reason = str(error.reply) if isinstance(error, PermanentError) else str(error)
            await asyncio.to_thread(
                self.state.replies.reply_done, reply.reply_id, "failed", reason
            )
            event(log, logging.WARNING, "secure reply refused", reply=reply.reply_id, error=reason)
            return 0
        except (TemporaryError, StoreError, OSError) as error:
            await self._retry(reply, str(error))
            return 0
        except Exception as error:  # a bug must not stop the round, nor retry for ever
            log.exception("secure reply failed", extra={"fields": {"reply": reply.reply_id}})
            await self._retry(reply, type(error).__name__)
            return 0
        try:
            await asyncio.to_thread(self._delivered, reply, message_id)
        except StoreError as error:  # delivered, but not recorded: the lease keeps it from
            event(log, logging.ERROR, "secure reply delivered, not recorded",  # a quick resend
                  reply=reply.reply_id, error=str(error))  # fmt: skip
        event(log, logging.INFO, "secure reply delivered", reply=reply.reply_id,
              envelope=reply.envelope_id)  # fmt: skip
        return 1

    def _compose(self, reply: QueuedReply) -> tuple[bytes, str, str]:
        """The message for the original sender, its Message-ID, and the sender's address."""
        content = self.key().open(reply.blob, max_plaintext=self.max_plaintext)
        if content.in_reply_to != reply.envelope_id:
            raise ReplyError("the reply names another envelope than the link it came through")
        envelope = self.store.get(reply.envelope_id)
        if envelope is None or not envelope.sender:
            raise ReplyError("the original sender is unknown")
        reader = next((r for r in envelope.readers if r.reader_id == reply.reader_id), None)
        if reader is None:
            raise ReplyError("the reader is unknown")
        notifier = self.notifier()
        message_id = email.utils.make_msgid("reply", domain=self.hostname)
        original = envelope.message_id
        data = notifier.secure_reply(
            to=envelope.sender,
            reader=reader.address,
            subject=content.subject,
            text=content.text,
            attachments=[(a.filename, a.content_type, a.data) for a in content.attachments],
            in_reply_to=original,
            references=[original] if original else [],
            envelope_id=envelope.envelope_id,
            message_id=message_id,
            language=notifier.language(None, envelope.sender),
        )
        return data, message_id, envelope.sender

    def _delivered(self, reply: QueuedReply, message_id: str) -> None:
        # Answering this reply keeps the conversation protected (policy: protected_thread).
        self.state.threads.add_thread([message_id], reply.envelope_id, datetime.now(UTC))
        self.state.replies.reply_done(reply.reply_id, "delivered")

    async def _retry(self, reply: QueuedReply, reason: str) -> None:
        if reply.attempts + 1 >= _MAX_ATTEMPTS:
            await asyncio.to_thread(
                self.state.replies.reply_done, reply.reply_id, "failed", "gave up"
            )
            event(log, logging.ERROR, "secure reply undeliverable", reply=reply.reply_id)
            return
        wait = timedelta(minutes=2**reply.attempts)
        await asyncio.to_thread(
            self.state.replies.reply_retry, reply.reply_id, datetime.now(UTC) + wait
        )
        event(log, logging.WARNING, "secure reply deferred", reply=reply.reply_id,
              error=reason, retry_in=int(wait.total_seconds()))  # fmt: skip
