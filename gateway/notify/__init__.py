"""Notifications: the message that tells a protected recipient where to read.

One plain-text notification per guest reader, carrying the reader's personal
link ``PORTAL/m/<link id>#<secret>``. It is the only place a link secret is
ever written, and it is written only into the message handed to the upstream
MTA. It never repeats the protected subject or content.

This is the minimal notifier the envelope needs end to end; templates in
Dutch and English, branding and DKIM signing arrive with the portal.
"""

from __future__ import annotations

import email.utils
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP

from gateway.envelope.keys import Link


def notification(
    *,
    sender: str,
    sender_name: str | None,
    recipient: str,
    link: Link,
    portal: str,
    from_address: str,
    expires: datetime,
    in_reply_to: str | None,
    hostname: str,
) -> bytes:
    """The notification for one recipient, as bytes ready for the upstream."""
    who = f"{sender_name} <{sender}>" if sender_name else sender or "Someone"
    display = f"{sender_name or sender or 'Sealgate'} via Sealgate"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.utils.formataddr((display, from_address))
    msg["To"] = recipient
    if sender:
        msg["Reply-To"] = sender
    msg["Subject"] = f"Protected message from {sender_name or sender or 'a sender'}"
    msg["Date"] = email.utils.format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = email.utils.make_msgid("notify", domain=hostname)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"{who} sent you a protected message.\n\n"
        f"Open it here:\n{link.url(portal)}\n\n"
        "This link is personal: do not forward it. "
        f"The message can be read until {expires:%Y-%m-%d %H:%M} UTC.\n",
        charset="utf-8",
        cte="quoted-printable",
    )
    return msg.as_bytes()
