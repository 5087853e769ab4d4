"""Helpers for tests of protected mail: build messages, find links, open envelopes."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from gateway.envelope import keys, opener
from gateway.store import Store
from tests.support.sink import Received

_LINK = re.compile(r"https?://[^\s]+/m/[A-Za-z0-9_-]+#[A-Za-z0-9_-]+")


def protected_message(
    subject: str = "[secure] Quarterly figures",
    body: str = "Hello Bob,\nthe figures are attached.\n",
    attachments: dict[str, bytes] | None = None,
    *,
    sender: str = "Alice Example <alice@example.org>",
    to: str = "bob@example.net",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<figures-1@example.org>"
    msg["Date"] = "Sat, 28 Nov 2026 10:00:00 +0100"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, data in (attachments or {}).items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


def link_in(received: Received) -> keys.Link:
    """The portal link in a notification that reached the upstream."""
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None, "the notification has no text part"
    match = _LINK.search(body.get_content())
    assert match, "no portal link in the notification"
    return keys.Link.parse(match.group(0))


def notifications(messages: list[Received]) -> dict[str, Received]:
    """Notifications by recipient, among what reached the upstream."""
    found = {}
    for item in messages:
        if b"\r\nAuto-Submitted: auto-generated" in item.data and b"/m/" in item.data:
            (recipient,) = item.rcpt_tos
            found[recipient] = item
    return found


def open_with_link(store: Store, link: keys.Link) -> tuple[dict[str, object], dict[str, bytes]]:
    """The manifest and the attachments by file name, opened as the link's holder."""
    unlocked = opener.unlock_with_link(store, link)
    manifest = opener.read_manifest(store, unlocked)
    attachments = {
        entry["filename"]: b"".join(opener.read_part(store, unlocked, entry["part"]))
        for entry in manifest["attachments"]  # type: ignore[union-attr]
    }
    return manifest, attachments
