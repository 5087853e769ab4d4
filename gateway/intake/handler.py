"""aiosmtpd hooks: SMTP commands in, one call of the pipeline, the reply out.

The handler checks who may submit (never an open relay), keeps the envelope
exactly as received, and after DATA hands a :class:`Transaction` to the
pipeline. It writes the one log line per transaction. It knows nothing about
what the pipeline does with the message.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from gateway.intake.access import in_networks
from gateway.intake.server import (
    NO_MEMORY,
    XFORWARD_ATTRIBUTES,
    SealgateEnvelope,
    SealgateSession,
    SealgateSMTP,
    new_queue_id,
    peer_of,
)
from gateway.logsetup import event
from gateway.mail import message
from gateway.pipeline import Client, Pipeline, Result, Transaction, XForward

log = logging.getLogger("sealgate.intake")

RELAY_DENIED = (
    "550 5.7.1 Relay access denied: authenticate, or submit from a network "
    "listed in smtp.allow_networks"
)
TLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BAD_SENDER = (
    "553 5.1.7 Sender address refused: it is not valid UTF-8 or contains control characters"
)
BAD_RECIPIENT = (
    "553 5.1.3 Recipient address refused: it is not valid UTF-8 or contains control characters"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IntakeHandler:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def __dir__(self) -> list[str]:
        """The hooks only: aiosmtpd looks them up for every new connection with
        ``dir()`` and ``inspect.getmembers()`` (see SealgateSMTP.__dir__)."""
        return ["handle_DATA", "handle_EHLO", "handle_MAIL", "handle_RCPT"]

    async def handle_EHLO(
        self,
        server: SealgateSMTP,
        session: SealgateSession,
        envelope: SealgateEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        keywords = [line[4:] for line in responses[1:] if line[4:] != "HELP"]
        if not server.limits.credentials.enabled:
            keywords = [k for k in keywords if not k.startswith("AUTH")]
        keywords += ["PIPELINING", "ENHANCEDSTATUSCODES"]
        if server.xforward_allowed():
            keywords.append("XFORWARD " + " ".join(XFORWARD_ATTRIBUTES))
        lines = [responses[0][4:], *keywords]
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_MAIL(
        self,
        server: SealgateSMTP,
        session: SealgateSession,
        envelope: SealgateEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        settings = server.limits.settings
        client = peer_of(session)[0]
        if not (session.authenticated or in_networks(client, settings.allow_networks)):
            event(log, logging.WARNING, "relay denied", client=client, sender=address)
            return RELAY_DENIED
        if settings.require_tls and session.ssl is None:
            return TLS_REQUIRED
        if not passable(address):
            return BAD_SENDER
        # aiosmtpd has already refused a SIZE above the limit (552 5.3.4).
        if not server.reserve(_declared_size(mail_options)):
            return NO_MEMORY
        envelope.queue_id = new_queue_id()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SealgateSMTP,
        session: SealgateSession,
        envelope: SealgateEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not passable(address):
            return BAD_RECIPIENT
        if len(envelope.rcpt_tos) >= server.limits.settings.max_recipients:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(
        self, server: SealgateSMTP, session: SealgateSession, envelope: SealgateEnvelope
    ) -> str:
        started = time.monotonic()
        data = envelope.original_content or b""
        tx = Transaction(
            queue_id=envelope.queue_id,
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            client=_client(session),
            received_at=datetime.now(UTC),
            smtputf8=envelope.smtp_utf8,
            body_8bit="BODY=8BITMIME" in envelope.mail_options,
        )
        session.xforward.clear()
        result = await self.pipeline.handle(tx)
        _log_transaction(tx, result, time.monotonic() - started)
        return str(result.reply)


def passable(address: str) -> bool:
    """Whether ``address`` can be stored, sealed for and passed on as it is.

    aiosmtpd keeps octets that are not UTF-8 as lone surrogates; such an
    address, or one with a control character (which RFC 5321 4.1.2 allows in
    no address), would fail only after DATA, in the store or at the upstream,
    as a 451 the client retries for days. Refused at MAIL or RCPT, the 553 is
    permanent and concerns that address alone.
    """
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _CONTROL.search(address)


def _declared_size(mail_options: list[str]) -> int:
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _client(session: SealgateSession) -> Client:
    address, port = peer_of(session)
    xforward = None
    if session.xforward:
        known = {f.name for f in fields(XForward)}
        xforward = XForward(**{k: v for k, v in session.xforward.items() if k in known})
    return Client(
        address=address,
        port=port,
        helo=session.host_name or "",
        tls=session.ssl is not None,
        login=session.auth_data if isinstance(session.auth_data, str) else None,
        xforward=xforward,
    )


def _log_transaction(tx: Transaction, result: Result, elapsed: float) -> None:
    level = logging.INFO if result.reply.is_success else logging.WARNING
    if not log.isEnabledFor(level):
        return
    fields_: dict[str, Any] = {
        "queue_id": tx.queue_id,
        "client": tx.client.address,
        "helo": tx.client.helo,
    }
    if tx.client.xforward is not None and tx.client.xforward.addr:
        fields_["orig_client"] = tx.client.xforward.addr
    if tx.client.login:
        fields_["user"] = tx.client.login
    fields_.update(
        message_id=message.first_value(tx.data, "Message-ID"),
        sender=tx.mail_from,
        nrcpt=len(tx.rcpt_tos),
        size=len(tx.data),
        outcome=result.logged,
        reply=str(result.reply),
    )
    if result.upstream_reply is not None:
        fields_["upstream"] = str(result.upstream_reply)
    if result.refused:
        fields_["refused"] = {address: str(reply) for address, reply in result.refused.items()}
    if result.detail:
        fields_["detail"] = result.detail
    if result.decisions:
        fields_["decisions"] = {
            address: f"{d.action} ({', '.join(dict.fromkeys(r.rule for r in d.reasons))})"
            if d.reasons
            else d.action
            for address, d in result.decisions.items()
        }
    if result.envelope_id is not None:
        fields_["envelope"] = result.envelope_id
        fields_["protected"] = result.protected
    fields_["ms"] = round(elapsed * 1000, 1)
    event(log, level, "transaction", **fields_)


# aiosmtpd reads handle_EHLO's signature for every new connection to choose between
# its two calling conventions; computed once here, inspect.signature returns it at once.
IntakeHandler.handle_EHLO.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    IntakeHandler.handle_EHLO
)
