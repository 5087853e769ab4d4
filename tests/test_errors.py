"""Errors carry their SMTP reply; the unknown is temporary and says nothing."""

from __future__ import annotations

import pytest

from gateway.errors import (
    INTERNAL_ERROR,
    PermanentError,
    SMTPReply,
    TemporaryError,
    reply_for,
    safe_text,
)
from gateway.outbound.upstream import reply_of


def test_errors_carry_their_reply():
    temporary = TemporaryError(451, "4.4.1", "Upstream unreachable", detail="ECONNREFUSED")
    assert str(temporary.reply) == "451 4.4.1 Upstream unreachable"
    assert temporary.is_temporary
    permanent = PermanentError(554, "5.4.6", "Routing loop detected")
    assert reply_for(permanent) == SMTPReply(554, "5.4.6", "Routing loop detected")
    assert not permanent.is_temporary


def test_unknown_errors_are_temporary_and_leak_nothing():
    reply = reply_for(ValueError("/var/lib/sealgate/secret.key: bad"))
    assert reply == INTERNAL_ERROR
    assert str(reply) == "451 4.3.0 Internal error; please try again later"
    assert reply.is_temporary


@pytest.mark.parametrize(
    ("make", "args"),
    [
        (TemporaryError, (550, "5.0.0", "x")),
        (PermanentError, (451, "4.0.0", "x")),
        (TemporaryError, (451, "5.0.0", "x")),
        (TemporaryError, (451, "4.x.0", "x")),
    ],
)
def test_inconsistent_codes_are_programming_errors(make, args):
    with pytest.raises(ValueError):
        make(*args)


def test_safe_text_keeps_printable_ascii_only():
    assert safe_text("ok\r\n 250 injected\x00\x1b[1m done") == "ok 250 injected [1m done"
    assert safe_text("héllo wörld") == "h llo w rld"
    assert len(safe_text("x" * 1000)) == 200


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (
            550,
            "5.1.1 <bob@example.net>: Recipient address rejected",
            "550 5.1.1 <bob@example.net>: Recipient address rejected",
        ),
        (451, "Try again", "451 4.0.0 Try again"),
        (550, "4.1.1 wrong class", "550 5.0.0 4.1.1 wrong class"),
        (554, "", "554 5.0.0 (no text)"),
        (250, "2.0.0 Ok: queued as 4XyZ\nsecond line", "250 2.0.0 Ok: queued as 4XyZ second line"),
    ],
)
def test_upstream_replies_are_parsed(code, text, expected):
    assert str(reply_of(code, text)) == expected
