"""The content model: awkward real-world messages, sanitising, and properties against the stdlib."""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import quopri
import re
import tracemalloc
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mail import mimewalk
from gateway.mail.content import AttachmentSource, Content, extract
from gateway.mail.sanitize import sanitise_html
from tests.support.mimegen import Generated, generated_messages

MAIL = Path(__file__).parent / "fixtures" / "mail"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def blob(seed: str, size: int) -> bytes:
    """The deterministic attachment contents the fixtures were written with."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


ICS = (
    "BEGIN:VCALENDAR\r\nPRODID:-//Example//Calendar//EN\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:meeting-42@example.org\r\nDTSTART:20250310T090000Z\r\n"
    "DTEND:20250310T100000Z\r\nSUMMARY:Überleg-Meeting\r\nORGANIZER;CN=Zoë:mailto:zoe@example.org\r\n"
    "ATTENDEE;RSVP=TRUE:mailto:rcpt@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()


def headers(
    subject: str,
    message_id: str,
    date: str | None,
    from_: tuple[str, ...] = ("a@example.org",),
    to: tuple[str, ...] = ("b@example.net",),
    **more: object,
) -> dict[str, object]:
    expected: dict[str, object] = {
        "from": list(from_), "to": list(to), "cc": [], "date": date, "subject": subject,
        "message_id": message_id, "in_reply_to": None, "references": [],
    }  # fmt: skip
    return expected | more


@dataclass
class Att:
    filename: str
    content_type: str
    data: bytes
    disposition: str = "attachment"
    content_id: str | None = None
    leaf: int | None = None  # index among the stdlib's leaf parts, to compare with its decoding


@dataclass
class Case:
    headers: dict[str, object]
    text: str | None
    html: str | None = None
    attachments: list[Att] = field(default_factory=list)
    problems: tuple[str, ...] = ()  # substrings, one per expected problem


D = "Mon, 10 Mar 2025 10:00:00 +0000"
CASES: dict[str, Case] = {
    "plain_ascii.eml": Case(
        headers(
            "Quarterly figures", "<plain-1@example.org>", "Mon, 03 Mar 2025 10:15:00 +0100",
            ("Alice Example <alice@example.org>",), ("Bob <bob@example.net>",),
        ),
        "Hello Bob,\n\nthe quarterly figures are in the shared folder.\n\n-- \nAlice\n",
    ),
    "rfc2047_headers.eml": Case(
        headers(
            "Hello 👋 world and café crème", "<hdr-2@example.org>",
            "Tue, 04 Mar 2025 08:00:00 +0000", ("Zoë Dupré <zoe@example.org>",),
            ("Jörg Müller <joerg@example.de>", '"Plain, Person" <plain@example.com>'),
            cc=["山田太郎 <yamada@example.jp>", "carol@example.net"],
            in_reply_to="<parent@example.org>",
            references=["<root@example.org>", "<parent@example.org>"],
        ),
        "Grüße, Jörg!\n",
    ),
    "rfc2231_filename.eml": Case(
        headers("RFC 2231 file names", "<rfc2231@example.org>", "Wed, 05 Mar 2025 09:00:00 +0000",
                ("sender@example.org",), ("rcpt@example.net",)),
        "Three attachments.",
        attachments=[
            Att("Jahresbericht Übersicht 2024–2025.pdf", "application/pdf", blob("report", 3000),
                leaf=1),
            Att("Ünïcødé.txt", "text/plain", "Ünïcødé notes: ☃\n".encode() * 20, leaf=2),
            Att("résumé_draft.bin", "application/octet-stream", blob("resume", 700), leaf=3),
        ],
    ),
    "nested_related.eml": Case(
        headers("Your order", "<nested@example.org>", "Thu, 06 Mar 2025 12:00:00 +0100",
                ("Shop <shop@example.org>",), ("zoe@example.net",)),
        "Hallo Zoë,\nZie voorwaarden: https://example.org/terms",
        '<p style="color:#333">Hallo Zoë,</p><img src="cid:logo@example.org" alt="Logo">'
        '<img height="1" width="1"><p>Zie <a href="https://example.org/terms" '
        'rel="noopener noreferrer">voorwaarden</a>.</p>\n',
        [
            Att("attachment-1.png", "image/png", b"\x89PNG\r\n\x1a\n" + blob("logo", 1200),
                "inline", "logo@example.org", leaf=2),
            Att("attachment-2.png", "image/png", b"\x89PNG\r\n\x1a\n" + blob("unused", 300),
                "attachment", "unused@example.org", leaf=3),
            Att("contract.pdf", "application/pdf", b"%PDF-1.4\n" + blob("contract", 2500),
                leaf=4),
        ],
    ),
    "forwarded_rfc822.eml": Case(
        headers("Fwd: offer", "<fwd@example.org>", "Fri, 07 Mar 2025 14:00:00 +0100",
                ("Zoe <zoe@example.org>",), ("team@example.org",)),
        "See the forwarded message.",
        attachments=[Att("Re: Offerte für Q2.eml", "message/rfc822", b"")],  # bytes: see test
    ),
    "tnef.eml": Case(
        headers("Rich text from Outlook", "<tnef@example.org>", "Sat, 08 Mar 2025 10:00:00 +0000",
                ("Outlook User <outlook@example.org>",), ("rcpt@example.net",)),
        "Please see attached (résumé).",
        attachments=[
            Att("winmail.dat", "application/ms-tnef", b'x\x9f>"' + blob("tnef", 1500), leaf=1),
            Att("winmail.dat", "application/ms-tnef", b'x\x9f>"' + blob("tnef2", 200), leaf=2),
        ],
    ),
    "calendar_invite.eml": Case(
        headers("Invitation: Planning", "<invite@example.org>", "Sun, 09 Mar 2025 11:00:00 +0000",
                ("Zoë <zoe@example.org>",), ("rcpt@example.net",)),
        "You have been invited to Planning.",
        "<p>You have been invited to <b>Planning</b>.</p>",
        [
            Att("invite.ics", "text/calendar", ICS, leaf=2),
            Att("invite.ics", "application/ics", ICS, leaf=3),
        ],
    ),
    "calendar_only.eml": Case(
        headers("Planning", "<invite-only@example.org>", "Sun, 09 Mar 2025 11:00:00 +0000",
                ("zoe@example.org",), ("rcpt@example.net",)),
        None,
        attachments=[Att("invite.ics", "text/calendar", ICS, leaf=0)],
    ),
    "charset_unknown.eml": Case(
        headers("Unknown charset", "<cs-unknown@example.org>", D),
        "Grüße aus Köln\n",
        problems=("unknown charset 'x-unknown' in the message, decoded as UTF-8",),
    ),
    "latin1_declared_utf8.eml": Case(
        headers("Latin-1 body declared UTF-8", "<cs-latin1@example.org>", D),
        "Café crème – 5€\n",
        problems=("not valid utf-8 in the message, decoded as windows-1252",),
    ),
    "no_charset_utf8.eml": Case(
        headers("No charset, UTF-8 body", "<cs-none-utf8@example.org>", D),
        "Smörgåsbord für alle.\n",
    ),
    "no_charset_latin1.eml": Case(
        headers("No charset, Latin-1 body", "<cs-none-latin1@example.org>", D),
        "Smörgåsbord für alle.\n",
        problems=("8-bit text without a charset in the message, decoded as windows-1252",),
    ),
    "utf8_8bit.eml": Case(
        headers("Grüße – 8bit 🎉", "<utf8@example.org>", "Tue, 11 Mar 2025 10:00:00 +0000",
                ("Zoë Dupré <zoë@exämple.org>",), ("山田 <yamada@example.jp>",)),
        "Grüße, 山田さん 🎉\nZweite Zeile.\n",
    ),
    "unterminated_boundary.eml": Case(
        headers("Unterminated", "<unterminated@example.org>", "Wed, 12 Mar 2025 10:00:00 +0000"),
        "Body before the attachment.",
        attachments=[Att("cut.bin", "application/octet-stream", blob("unterminated", 2000))],
        problems=("unterminated multipart boundary in the message",),
    ),
    "no_boundary_param.eml": Case(
        headers("No boundary", "<no-boundary@example.org>", "Wed, 12 Mar 2025 10:00:00 +0000"),
        "--something\nContent-Type: text/plain\n\nText that a broken mailer wrapped.\n"
        "--something--\n",
        problems=("multipart without a boundary parameter",),
    ),
    "bare_lf.eml": Case(
        headers("Bare LF line ends", "<bare-lf@example.org>", "Thu, 13 Mar 2025 10:00:00 +0000",
                ("Unix Sender <unix@example.org>",), ("rcpt@example.net",)),
        "Line one.\nLine two.\n",
        "<p>Line one.<br>Line two.</p>",
        [Att("lf.bin", "application/octet-stream", blob("bare-lf", 1000), leaf=2)],
    ),
    "empty_body.eml": Case(
        headers("Empty body", "<empty-body@example.org>", "Fri, 14 Mar 2025 10:00:00 +0000"),
        "",
    ),
    "no_mime_headers.eml": Case(
        headers("Plain old RFC 822", "<no-mime@example.org>", "Fri, 14 Mar 2025 10:00:00 +0000",
                ("old@example.org",)),
        "No MIME-Version, no Content-Type.\nJust text.\n",
    ),
    "base64_odd_lines.eml": Case(
        headers("Odd base64", "<odd-b64@example.org>", "Sat, 15 Mar 2025 10:00:00 +0000"),
        "Attachment with odd base64 lines.",
        attachments=[Att("odd.bin", "application/octet-stream", blob("odd-lines", 2222), leaf=1)],
    ),
    "qp_html.eml": Case(
        headers("Newsletter", "<qp-html@example.org>", "Sun, 16 Mar 2025 10:00:00 +0000",
                ("news@example.org",)),
        None,
        "\n<h1>Café News</h1>\n<p>Une très longue ligne qui dépasse soixante-seize caractères "
        "et doit donc être coupée par un saut doux.</p>\n"
        '<a href="https://example.org/news?id=1&amp;x=2" rel="noopener noreferrer">Lire</a> '
        '<a rel="noopener noreferrer">piège</a>\n<img><img src="cid:banner@example.org">\n'
        "<table><tbody><tr><td>a</td><td>b</td></tr></tbody></table>\n",
    ),
    "garbage_headers.eml": Case(
        headers("Garbage in the header", None, None),
        "this line is not a header field\nX-After: still header-like\nMIME-Version: 1.0\n\n"
        "Body after garbage.\n",
        problems=("ends at a line that is not a header field",),
    ),
    "empty.eml": Case(headers(None, None, None, (), ()), "", problems=("the message is empty",)),
}  # fmt: skip


def test_every_fixture_has_a_case():
    assert sorted(path.name for path in MAIL.glob("*.eml")) == sorted(CASES)
    assert all(path.stat().st_size < 20_000 for path in MAIL.glob("*.eml"))


def stdlib_leaves(raw: bytes) -> list[Message]:
    """The stdlib's non-multipart parts in order, not descending into attached messages."""
    leaves: list[Message] = []

    def walk(part: Message) -> None:
        if part.get_content_maintype() == "multipart":
            for child in part.get_payload():
                walk(child)
        else:
            leaves.append(part)

    walk(email.message_from_bytes(raw, policy=policy.compat32))
    return leaves


def data_of(attachment: AttachmentSource) -> bytes:
    return b"".join(attachment.chunks())


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name: str):
    raw = (MAIL / name).read_bytes()
    case = CASES[name]
    content = extract(raw)
    assert content.headers.as_dict() == case.headers
    assert content.text == case.text
    assert content.html == case.html
    described = [(a.filename, a.content_type, a.disposition, a.content_id)
                 for a in content.attachments]  # fmt: skip
    assert described == [(a.filename, a.content_type, a.disposition, a.content_id)
                         for a in case.attachments]  # fmt: skip
    for got, want in zip(content.attachments, case.attachments, strict=True):
        if want.content_type == "message/rfc822":
            continue
        data = data_of(got)
        assert data == want.data
        if want.leaf is not None:
            stdlib = stdlib_leaves(raw)[want.leaf].get_payload(decode=True)
            assert hashlib.sha256(data).digest() == hashlib.sha256(stdlib).digest()
    assert len(content.problems) == len(case.problems), content.problems
    for problem, expected in zip(content.problems, case.problems, strict=True):
        assert expected in problem


def test_attached_message_is_kept_whole():
    raw = (MAIL / "forwarded_rfc822.eml").read_bytes()
    inner = raw[raw.index(b"From: Dirk") : raw.index(b"\r\n--fwd-b--")]
    (attachment,) = extract(raw).attachments
    assert data_of(attachment) == inner
    assert inner.endswith(b"--inner-b--")


def test_problems_never_carry_body_text():
    for name in CASES:
        raw = (MAIL / name).read_bytes()
        for problem in extract(raw).problems:
            assert "Grüße" not in problem and "Body" not in problem and "Text" not in problem


# --- sanitising ------------------------------------------------------------------------

DANGEROUS = [
    ("<script>alert(1)</script>", "alert"),
    ('<img src="x" onerror="alert(1)">', "onerror"),
    ('<a href="javascript:alert(1)">x</a>', "javascript"),
    ('<img src="https://tracker.example/p.gif">', "tracker"),
    ('<img src="//tracker.example/p.gif">', "tracker"),
    ('<img src="data:image/png;base64,AAAA">', "data:"),
    ('<p style="background:url(https://x.example/bg)">p</p>', "url"),
    ('<p style="color: u\\72l(https://x.example/)">p</p>', "x.example"),
    ('<link rel="stylesheet" href="https://x.example/s.css">', "x.example"),
    ('<meta http-equiv="refresh" content="0;url=https://x.example">', "refresh"),
    ('<svg onload="alert(1)"><circle r="1"/></svg>', "onload"),
    ('<iframe src="https://x.example"></iframe>', "iframe"),
    ("<style>body { background: red }</style>", "background"),
    ('<form action="https://x.example"><input name="a"></form>', "form"),
    ('<object data="https://x.example/x.swf"></object>', "object"),
    ('<a href="cid:part@x">x</a>', "cid:"),
    ('<table background="https://x.example/bg.png"><tr><td>t</td></tr></table>', "x.example"),
]


@pytest.mark.parametrize(("html", "gone"), DANGEROUS)
def test_sanitising_removes(html: str, gone: str):
    assert gone not in sanitise_html(html).lower()


def test_sanitising_keeps_formatting_links_and_cid_images():
    html = (
        '<table border="1"><tr><td colspan="2" style="FONT-WEIGHT: bold; color: red">c</td></tr>'
        '</table><img src="cid:logo@x" alt="logo"><a href="https://example.org/a">a</a>'
        '<a href="mailto:zoe@example.org">m</a><ul><li><b>b</b> <i>i</i></li></ul>'
    )
    assert sanitise_html(html) == (
        '<table border="1"><tbody><tr><td colspan="2" style="font-weight:bold;color:red">c</td>'
        '</tr></tbody></table><img src="cid:logo@x" alt="logo">'
        '<a href="https://example.org/a" rel="noopener noreferrer">a</a>'
        '<a href="mailto:zoe@example.org" rel="noopener noreferrer">m</a>'
        "<ul><li><b>b</b> <i>i</i></li></ul>"
    )


# --- headers and names -------------------------------------------------------------


def message(head: str, body: bytes = b"body\r\n") -> bytes:
    return head.replace("\n", "\r\n").encode("utf-8") + b"\r\n" + body


def test_broken_encoded_words_are_tolerated():
    content = extract(message(
        "Subject: =?utf-8?B?bad*base64?= =?x-nope?Q?caf=C3=A9?= =?utf-8?Q?incomplete\n"
        "From: =?utf-8?q?Broken_=ZZ?= <b@example.org>\n"
    ))  # fmt: skip
    assert content.headers.subject.endswith("café =?utf-8?Q?incomplete")
    assert content.headers.from_ == ["Broken =ZZ <b@example.org>"]
    assert content.problems == [
        "text that is not valid utf-8 in the header fields, decoded as windows-1252 with "
        "replacements",
        "unknown charset 'x-nope' in the header fields, decoded as UTF-8",
    ]


def test_file_names_lose_paths_controls_and_bidi_overrides():
    raw = message(
        'Content-Type: multipart/mixed; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b'--b\r\nContent-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: attachment; filename="inv\\u202eoice\tfdp.exe"\r\n\r\nx\r\n'
        b'--b\r\nContent-Type: image/png; name=".."\r\n\r\nx\r\n'
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@b\r\n\r\nno subject\r\n"
        b'--b\r\nContent-Disposition: attachment; filename="' + b"x" * 300 + b'.pdf"\r\n\r\nx\r\n'
        b"--b--\r\n",
    )
    raw = raw.replace(b"\\u202e", "\u202e".encode())
    names = [a.filename for a in extract(raw).attachments]
    assert names == ["_.._etc_passwd", "invoicefdp.exe", "attachment-3.png", "message.eml",
                     "x" * 196 + ".pdf"]  # fmt: skip


def test_unreadable_types_and_encodings_become_problems():
    raw = message(
        'Content-Type: multipart/digest; boundary="d"\n',
        b"--d\r\n\r\nSubject: digested\r\n\r\ninner\r\n"
        b"--d\r\nContent-Type: pdf\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
        b"--d--\r\n",
    )
    content = extract(raw)
    assert [(a.filename, a.content_type) for a in content.attachments] == [
        ("digested.eml", "message/rfc822"),
        ("attachment-2.bin", "application/octet-stream"),
    ]
    assert data_of(content.attachments[1]) == b"begin"
    assert content.text is None
    assert len(content.problems) == 2
    assert "unreadable Content-Type in part 2" in content.problems[0]
    assert "unknown transfer encoding 'x-uuencode' in part 2" in content.problems[1]


def test_too_many_parts_are_left_to_the_original():
    raw = message('Content-Type: multipart/mixed; boundary="m"\n',
                  b"--m\r\n\r\nx\r\n" * 3000 + b"--m--\r\n")  # fmt: skip
    content = extract(raw)
    assert len(content.attachments) == mimewalk.MAX_PARTS - 2  # the message, the text body
    assert any("more than 1000 MIME parts" in p for p in content.problems)


def test_deep_nesting_is_bounded():
    depth = 200
    head = "".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n"
                   for i in range(depth))  # fmt: skip
    tail = "".join(f"\r\n--b{i}--" for i in reversed(range(depth)))
    raw = message(
        "Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n",
        (head + f"--b{depth}\r\n\r\ninnermost text\r\n--b{depth}--" + tail + "\r\n").encode(),
    )
    content = extract(raw)
    assert content.text is None and content.attachments == []
    assert content.problems == [
        "multipart nesting deeper than 50 levels in part "
        + ".".join(["1"] * 50)
        + "; its parts are only in the original message"
    ]


def test_a_huge_text_body_is_offered_as_an_attachment():
    raw = message("Content-Type: text/plain; charset=us-ascii\n", b"x\r\n" * 3_000_000)
    content = extract(raw)
    assert content.text is None
    assert [a.filename for a in content.attachments] == ["attachment-1.txt"]
    assert content.problems == [
        "the text of the message is too large to show; it is offered as an attachment"
    ]


# --- streaming -------------------------------------------------------------------------


def big_attachment_message(data: bytes, line_end: bytes = b"\r\n") -> bytes:
    return (
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n\r\ntext\r\n--B\r\n'
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n'
        + base64.encodebytes(data).replace(b"\n", line_end)
        + b"--B--\r\n"
    )


def test_chunks_of_a_large_attachment_are_bounded_and_repeatable():
    data = blob("five-megabytes", 5 * 1024 * 1024)
    (attachment,) = extract(big_attachment_message(data)).attachments
    for size in (65536, 10_000, 4097):
        pieces = list(attachment.chunks(size))
        assert all(0 < len(piece) <= size for piece in pieces)
        assert b"".join(pieces) == data
    assert b"".join(attachment.chunks()) == data


def test_memory_stays_near_one_chunk():
    raw = big_attachment_message(blob("memory", 3 * 1024 * 1024))
    tracemalloc.start()
    try:
        for attachment in extract(raw).attachments:
            for _ in attachment.chunks():
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


@FAST
@given(st.binary(max_size=3000), st.integers(1, 300), st.sampled_from([b"\n", b"\r\n"]))
def test_base64_matches_the_stdlib_at_any_chunk_size(data: bytes, size: int, line_end: bytes):
    encoded = base64.encodebytes(data).replace(b"\n", line_end)
    body = mimewalk.Body(encoded, 0, len(encoded), "base64")
    pieces = list(body.chunks(size))
    assert all(len(piece) <= size for piece in pieces)
    assert b"".join(pieces) == data


@FAST
@given(st.binary(max_size=3000), st.integers(1, 300), st.booleans())
def test_quoted_printable_matches_the_stdlib_at_any_chunk_size(data: bytes, size: int, crlf: bool):
    encoded = quopri.encodestring(data)
    if crlf:
        encoded = encoded.replace(b"\n", b"\r\n")
    body = mimewalk.Body(encoded, 0, len(encoded), "quoted-printable")
    pieces = list(body.chunks(size))
    assert all(len(piece) <= size for piece in pieces)
    assert b"".join(pieces) == binascii.a2b_qp(encoded)


def test_base64_garbage_and_padding_like_the_stdlib():
    for encoded in (b"QUJD\r\nRA", b"QU*JD!R\r\nEU=\r\n", b"QUJDRA==\r\nignored", b""):
        body = mimewalk.Body(encoded, 0, len(encoded), "base64")
        expected = email.message_from_bytes(
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
        ).get_payload(decode=True)
        assert body.decode() == expected
    # A lone last character is six bits, not a byte: dropped (the stdlib would return the
    # undecodable text itself, bpo-27397).
    assert mimewalk.Body(b"QUJDR", 0, 5, "base64").decode() == b"ABC"


# --- robustness and properties --------------------------------------------------------


def read_all(content: Content) -> None:
    """Every attachment read; and extract() got there without its last-resort fallback."""
    assert not any("no MIME structure could be read" in p for p in content.problems)
    for attachment in content.attachments:
        for _ in attachment.chunks(997):
            pass


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes):
    read_all(extract(raw))


@FAST
@given(
    st.sampled_from(sorted(CASES)),
    st.lists(st.tuples(st.integers(0, 20_000), st.binary(max_size=8)), max_size=6),
    st.integers(0, 20_000),
)
def test_damaged_fixtures_never_raise(name: str, edits: list[tuple[int, bytes]], cut: int):
    raw = (MAIL / name).read_bytes()
    for position, replacement in edits:
        position %= len(raw) + 1
        raw = raw[:position] + replacement + raw[position + len(replacement) :]
    read_all(extract(raw[: max(cut, len(raw) // 2)]))


LINES = st.sampled_from([
    "Content-Type: multipart/mixed; boundary=b", "Content-Type: multipart/alternative; boundary=b",
    "Content-Type: multipart/related; boundary=c", "Content-Type: text/html; charset=x-bad",
    "Content-Type: message/rfc822", "Content-Type: text/plain; charset=utf-16",
    "Content-Type: text/plain; charset*=''", "Content-Type: text/plain; charset=base64",
    "Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1*=%A9%zz",
    "Content-Disposition: attachment; filename*=x-nope'en'%FF", "Content-Type: image/png; name=",
    "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
    "Content-ID: <cid@x>", "Subject: =?utf-8?B?=?= =?utf-16?Q?=00?= =?*?q??=", "From: <<@>>, ;",
    "--b", "--b--", "--c", "--c--", "", "", "QUJD=", "=3D=\r", "<img src=cid:cid@x>", " folded",
    "References: <a> junk <b", "\x00\xff\xfe", "From x", ":", "X: =?utf-8?q?=E2=82?=",
])  # fmt: skip


@FAST
@given(st.lists(LINES, max_size=40), st.sampled_from(["\n", "\r\n"]))
def test_mime_like_junk_never_raises(lines: list[str], line_end: str):
    raw = line_end.join(lines).encode("latin-1").decode("unicode_escape").encode("latin-1")
    read_all(extract(raw))


WORD = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
HTML = st.lists(
    st.sampled_from(["<p>", "</p>", "<b>x</b>", '<img src="https://t.example/x">', "<script>s</script>",
                     '<a href="https://example.org">l</a>', "<table><tr><td>c</td></tr></table>",
                     "&amp;", "<br>"]) | WORD,
    max_size=12,
).map("".join)  # fmt: skip


def same_header(got: str | None, sent: str, raw: bytes, name: bytes) -> bool:
    """Equal; except where the stdlib folded the field, which may lose a blank between two
    encoded words (RFC 2047 6.2 drops blanks there): then equal without blanks."""
    head = raw[: re.search(rb"\n\r?\n", raw).end()]
    if not re.search(rb"(?m)^" + name + rb":[^\n]*\n[ \t]", head):
        return got == sent
    return str(got).replace(" ", "") == sent.replace(" ", "")


def with_final_newline(text: str) -> str:
    """What ``set_content`` stores: the text ending in a line break. (It writes LF line
    ends, the message is then generated with LF or CRLF, and extract() turns CRLF into LF:
    so only this final line break differs from the original.)"""
    return text if text.endswith("\n") else text + "\n"


MESSAGES = generated_messages(
    words=WORD,
    html=HTML,
    filenames=WORD.map(lambda word: f"{word}.dat"),
    content_types=st.just("application/octet-stream"),
    data=st.binary(max_size=2000),
    max_levels=3,
    max_files=4,
    max_subject_words=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_stdlib_generated_messages_round_trip(generated: Generated):
    content = extract(generated.raw)
    assert content.problems == []
    assert same_header(content.headers.subject, generated.subject, generated.raw, b"Subject")
    assert same_header(content.headers.from_[0], generated.sender, generated.raw, b"From")
    expected_text = None if generated.text is None else with_final_newline(generated.text)
    assert content.text == expected_text
    if generated.html is None:
        assert content.html is None
    else:
        assert content.html == sanitise_html(with_final_newline(generated.html))
    got = [(a.filename, a.content_type, data_of(a)) for a in content.attachments]
    assert got == generated.attachments


def test_lone_surrogates_from_utf7_become_valid_text():
    """Regression: UTF-7 can decode to lone surrogates, which made sealing fail."""
    raw = (
        b"From: a@example.org\r\nSubject: =?utf-7?Q?+2D0-?=\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-7\r\n\r\n<p>+2D0-</p>\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-7''%2B2D0-.pdf\r\n\r\nxx\r\n--b--\r\n"
    )
    content = extract(raw)
    for text in (content.headers.subject, content.html, content.attachments[0].filename):
        assert text is not None
        text.encode("utf-8")  # raises on a lone surrogate
    assert content.html == "<p>?</p>"
    assert any("invalid characters" in problem for problem in content.problems)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_a_soft_line_break_before_an_escape_is_not_split(size: int, line_end: bytes):
    """Regression (found by hypothesis): with a slice starting at the "=" of a soft line
    break, the next slice began inside the "=00" escape after it and decoded as "00"."""
    encoded = b"=00" * 25 + b"=" + line_end + b"=00"
    body = mimewalk.Body(encoded, 0, len(encoded), "quoted-printable")
    assert b"".join(body.chunks(size)) == b"\x00" * 26


QP_BYTES = st.sampled_from([b"=", b"=", b"\r", b"\n", b"A", b"4", b"1", b" ", b"f", b"g"])


@FAST
@given(
    st.lists(QP_BYTES, max_size=24).map(b"".join),
    st.lists(QP_BYTES, max_size=3).map(b"".join),
    st.lists(QP_BYTES, max_size=3).map(b"".join),
    st.integers(1, 7),
)
def test_quoted_printable_slices_decode_like_the_whole_even_when_malformed(
    body: bytes, before: bytes, after: bytes, size: int
):
    """Malformed input too ("==", "=g", "=" then CR, a bare "=" at the end), inside a larger
    buffer: the slices decode to exactly what binascii.a2b_qp makes of the whole body."""
    raw = before + body + after
    part = mimewalk.Body(raw, len(before), len(before) + len(body), "quoted-printable")
    assert b"".join(part.chunks(size)) == binascii.a2b_qp(body)


@pytest.mark.parametrize(
    ("encoded", "size"), [(b"A==41", 3), (b"= =1", 1), (b"=\rXYZ\n", 2), (b"AB=", 2)]
)
def test_quoted_printable_cases_a_review_found(encoded: bytes, size: int):
    body = mimewalk.Body(encoded, 0, len(encoded), "quoted-printable")
    assert b"".join(body.chunks(size)) == binascii.a2b_qp(encoded)
