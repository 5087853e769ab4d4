"""Delivery status notifications for recipients the upstream or the policy refused.

Sealgate answers a whole SMTP transaction with one reply, but the upstream
answers per recipient. When it accepts some recipients and refuses others for
good, Sealgate delivers to the accepted ones, answers 250, and tells the sender
about the others with a DSN (RFC 3464), as any MTA would: a 250 must never
hide a recipient that was not delivered.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage, Message

from gateway.errors import SMTPReply


def build(
    *,
    reporting_host: str,
    queue_id: str,
    sender: str,
    refused: Mapping[str, SMTPReply],
    remote_mta: str,
    original_header: bytes,
    arrival: datetime,
    by_policy: Collection[str] = (),
) -> bytes:
    """A multipart/report DSN to ``sender`` listing each refused recipient.

    ``by_policy`` names the recipients Sealgate's own policy refused or held
    (their reply carries the administrator's words); the upstream refused the rest.
    """
    utf8 = not all(address.isascii() for address in [sender, *refused])
    message = EmailMessage(policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP)
    message["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_host}>"
    message["To"] = sender
    message["Subject"] = "Undelivered Mail Returned to Sender"
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-ID"] = email.utils.make_msgid("dsn." + queue_id, domain=reporting_host)
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(_explanation(reporting_host, refused, by_policy))
    message.make_mixed()
    message.set_type("multipart/report")
    message.set_param("report-type", "delivery-status")
    message.attach(
        _status_part(reporting_host, queue_id, refused, remote_mta, arrival, utf8, by_policy)
    )
    headers = EmailMessage(policy=message.policy)
    headers.set_content(original_header.decode("utf-8", "replace"))
    headers.replace_header("Content-Type", "text/rfc822-headers")
    message.attach(headers)
    return message.as_bytes()


def _explanation(
    reporting_host: str, refused: Mapping[str, SMTPReply], by_policy: Collection[str]
) -> str:
    lines = [f"This is the mail system at host {reporting_host}.", ""]
    upstream = {a: r for a, r in refused.items() if a not in by_policy}
    policy = {a: r for a, r in refused.items() if a in by_policy}
    if policy:
        lines += [
            "Your organisation's mail policy did not let your message go to the",
            "recipients below, for the reason given:",
            "",
        ]
        lines += [f"<{address}>: {reply.text}" for address, reply in policy.items()]
        lines.append("")
    if upstream:
        lines += [
            "Your message could not be delivered to the recipients below: the mail",
            "server they depend on refused them.",
            "",
        ]
        lines += [f"<{address}>: {reply}" for address, reply in upstream.items()]
        lines.append("")
    lines.append("The other recipients, if any, did receive it.")
    return "\n".join(lines) + "\n"


def _status_part(
    reporting_host: str,
    queue_id: str,
    refused: Mapping[str, SMTPReply],
    remote_mta: str,
    arrival: datetime,
    utf8: bool,
    by_policy: Collection[str],
) -> EmailMessage:
    address_type = "utf-8" if utf8 else "rfc822"
    per_message = _fields(
        ("Reporting-MTA", f"dns; {reporting_host}"),
        ("X-Sealgate-Queue-ID", queue_id),
        ("Arrival-Date", email.utils.format_datetime(arrival)),
    )
    per_recipient = [
        _fields(
            ("Final-Recipient", f"{address_type}; {address}"),
            ("Action", "failed"),
            ("Status", reply.enhanced),
            *([] if address in by_policy else [("Remote-MTA", f"dns; {remote_mta}")]),
            ("Diagnostic-Code", f"smtp; {reply}"),
        )
        for address, reply in refused.items()
    ]
    part = EmailMessage()
    part["Content-Type"] = "message/global-delivery-status" if utf8 else "message/delivery-status"
    part.set_payload([per_message, *per_recipient])
    return part


def _fields(*pairs: tuple[str, str]) -> Message:
    block = Message(policy=email.policy.SMTPUTF8)
    for name, value in pairs:
        block[name] = value
    return block
