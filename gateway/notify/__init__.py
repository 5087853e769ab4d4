"""Notifications: the message that tells a protected recipient where to read.

One plain-text notification per guest reader, carrying the reader's personal
link ``PORTAL/m/<link id>#<secret>``. It is the only place a link secret is
ever written, and it is written only into the message handed to the upstream
MTA. It never repeats the protected subject or content.

What the notification takes from the original message (the sender's display
name, its Message-ID for threading) is cleaned first: a control character in
a display name must not make the notification impossible to write, or the
message would be deferred for ever.

This is the minimal notifier the envelope needs end to end; templates in
Dutch and English, branding and DKIM signing arrive with the portal.
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

from gateway import message
from gateway.envelope.seal import Grant

_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}>")  # printable ASCII without < > or blanks
_MAX_NAME = 78


@dataclass(frozen=True)
class Facts:
    """What every notification of one message shares, cleaned and checked."""

    sender: str  # the envelope sender
    sender_name: str | None
    in_reply_to: str | None
    portal: str
    from_address: str

    @classmethod
    def of(cls, sender: str, data: bytes, portal: str, from_address: str) -> Facts:
        name, _ = email.utils.parseaddr(message.first_value(data, "from") or "")
        message_id = (message.first_value(data, "message-id") or "").strip()
        return cls(
            sender=sender,
            sender_name=display_name(name),
            in_reply_to=message_id if _MESSAGE_ID.fullmatch(message_id) else None,
            portal=portal,
            from_address=from_address,
        )

    def notification(self, grant: Grant, expires: datetime, hostname: str) -> bytes:
        """The notification for one reader; ValueError if its address cannot be written."""
        shown = self.sender_name or self.sender or "a sender"
        who = f"{self.sender_name} <{self.sender}>" if self.sender_name else shown
        addresses = (grant.address, self.sender, self.from_address)
        msg = EmailMessage(policy=SMTP if all(a.isascii() for a in addresses) else SMTPUTF8)
        msg["From"] = email.utils.formataddr((f"{shown} via Sealgate", self.from_address))
        msg["To"] = grant.address
        if self.sender:
            msg["Reply-To"] = self.sender
        msg["Subject"] = f"Protected message from {shown}"
        msg["Date"] = email.utils.format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = email.utils.make_msgid("notify", domain=hostname)
        if self.in_reply_to:
            msg["In-Reply-To"] = self.in_reply_to
            msg["References"] = self.in_reply_to
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(
            f"{who} sent you a protected message.\n\n"
            f"Open it here:\n{grant.link.url(self.portal)}\n\n"
            "This link is personal: do not forward it. "
            f"The message can be read until {expires:%Y-%m-%d %H:%M} UTC.\n",
            charset="utf-8",
            cte="quoted-printable",
        )
        return msg.as_bytes()


def display_name(name: str) -> str | None:
    """A display name safe to put in a header: no control or line-breaking characters."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in name
    )
    kept = " ".join(kept.split())[:_MAX_NAME].strip()
    return kept or None
