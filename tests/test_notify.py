"""The notification: whatever the original's headers hold, it can be written and parsed."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway import notify
from gateway.envelope.keys import Link
from gateway.envelope.seal import Grant

LINK = Link(bytes(range(16)), bytes(range(32)))


def build(data: bytes, recipient: str = "bob@example.net", sender: str = "a@example.org") -> bytes:
    facts = notify.Facts.of(sender, data, "https://portal.example.org", "sealgate@example.org")
    grant = Grant(recipient, "00" * 16, LINK)
    return facts.notification(grant, datetime(2026, 12, 28, tzinfo=UTC), "sealgate.example.org")


@given(name=st.text(max_size=200), message_id=st.text(max_size=300))
def test_any_display_name_or_message_id_yields_a_notification(name, message_id):
    data = (
        "From: " + name.replace("\r", "").replace("\n", "") + " <a@example.org>\r\n"
        "Message-ID: " + message_id.replace("\r", "").replace("\n", "") + "\r\n\r\nbody\r\n"
    ).encode("utf-8", "surrogateescape")
    parsed = email.message_from_bytes(build(data), policy=email.policy.default)
    assert parsed["To"] == "bob@example.net"
    assert LINK.url("https://portal.example.org") in parsed.get_body(("plain",)).get_content()


def test_the_original_message_id_threads_the_notification():
    data = b"From: Alice <a@example.org>\r\nMessage-ID: <m1@example.org>\r\n\r\nx\r\n"
    parsed = email.message_from_bytes(build(data), policy=email.policy.default)
    assert parsed["In-Reply-To"] == "<m1@example.org>"
    assert parsed["From"].addresses[0].display_name == "Alice via Sealgate"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Subject"] == "Protected message from Alice"


def test_a_broken_message_id_is_left_out():
    data = b"From: a@example.org\r\nMessage-ID: not an id\r\n\r\nx\r\n"
    parsed = email.message_from_bytes(build(data), policy=email.policy.default)
    assert parsed["In-Reply-To"] is None


def test_international_addresses_are_written_as_utf8_not_encoded_words():
    raw = build(b"From: a@example.org\r\n\r\nx\r\n", recipient="zoë@例え.jp")
    assert "To: zoë@例え.jp".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n")[0].split(b"To:")[1].split(b"\r\n")[0]
