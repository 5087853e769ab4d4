"""Text extraction for the detectors: every format's text, real types, encryption, and the
limits that stop zip bombs, deep nesting, huge and slow files within the time budget."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import zipfile
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy.textract import Limits, TextExtractor
from gateway.policy.types import Extracted
from tests.support.attachments import (
    BSN,
    DOCX,
    EXECUTABLE,
    ODT,
    PPTX,
    XLSX,
    make_csv,
    make_docx,
    make_odt,
    make_pdf,
    make_pptx,
    make_xlsx,
    make_zip,
    message,
    set_encrypted_flag,
    slow_pdf,
)

MiB = 1 << 20
LIMITS = Limits(max_attachment_bytes=8 * MiB)
TIGHT = Limits(time_budget=0.5, max_text_chars=10_000)
SECRET_NAME = "Project-Nightingale-takeover"  # must never show in a label or a reason
LABEL = re.compile(r"attachment \d+( > (member|attachment) \d+)*")


@pytest.fixture(scope="module")
def extractor() -> Iterator[TextExtractor]:
    extracting = TextExtractor(LIMITS)
    extracting.start()
    yield extracting
    extracting.close()


@pytest.fixture(scope="module")
def tight() -> Iterator[TextExtractor]:
    """Half a second per message and 10,000 characters of text."""
    extracting = TextExtractor(TIGHT)
    extracting.start()
    yield extracting
    extracting.close()


def texts_of(result: Extracted, label: str) -> str:
    return "".join(source.text for source in result.texts if source.label == label)


def facts_of(result: Extracted, label: str):
    (facts,) = [facts for facts in result.attachments if facts.label == label]
    return facts


def assert_no_names(result: Extracted) -> None:
    for facts in result.attachments:
        assert LABEL.fullmatch(facts.label), facts.label
    for source in result.texts:
        assert source.label == "" or LABEL.fullmatch(source.label)
    for reason in result.incomplete:
        assert SECRET_NAME not in reason
        assert re.fullmatch(r"(attachment \d+( > \w+ \d+)*|body|subject): [a-z0-9 ()]+", reason)


# --- what the detectors see ---------------------------------------------------------------

FORMATS: list[tuple[str, Callable[[str], bytes], str, str]] = [
    ("pdf", make_pdf, "application/pdf", "application/pdf"),
    ("docx", make_docx, "application/octet-stream", DOCX),
    ("xlsx", make_xlsx, XLSX, XLSX),
    ("pptx", make_pptx, PPTX, PPTX),
    ("odt", make_odt, "application/octet-stream", ODT),
    ("csv", make_csv, "text/csv", "text/csv"),
]


@pytest.mark.parametrize(("extension", "make", "declared", "real_type"), FORMATS)
def test_each_format_yields_its_text(extractor, extension, make, declared, real_type):
    raw = message(("cover.txt", "text/plain", b"cover note"),
                  (f"{SECRET_NAME}.{extension}", declared, make(f"BSN {BSN}")))  # fmt: skip
    result = extractor.extract(raw)
    assert BSN in texts_of(result, "attachment 2")
    assert {s.where for s in result.texts if s.label == "attachment 2"} == {"attachment"}
    facts = facts_of(result, "attachment 2")
    assert (facts.real_type, facts.declared_type, facts.depth) == (real_type, declared, 0)
    assert facts.filename == f"{SECRET_NAME}.{extension}"
    assert not facts.encrypted
    assert result.incomplete == ()
    assert_no_names(result)


def test_subject_and_bodies_keep_word_boundaries(extractor):
    msg = EmailMessage()
    msg["Subject"] = f"BSN {BSN}"
    msg.set_content("plain body")
    msg.add_alternative("<p>one</p><p>two&amp;three</p><table><tr><td>1112</td><td>22333</td>"
                        "</tr></table><script>evil()</script>", subtype="html")  # fmt: skip
    result = extractor.extract(msg.as_bytes())
    assert [(s.where, s.label) for s in result.texts] == [("subject", ""), ("body", ""),
                                                          ("body", "")]  # fmt: skip
    html_text = result.texts[2].text
    assert "one\n" in html_text and "two&three" in html_text
    assert "111222333" not in html_text and "evil" not in html_text


def test_the_spreadsheet_reads_as_rows_of_cells(extractor):
    result = extractor.extract(message(("b.xlsx", XLSX, make_xlsx("see note"))))
    assert f"Jan\t{BSN}\tsee note" in texts_of(result, "attachment 1")


def test_a_zip_member_docx_is_read_and_listed(extractor):
    archive = make_zip((f"{SECRET_NAME}.docx", make_docx(BSN)), ("readme.txt", b"hello"))
    result = extractor.extract(message((f"{SECRET_NAME}.zip", "application/zip", archive)))
    assert BSN in texts_of(result, "attachment 1 > member 1")
    assert texts_of(result, "attachment 1 > member 2") == "hello"
    labels = [(facts.label, facts.real_type, facts.depth) for facts in result.attachments]
    assert labels == [
        ("attachment 1", "application/zip", 0),
        ("attachment 1 > member 1", DOCX, 1),
        ("attachment 1 > member 2", "text/plain", 1),
    ]
    assert facts_of(result, "attachment 1 > member 1").filename == f"{SECRET_NAME}.docx"
    assert result.incomplete == ()
    assert_no_names(result)


def test_an_attached_message_is_read_one_level_down(extractor):
    inner = message((f"{SECRET_NAME}.docx", DOCX, make_docx(BSN)), body="inner body text")
    result = extractor.extract(message(("fwd.eml", "message/rfc822", inner)))
    assert "inner body text" in texts_of(result, "attachment 1")
    assert BSN in texts_of(result, "attachment 1 > attachment 1")
    assert facts_of(result, "attachment 1").real_type == "message/rfc822"
    assert facts_of(result, "attachment 1 > attachment 1").depth == 1
    assert_no_names(result)


# --- real types and encryption ------------------------------------------------------------


def test_a_renamed_executable_is_an_executable(extractor):
    result = extractor.extract(message(("report.pdf", "application/pdf", EXECUTABLE)))
    facts = facts_of(result, "attachment 1")
    assert (facts.declared_type, facts.real_type) == ("application/pdf", "application/x-dosexec")
    assert facts.filename == "report.pdf"


@pytest.mark.parametrize(
    ("data", "real_type"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(64), "application/x-executable"),
        (b"#!/usr/bin/env python3\nprint(1)\n", "text/x-python"),
        (b"#!/bin/sh\necho hi\n", "text/x-shellscript"),
        (make_zip(("a.txt", b"x")), "application/zip"),
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "image/png"),
        (b"BM looks like a bitmap but is text", "text/plain"),
        (b"\x00\x01\x02\x03" * 10, "application/octet-stream"),
    ],
)
def test_real_types_by_content(extractor, data, real_type):
    result = extractor.extract(message(("file.pdf", "application/pdf", data)))
    assert facts_of(result, "attachment 1").real_type == real_type


def test_an_encrypted_zip_member_is_flagged_and_the_rest_is_read(extractor):
    archive = set_encrypted_flag(make_zip(("secret.txt", b"x"), ("open.txt", BSN.encode())), 0)
    result = extractor.extract(message(("a.zip", "application/zip", archive)))
    assert facts_of(result, "attachment 1").encrypted
    assert facts_of(result, "attachment 1 > member 1").encrypted
    assert not facts_of(result, "attachment 1 > member 2").encrypted
    assert texts_of(result, "attachment 1 > member 2") == BSN
    assert result.incomplete == ("attachment 1 > member 1: encrypted",)


def test_a_password_protected_pdf_is_flagged(extractor):
    result = extractor.extract(message(("a.pdf", "application/pdf", make_pdf(BSN, password="pw"))))
    facts = facts_of(result, "attachment 1")
    assert (facts.real_type, facts.encrypted) == ("application/pdf", True)
    assert result.incomplete == ("attachment 1: encrypted",)
    assert BSN not in texts_of(result, "attachment 1")


def test_an_owner_only_protected_pdf_is_flagged_and_read(extractor):
    result = extractor.extract(message(("a.pdf", "application/pdf", make_pdf(BSN, password=""))))
    assert facts_of(result, "attachment 1").encrypted
    assert BSN in texts_of(result, "attachment 1")
    assert result.incomplete == ()


def test_an_encrypted_office_file_is_flagged(extractor):
    package = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000) + "EncryptedPackage".encode("utf-16-le")
    )
    result = extractor.extract(message(("a.docx", DOCX, package)))
    assert facts_of(result, "attachment 1").encrypted
    assert result.incomplete == ("attachment 1: encrypted",)


def test_an_encrypted_odf_file_is_flagged(extractor):
    manifest = b"<manifest:manifest><manifest:encryption-data/></manifest:manifest>"
    odt = make_zip(("mimetype", ODT.encode()), ("META-INF/manifest.xml", manifest),
                   ("content.xml", os.urandom(200)))  # fmt: skip
    result = extractor.extract(message(("a.odt", ODT, odt)))
    facts = facts_of(result, "attachment 1")
    assert (facts.real_type, facts.encrypted) == (ODT, True)
    assert result.incomplete == ("attachment 1: encrypted",)


def test_archives_we_cannot_read_say_so(extractor):
    seven_zip = b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(100)
    result = extractor.extract(message(("a.7z", "application/octet-stream", seven_zip)))
    assert facts_of(result, "attachment 1").real_type == "application/x-7z-compressed"
    assert result.incomplete == ("attachment 1: unreadable (7z)",)


# --- limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """200 MB of zeros in one member, about 200 KB compressed (ratio ~1000)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(200):
            member.write(bytes(MiB))
    return out.getvalue()


def test_a_zip_bomb_stops_quickly(extractor, zip_bomb):
    started = time.monotonic()
    result = extractor.extract(message(("a.zip", "application/zip", zip_bomb)))
    elapsed = time.monotonic() - started
    assert elapsed < LIMITS.time_budget + 2
    assert result.incomplete in (
        ("attachment 1 > member 1: size limit",),
        ("attachment 1: decompression ratio",),
        ("attachment 1 > member 1: decompression ratio",),
    )
    assert facts_of(result, "attachment 1 > member 1").size == 200 * MiB


def test_a_member_too_large_to_read_still_shows_its_type(extractor):
    padding = os.urandom(LIMITS.max_attachment_bytes // 2 + 1).hex().encode()  # ratio ~2
    archive = make_zip(("setup.txt", EXECUTABLE + padding), level=1)
    result = extractor.extract(message(("a.zip", "application/zip", archive)))
    assert result.incomplete == ("attachment 1 > member 1: size limit",)
    assert facts_of(result, "attachment 1 > member 1").real_type == "application/x-dosexec"


def test_a_member_past_the_ratio_stops_there(extractor):
    archive = make_zip(("zeros.bin", bytes(4 * MiB)), level=9)  # ratio ~1000, under 8 MB
    result = extractor.extract(message(("a.zip", "application/zip", archive)))
    assert result.incomplete == ("attachment 1 > member 1: decompression ratio",)


def test_a_document_that_is_a_bomb_stops_too(extractor):
    bomb = make_docx(BSN)
    with zipfile.ZipFile(io.BytesIO(bomb)) as original:
        parts = [(name, original.read(name)) for name in original.namelist()]
    padded = [(name, data + b" " * (20 * MiB) if name == "word/document.xml" else data)
              for name, data in parts]  # fmt: skip
    result = extractor.extract(message(("a.docx", DOCX, make_zip(*padded, level=9))))
    assert facts_of(result, "attachment 1").real_type == DOCX
    assert result.incomplete == ("attachment 1: decompression ratio",)


def test_deep_nesting_stops_at_the_limit(extractor):
    archive = make_zip(("core.txt", BSN.encode()))
    for level in range(10):
        archive = make_zip((f"level{level}.zip", archive))
    result = extractor.extract(message(("a.zip", "application/zip", archive)))
    deepest = "attachment 1" + " > member 1" * LIMITS.max_depth
    assert result.incomplete == (f"{deepest}: nesting limit",)
    assert max(facts.depth for facts in result.attachments) == LIMITS.max_depth
    assert BSN not in "".join(source.text for source in result.texts)


def test_too_many_members_stop_at_the_limit(extractor):
    archive = make_zip(*[(f"{number}.txt", b"") for number in range(LIMITS.max_members + 5)])
    result = extractor.extract(message(("a.zip", "application/zip", archive)))
    assert result.incomplete == ("attachment 1: member limit",)
    assert len(result.attachments) == 1 + LIMITS.max_members


def test_a_huge_attachment_is_listed_but_not_read(extractor):
    huge = b"%PDF-1.4\n" + os.urandom(LIMITS.max_attachment_bytes)
    result = extractor.extract(message(("a.txt", "text/plain", BSN.encode()),
                                       ("big.pdf", "application/pdf", huge)))  # fmt: skip
    assert result.incomplete == ("attachment 2: size limit",)
    facts = facts_of(result, "attachment 2")
    assert (facts.real_type, facts.size) == ("application/pdf", len(huge))
    assert texts_of(result, "attachment 1") == BSN


def test_a_parser_stuck_past_the_budget_is_killed(tight):
    """A genuinely slow input: pypdf needs seconds for one page of it, the budget is 0.5 s,
    so the helper is killed inside that call; the next attachment is not read (time is
    up) and the next message is read by a fresh helper."""
    tight.extract(message(("b.pdf", "application/pdf", make_pdf(BSN))))  # a started helper
    (helper,) = tight._helpers._idle
    first_pid = helper._process.pid
    raw = message(("slow.pdf", "application/pdf", slow_pdf(180_000, pages=3)),
                  ("b.pdf", "application/pdf", make_pdf(BSN)))  # fmt: skip
    started = time.monotonic()
    result = tight.extract(raw)
    assert time.monotonic() - started < TIGHT.time_budget + 2
    assert result.incomplete == ("attachment 1: time limit", "attachment 2: time limit")
    assert [facts.real_type for facts in result.attachments] == ["application/pdf"] * 2
    assert helper._process.pid != first_pid  # killed, not stopped between pages
    after = tight.extract(message(("b.pdf", "application/pdf", make_pdf(BSN))))
    assert BSN in texts_of(after, "attachment 1")
    assert after.incomplete == ()


def test_text_past_the_limit_is_cut(tight):
    result = tight.extract(message(("a.txt", "text/plain", b"x" * 20_000), body="short"))
    assert sum(len(source.text) for source in result.texts) == TIGHT.max_text_chars
    assert result.incomplete == ("attachment 1: text limit",)


def test_a_dead_helper_is_replaced(extractor):
    (helper,) = extractor._helpers._idle
    os.kill(helper._process.pid, signal.SIGKILL)
    helper._process.join()
    result = extractor.extract(message(("a.pdf", "application/pdf", make_pdf(BSN))))
    assert BSN in texts_of(result, "attachment 1")
    assert result.incomplete == ()


# --- malformed input ------------------------------------------------------------------------


def broken_docx() -> bytes:
    with zipfile.ZipFile(io.BytesIO(make_docx(BSN))) as original:
        parts = [(name, original.read(name)) for name in original.namelist()]
    return make_zip(*[(name, b"<w:document><unclosed>" if name == "word/document.xml" else data)
                      for name, data in parts])  # fmt: skip


def entity_bomb_docx() -> bytes:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><w:document>&b;</w:document>'
    )
    with zipfile.ZipFile(io.BytesIO(make_docx(BSN))) as original:
        parts = [(name, original.read(name)) for name in original.namelist()]
    return make_zip(*[(name, bomb if name == "word/document.xml" else data)
                      for name, data in parts])  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.4\n1 0 obj garbage", "unreadable (pdf)"),
        (make_pdf(BSN)[:300], "unreadable (pdf)"),
        (b"PK\x03\x04" + os.urandom(200), "unreadable (zip)"),
        (broken_docx(), "unreadable (docx)"),
        (entity_bomb_docx(), "unreadable (docx)"),
    ],
)
def test_malformed_files_are_noted_not_raised(extractor, data, reason):
    result = extractor.extract(message((f"{SECRET_NAME}.pdf", "application/pdf", data)))
    assert result.incomplete == (f"attachment 1: {reason}",)
    assert_no_names(result)


SAMPLES = [make_pdf(BSN), make_docx(BSN), make_xlsx(BSN), make_odt(BSN),
           make_zip(("a.docx", make_docx(BSN)))]  # fmt: skip
MAGIC = st.sampled_from([b"", b"%PDF-1.7\n", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
                         b"MZ", b"\xef\xbb\xbf"])  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid document with a few bytes changed, or random bytes behind a magic number."""
    if draw(st.booleans()):
        return draw(MAGIC) + draw(st.binary(max_size=2000))
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(mutated(), min_size=1, max_size=3),
    st.sampled_from(["application/pdf", "application/octet-stream", "text/plain"]),
)
def test_random_and_mutated_files_never_raise(extractor, attachments, content_type):
    raw = message(*[(f"{SECRET_NAME}.bin", content_type, data) for data in attachments])
    result = extractor.extract(raw)
    assert len([f for f in result.attachments if f.depth == 0]) == len(attachments)
    assert_no_names(result)
