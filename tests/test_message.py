"""Reading header fields from raw bytes, without re-serialising anything."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.mail import message

RAW = (
    b"Received: from a\r\n\tby b; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID:\r\n <folded@example.org>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"X-Empty:\r\n"
    b"\r\n"
    b"Message-ID: <in-body@example.org>\r\n"
)


def test_header_block_stops_at_the_empty_line():
    assert message.header_block(RAW).endswith(b"X-Empty:\r\n")
    assert message.header_block(b"\r\nbody only\r\n") == b""
    assert message.header_block(b"Subject: no body\r\n") == b"Subject: no body\r\n"


def test_fields_are_unfolded_with_offsets():
    found = message.fields(message.header_block(RAW))
    assert [name for name, _, _ in found] == ["received", "message-id", "subject", "x-empty"]
    name, value, offset = found[1]
    assert value == b" <folded@example.org>"
    assert RAW[offset:].startswith(b"Message-ID:")


def test_first_value_reads_only_the_header():
    assert message.first_value(RAW, "message-id") == "<folded@example.org>"
    assert message.first_value(RAW, "X-Empty") == ""
    assert message.first_value(RAW, "In-Reply-To") is None


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data):
    header = message.header_block(data)
    assert data.startswith(header)
    for _, _, offset in message.fields(header):
        assert 0 <= offset < len(header)
    message.first_value(data, "message-id")
