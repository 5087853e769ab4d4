"""DATA as Sealgate reads it (gateway.intake.data), against aiosmtpd's own reader.

For data of CRLF lines within its limits, Sealgate must keep exactly what aiosmtpd 1.4's
``SMTP.smtp_DATA`` keeps (``original_content``, and ``content`` with ``decode_data=False``):
checked over real sockets against a stock aiosmtpd server for tricky inputs sent in pieces,
and with hypothesis against a model of aiosmtpd's reader for any split of the stream
(a StreamReader with a small limit makes chunk boundaries fall everywhere). Where Sealgate
deliberately differs (a bare CR or LF, a NUL: refused; long lines: accepted), the model
is the regular expression the reader used before.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.intake.access import Credentials
from gateway.intake.capacity import Connections
from gateway.intake.data import DataReceiver, read_chunk, unstuffed
from gateway.intake.server import Limits, MemoryBudget, SealgateSMTP
from tests.support.gateway import wait_for
from tests.support.loopthread import LoopThread
from tests.support.smtpraw import RawSMTP

END = b"\r\n.\r\n"
LIMIT = 300_000  # the size limit of both servers over sockets
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")  # the check the reader made before
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stuffed(lines: list[bytes]) -> bytes:
    """``lines`` as a client sends them after DATA (RFC 5321 4.5.2), with the end of data."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def aiosmtpd_model(raw: bytes) -> tuple[bytes, bytes]:
    """What aiosmtpd 1.4's smtp_DATA keeps of ``raw`` and what it leaves unread.

    It reads lines up to CRLF until the line ".CRLF" and removes one leading dot from
    each line (smtp.py, "Remove extraneous carriage returns and de-transparency").
    """
    end = 0 if raw.startswith(b".\r\n") else raw.index(END) + 2
    lines = raw[:end].split(b"\r\n")[:-1]
    content = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return content, raw[end + 3 :]


async def receive(pieces: list[bytes], limit: int) -> tuple[DataReceiver, bytes]:
    """Feed ``pieces`` one by one to a StreamReader of ``limit`` and read DATA from it as the
    server does; the receiver and what the reader still holds after the end of data."""
    reader = asyncio.StreamReader(limit=limit)

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        reader.feed_eof()

    feeding = asyncio.ensure_future(feed())
    receiver = DataReceiver()
    while not receiver.done:
        chunk = await read_chunk(reader)
        assert chunk is not None, "the stream ended before the end of data"
        receiver.feed(chunk)
    await feeding
    return receiver, await reader.read()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


# -- the reader against a model of aiosmtpd's ------------------------------------------------

_TOKEN = st.sampled_from([b".", b"a", b" ", b"\t", b"\xc3\xa9", b"\xff", b"From: x"])
_LINES = st.lists(st.lists(_TOKEN, max_size=6).map(b"".join), max_size=25)


@PROPERTY
@given(lines=_LINES, data=st.data(), limit=st.integers(4, 40))
def test_any_split_of_the_data_gives_what_aiosmtpd_keeps(lines, data, limit):
    raw = stuffed(lines) + b".\r\n" + b"NOOP\r\n"
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    receiver, rest = asyncio.run(receive(split(raw, cuts), limit))
    content, unread = aiosmtpd_model(raw)
    assert not receiver.bare_line_end and not receiver.nul
    assert receiver.content() == content == b"".join(line + b"\r\n" for line in lines)
    assert rest == unread == b"NOOP\r\n", "nothing after the end of data is consumed"
    assert receiver.size == len(raw) - len(b"NOOP\r\n")


_ANY = st.lists(st.sampled_from([b".", b"a", b"\r", b"\n", b"\r\n", b"\0", b".\r\n"]), max_size=30)


@PROPERTY
@given(tokens=_ANY, data=st.data(), limit=st.integers(4, 40))
def test_bare_line_ends_and_nul_are_found_wherever_the_chunks_end(tokens, data, limit):
    raw = b"".join(tokens) + END + b"rest"
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    receiver, rest = asyncio.run(receive(split(raw, cuts), limit))
    end = 0 if raw.startswith(b".\r\n") else raw.index(END) + 2
    body = raw[:end]
    assert rest == raw[end + 3 :]
    assert receiver.bare_line_end == bool(_BARE.search(body))
    assert receiver.nul == (b"\0" in body)
    if not receiver.bare_line_end:
        assert receiver.content() == aiosmtpd_model(raw)[0]


@pytest.mark.parametrize(
    ("before", "piece", "expected"),
    [
        (b"\r\n", b".x\r\n", b"x\r\n"),  # a stuffed line starts the piece
        (b"\r\n", b"..\r\n", b".\r\n"),  # a line of one dot
        (b"\r\n", b"...x\r\n.\r\n", b"..x\r\n\r\n"),  # one dot per line goes
        (b"a\r", b"\n.x", b"\nx"),  # the CRLF split between pieces
        (b"\r\n", b"a.b\r\n.c", b"a.b\r\nc"),
        (b"a\n", b".x", b".x"),  # a bare LF does not start a line
        (b"ab", b"no dot at all\r\n", b"no dot at all\r\n"),
    ],
)
def test_unstuffing_sees_line_starts_on_the_boundary(before, piece, expected):
    assert unstuffed(before, piece) == expected


def test_the_empty_message_and_a_dropped_one():
    receiver = DataReceiver()
    assert receiver.feed(b".\r\n")
    assert receiver.content() == b""
    dropped = DataReceiver()
    chunks = [b"Subject: x\r\n\r\n", b"bare\nLF, but nobody looks any more\r\n", b".\r\n"]
    assert not dropped.feed(chunks[0])
    dropped.drop()
    assert not dropped.feed(chunks[1])
    assert dropped.feed(chunks[2])
    assert dropped.size == sum(map(len, chunks))
    with pytest.raises(ValueError):
        dropped.content()


def test_a_message_is_handed_on_without_a_copy():
    """The content is the receiver's own buffer (BytesIO.getvalue shares it when sized)."""
    receiver = DataReceiver()
    line = b"x" * 998 + b"\r\n"
    for _ in range(1000):
        receiver.feed(line)
    receiver.feed(b".\r\n")
    buffer = receiver._buffer
    assert buffer is not None
    content = receiver.content()
    assert content == line * 1000
    assert buffer.getbuffer().nbytes == len(content)  # trimmed, not copied out


# -- over real sockets, against a stock aiosmtpd server ------------------------------------


@dataclass
class Capture:
    """An aiosmtpd handler that keeps every envelope that reached the end of DATA."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: object, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok"


@dataclass
class Servers:
    stock: int
    ours: int
    stock_seen: Capture
    ours_seen: Capture


@pytest.fixture
def servers(loop_thread: LoopThread) -> Iterator[Servers]:
    settings = config.SMTP(max_message_size=LIMIT)
    limits = Limits(
        settings, Credentials(settings.auth), MemoryBudget(settings.memory_budget), Connections()
    )
    stock_seen, ours_seen = Capture(), Capture()

    async def start() -> list[asyncio.Server]:
        loop = asyncio.get_running_loop()
        stock = await loop.create_server(
            lambda: SMTP(
                stock_seen, data_size_limit=LIMIT, decode_data=False, enable_SMTPUTF8=True
            ),
            "127.0.0.1",
            0,
        )
        ours = await loop.create_server(
            lambda: SealgateSMTP(ours_seen, limits, None), "127.0.0.1", 0
        )
        return [stock, ours]

    started = loop_thread.run(start())
    ports = [server.sockets[0].getsockname()[1] for server in started]
    yield Servers(ports[0], ports[1], stock_seen, ours_seen)

    async def stop() -> None:
        for server in started:
            server.close()
            await server.wait_closed()

    loop_thread.run(stop())


def send_in_pieces(port: int, pieces: list[bytes]) -> tuple[int, str]:
    """One transaction (SMTPUTF8, 8BITMIME) whose data goes out in ``pieces``, each in its
    own TCP segment as far as the pacing gets it there; the reply to the data."""
    with RawSMTP(port) as smtp:
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        smtp.command("EHLO client.test")
        assert smtp.command("MAIL FROM:<jörg@example.org> SMTPUTF8 BODY=8BITMIME")[0] == 250
        assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
        assert smtp.command("DATA")[0] == 354
        for piece in pieces:
            smtp.send(piece)
            time.sleep(0.01)
        reply = smtp.reply()
        assert smtp.command("NOOP")[0] == 250
        return reply


TRICKY = {
    "dot-stuffed first line": [b"..starts with a dot\r\nSubject: x\r\n\r\nbody\r\n.\r\n"],
    "lines of dots": [b"Subject: x\r\n\r\n..\r\n...\r\n....x\r\n. .\r\n.\r\n"],
    "empty message": [b".\r\n"],
    "empty lines only": [b"\r\n\r\n.\r\n"],
    "8-bit and UTF-8": [b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n\xff\xfe caf\xc3\xa9\r\n.\r\n"],
    "stuffing split after CR": [b"Subject: x\r\n\r\nline\r", b"\n..dotted\r\n.\r\n"],
    "stuffing split after CRLF": [b"Subject: x\r\n\r\nline\r\n", b"..dotted\r\n.\r\n"],
    "stuffing split after the dot": [b"Subject: x\r\n\r\nline\r\n.", b".dotted\r\n.\r\n"],
    "end split after CR": [b"Subject: x\r\n\r\nbody\r", b"\n.\r\n"],
    "end split before the dot": [b"Subject: x\r\n\r\nbody\r\n", b".\r\n"],
    "end split after the dot": [b"Subject: x\r\n\r\nbody\r\n.", b"\r\n"],
    "end split in its CRLF": [b"Subject: x\r\n\r\nbody\r\n.\r", b"\n"],
    "a false end": [b"Subject: x\r\n\r\nends with a dot.\r\n", b"x.\r\n.x\r\n.\r\n"],
    "long, stuffed across chunks": [
        b"Subject: x\r\n\r\n" + b"".join(b"." * (n % 5) + b"y" * 70 + b"\r\n" for n in range(3000)),
        b".\r\n",
    ],
}


@pytest.mark.parametrize("pieces", list(TRICKY.values()), ids=list(TRICKY))
def test_tricky_data_is_kept_as_aiosmtpd_keeps_it(servers, pieces):
    assert send_in_pieces(servers.stock, pieces)[0] == 250
    assert send_in_pieces(servers.ours, pieces)[0] == 250
    (stock,) = servers.stock_seen.envelopes
    (ours,) = servers.ours_seen.envelopes
    assert ours.original_content == stock.original_content
    assert ours.content == stock.content
    assert isinstance(ours.content, bytes)
    assert (ours.smtp_utf8, ours.mail_options) == (stock.smtp_utf8, stock.mail_options)


def data_of(size: int) -> bytes:
    """Data of ``size`` bytes as sent (stuffing included, the ".CRLF" not), stuffed lines."""
    head = b"Subject: x\r\n\r\n" + b"..dotted line\r\n" * ((size - 200) // 15)
    return head + b"f" * (size - len(head) - 2) + b"\r\n"


@pytest.mark.parametrize(("size", "expected"), [(LIMIT, 250), (LIMIT + 1, 552)])
def test_the_size_limit_is_counted_and_drained_as_aiosmtpd_does(servers, size, expected):
    """Both count the data without its ".CRLF", stuffing included, and read to its end
    before answering: the command after it, in the same segment, is read as a command."""
    data = data_of(size)
    assert len(data) == size
    for port in (servers.stock, servers.ours):
        with RawSMTP(port) as smtp:
            smtp.command("EHLO client.test")
            assert smtp.command("MAIL FROM:<a@example.org>")[0] == 250
            assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
            assert smtp.command("DATA")[0] == 354
            smtp.send(data + b".\r\nNOOP\r\n")
            code, text = smtp.reply()
            assert code == expected, text
            assert smtp.reply()[0] == 250, "the NOOP after the data is read as a command"
    seen = 1 if expected == 250 else 0
    assert len(servers.ours_seen.envelopes) == len(servers.stock_seen.envelopes) == seen
    if seen:
        assert servers.ours_seen.envelopes[0].original_content == (
            servers.stock_seen.envelopes[0].original_content
        )


# -- through the gateway -----------------------------------------------------------------------


def test_a_client_gone_mid_data_leaves_nothing_and_gives_its_memory_back(make_gateway, sink):
    gateway = make_gateway(smtp={"memory_budget": 1 << 20, "max_message_size": 4 << 20})
    half = b"Subject: cut off\r\n\r\n" + (b"z" * 998 + b"\r\n") * 900
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        assert smtp.command("DATA")[0] == 354
        smtp.send(half)  # 900 KB of the 1 MB budget, then the client goes
    wait_for(lambda: gateway.gateway.intake.connections == 0, what="the connection to close")
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        assert smtp.command("DATA")[0] == 354
        smtp.send(half + b".\r\n")
        code, text = smtp.reply()
        assert code == 250, f"the budget was not given back: {text}"
    (arrived,) = sink.messages
    assert arrived.data.endswith(half)
