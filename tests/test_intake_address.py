"""The fast path for plain addresses in MAIL and RCPT gives what aiosmtpd's parser gives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.intake import server
from gateway.intake.access import Credentials
from gateway.intake.capacity import Connections
from gateway.intake.server import Limits, MemoryBudget, SealgateSMTP


@pytest.fixture(scope="module")
def protocol() -> SealgateSMTP:
    async def make() -> SealgateSMTP:
        cfg = config.parse({})
        limits = Limits(cfg.smtp, Credentials(cfg.smtp.auth), MemoryBudget(1 << 20), Connections())
        return SealgateSMTP(object(), limits, None)

    return asyncio.run(make())


PIECES = ["a", "Z", "0", ".", "@", "<", ">", " ", "\t", "(", ")", '"', "-", "+", "_", "=",
          "~", "é", "[", "]", ",", ";", ":", "\\", "SIZE=10", "BODY=8BITMIME", "b.example"]  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
@example("<alice@example.org>")
@example("<alice@example.org> SIZE=1000 BODY=8BITMIME")
@example("<a..b@example.org>  SIZE=1")
@example("<a@b.c>SIZE=1")
@example("<a@b.c> (comment) SIZE=1")
@example("<a@b..c>")
@example(" <a@b.c>")
@example("<>")
def test_plain_addresses_parse_as_aiosmtpd_parses_them(protocol: SealgateSMTP, arg: str):
    assert outcome(protocol._getaddr, arg) == outcome(lambda a: SMTP._getaddr(protocol, a), arg)


def outcome(parse: Callable[[str], object], arg: str) -> object:
    """What parsing gives, or which exception (aiosmtpd's parser raises on some input)."""
    try:
        return parse(arg)
    except Exception as error:  # noqa: BLE001 (compared, not hidden)
        return type(error)


def test_the_local_part_limit_holds_on_the_fast_path(protocol: SealgateSMTP, monkeypatch):
    assert server._PLAIN_ADDRESS.match("<abcdef@example.org> SIZE=1")  # the fast path it is
    monkeypatch.setattr(protocol, "local_part_limit", 5)
    assert protocol._getaddr("<abcdef@example.org>") == (None, None)
    assert protocol._getaddr("<abcde@example.org>") == ("abcde@example.org", "")
