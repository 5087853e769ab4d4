"""One message's way through Sealgate, from the bytes received to the reply owed.

    parse -> authenticate -> decide -> act -> answer

The SMTP front door (gateway.intake) hands over a :class:`Transaction` and
sends back whatever :class:`Result` comes out. This module is the only place
that orchestrates a message; the services it calls (upstream, loop marker,
and later mailauth, policy, envelope, store, notify) know nothing of SMTP
sessions or of each other.

Today every recipient is relayed. The places where mail authentication,
policy decisions, sealing and notifications plug in are marked below.

The rule that binds every step: 250 only when everything owed for the message
is accepted by the upstream; a transient fault anywhere answers 451 so that the
sending MTA keeps the mail (docs/relay.md has the full reply mapping).
"""

from __future__ import annotations

import email.utils
import logging
from dataclasses import dataclass, field
from datetime import datetime

from gateway import dsn, message
from gateway.errors import INTERNAL_ERROR, GatewayError, PermanentError, SMTPReply
from gateway.loopmarker import RECEIVED_TAG, LoopMarker
from gateway.upstream import UpstreamPool

log = logging.getLogger("sealgate.pipeline")


@dataclass(frozen=True)
class XForward:
    """What the MTA in front said about its own client (Postfix XFORWARD)."""

    name: str | None = None
    addr: str | None = None
    port: str | None = None
    proto: str | None = None
    helo: str | None = None
    ident: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Client:
    """Facts about the SMTP client that handed us the message."""

    address: str
    port: int
    helo: str
    tls: bool = False
    login: str | None = None
    xforward: XForward | None = None


@dataclass(frozen=True)
class Transaction:
    """One received message with its envelope, exactly as it arrived."""

    queue_id: str
    mail_from: str  # "" for the null sender <>
    rcpt_tos: tuple[str, ...]
    data: bytes
    client: Client
    received_at: datetime
    smtputf8: bool = False
    body_8bit: bool = False


@dataclass
class Result:
    """The reply owed to the client, and what happened, for the transaction log."""

    reply: SMTPReply
    outcome: str
    upstream_reply: SMTPReply | None = None
    refused: dict[str, SMTPReply] = field(default_factory=dict)
    detail: str = ""


class Pipeline:
    def __init__(
        self, upstream: UpstreamPool, marker: LoopMarker, hostname: str, max_hops: int
    ) -> None:
        self.upstream = upstream
        self.marker = marker
        self.hostname = hostname
        self.max_hops = max_hops

    async def handle(self, tx: Transaction) -> Result:
        """Process one message; never raises, every failure becomes a reply."""
        try:
            return await self._handle(tx)
        except GatewayError as error:
            outcome = "deferred" if error.is_temporary else "rejected"
            return Result(error.reply, outcome, detail=error.detail)
        except Exception:
            log.exception("unexpected error", extra={"fields": {"queue_id": tx.queue_id}})
            return Result(INTERNAL_ERROR, "deferred", detail="internal error")

    async def _handle(self, tx: Transaction) -> Result:
        loop = self.marker.check(tx.data)
        if loop.hops >= self.max_hops:
            raise PermanentError(
                554, "5.4.6", "Routing loop detected: message passed Sealgate too often"
            )
        if loop.valid:
            # Already processed by Sealgate once: relay exactly as it is.
            return await self._relay(tx, self._received(tx) + tx.data, outcome="relayed-loop")

        # authenticate: SPF, DKIM, DMARC and ARC verdicts (gateway.mailauth) go here.
        # decide: a policy Decision per recipient (gateway.policy) goes here;
        #   until then every recipient is relayed.
        # act: recipients to protect are sealed (gateway.envelope, gateway.store)
        #   and notified (gateway.notify) before the relay below.

        marked = self.marker.header(tx.data) + tx.data
        return await self._relay(tx, self._received(tx) + marked, outcome="relayed")

    async def _relay(self, tx: Transaction, outgoing: bytes, *, outcome: str) -> Result:
        transaction = await self.upstream.open(
            tx.mail_from,
            tx.rcpt_tos,
            smtputf8=tx.smtputf8,
            body_8bit=tx.body_8bit,
            size=len(outgoing),
        )
        async with transaction:
            if transaction.refused:
                await self._bounce(tx, transaction.refused)
                outcome = "relayed-partly"
            upstream_reply = await transaction.send_data(outgoing)
        reply = SMTPReply(250, "2.0.0", f"Ok: queued as {tx.queue_id}")
        return Result(reply, outcome, upstream_reply=upstream_reply, refused=transaction.refused)

    async def _bounce(self, tx: Transaction, refused: dict[str, SMTPReply]) -> None:
        """Tell the sender about recipients the upstream refused for good.

        Sent before the message itself: if the bounce cannot be sent, the
        whole transaction is deferred and nothing was delivered twice.
        A null sender gets no bounce (RFC 5321 6.1 and 4.5.5).
        """
        if not tx.mail_from:
            log.warning(
                "recipients refused, no bounce to the null sender",
                extra={"fields": {"queue_id": tx.queue_id, "refused": list(refused)}},
            )
            return
        bounce = dsn.build(
            reporting_host=self.hostname,
            queue_id=tx.queue_id,
            sender=tx.mail_from,
            refused=refused,
            remote_mta=self.upstream.settings.host,
            original_header=message.header_block(tx.data),
            arrival=tx.received_at,
        )
        bounce = self.marker.header(bounce) + bounce
        await self.upstream.send("", [tx.mail_from], bounce, smtputf8=not tx.mail_from.isascii())

    def _received(self, tx: Transaction) -> bytes:
        """Our Received trace field (RFC 5321 4.4), prepended to what we relay."""
        client = tx.client
        protocol = (
            ("UTF8SMTP" if tx.smtputf8 else "ESMTP")
            + ("S" if client.tls else "")
            + ("A" if client.login else "")
        )
        address = f"IPv6:{client.address}" if ":" in client.address else client.address
        stamp = email.utils.format_datetime(tx.received_at)
        helo = "".join(ch for ch in client.helo if ch.isprintable() and ch not in "()")[:200]
        return (
            f"Received: from {helo or 'unknown'} ([{address}])\r\n"
            f"\tby {self.hostname} {RECEIVED_TAG.decode()} with {protocol} id {tx.queue_id};\r\n"
            f"\t{stamp}\r\n"
        ).encode("utf-8", "surrogateescape")
