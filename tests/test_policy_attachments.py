"""Policies over real attachments: a BSN in any readable format is found; limits fall back."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from io import BytesIO

import pytest

from gateway.policy.engine import Policy
from gateway.policy.facts import gather
from gateway.policy.textract import Limits, TextExtractor
from tests.support.attachments import (
    BSN,
    DOCX,
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
)
from tests.support.gateway import POLICIES

LIMITS = Limits(max_attachment_bytes=4 << 20, time_budget=3)
HEALTH = Policy.load([POLICIES / "baseline.toml", POLICIES / "nl-healthcare.toml"])


@pytest.fixture(scope="module")
def extractor() -> Iterator[TextExtractor]:
    extracting = TextExtractor(LIMITS)
    extracting.start()
    yield extracting
    extracting.close()


def decision(raw: bytes, extractor: TextExtractor):
    facts = gather(raw, "zoe@example.org", extractor)
    return HEALTH.decide(facts, ["bob@example.net"])["bob@example.net"]


@pytest.mark.parametrize(
    ("filename", "content_type", "data"),
    [
        ("letter.pdf", "application/pdf", make_pdf(f"Patient BSN {BSN}")),
        ("letter.docx", DOCX, make_docx(f"Patient BSN {BSN}")),
        ("list.xlsx", XLSX, make_xlsx("patient list")),
        ("slides.pptx", PPTX, make_pptx(f"BSN {BSN}")),
        ("letter.odt", ODT, make_odt(f"BSN {BSN}")),
        ("export.csv", "text/csv", make_csv(f"BSN {BSN}")),
        ("bundle.zip", "application/zip", make_zip(("letter.docx", make_docx(f"BSN {BSN}")))),
    ],
)
def test_a_bsn_in_an_attachment_protects(extractor, filename, content_type, data):
    found = decision(message((filename, content_type, data)), extractor)
    assert found.action == "protect"
    (reason,) = [r for r in found.reasons if r.rule == "bsn"]
    assert reason.why == "detector bsn: 1 hits, 1 distinct, in attachment"


def test_the_same_attachments_without_a_bsn_relay(extractor):
    found = decision(message(("letter.docx", DOCX, make_docx("Nothing personal here"))), extractor)
    assert found.action == "relay"


def test_a_zip_bomb_falls_back_to_protect_within_the_time_budget(extractor):
    bomb = BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", bytes(200 << 20))
    started = time.monotonic()
    found = decision(message(("data.zip", "application/zip", bomb.getvalue())), extractor)
    assert time.monotonic() - started < LIMITS.time_budget + 2
    assert found.action == "protect"
    assert any("fallback" in r.why and "attachment 1" in r.why for r in found.reasons)


def test_deep_nesting_falls_back_to_protect(extractor):
    data = make_docx(f"BSN {BSN}")
    for level in range(8):
        data = make_zip((f"level{level}.zip" if level else "letter.docx", data))
    found = decision(message(("deep.zip", "application/zip", data)), extractor)
    assert found.action == "protect"
    assert any("nesting limit" in r.why for r in found.reasons)


def test_a_huge_attachment_falls_back_to_protect(extractor):
    huge = b"x" * (LIMITS.max_attachment_bytes + 1)
    found = decision(message(("big.bin", "application/octet-stream", huge)), extractor)
    assert found.action == "protect"
    assert any("size limit" in r.why for r in found.reasons)


def test_an_explicit_relay_fallback_is_honoured(extractor, tmp_path):
    pack = tmp_path / "lenient.toml"
    pack.write_text(
        '[[rules]]\nname = "bsn"\naction = "protect"\nfallback = "relay"\nwhen.detector = "bsn"\n'
    )
    huge = b"x" * (LIMITS.max_attachment_bytes + 1)
    facts = gather(message(("big.bin", "application/octet-stream", huge)), "z@x.org", extractor)
    found = Policy.load([pack]).decide(facts, ["bob@example.net"])["bob@example.net"]
    assert found.action == "relay" and "fallback" in found.reasons[0].why


def test_an_executable_renamed_to_pdf_is_caught_by_its_real_type(extractor, tmp_path):
    pack = tmp_path / "exe.toml"
    pack.write_text(
        '[[rules]]\nname = "executables"\naction = "reject"\ntext = "No programs by e-mail."\n'
        'when.attachment = { real_type = ["application/x-dosexec"] }\n'
    )
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + b"PE\0\0"
    facts = gather(message(("report.pdf", "application/pdf", program)), "z@x.org", extractor)
    found = Policy.load([pack]).decide(facts, ["bob@example.net"])["bob@example.net"]
    assert found.action == "reject" and found.text == "No programs by e-mail."
    assert found.reasons[0].why == "attachment 1: real type application/x-dosexec"
