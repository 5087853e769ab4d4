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


CSV_CP1252 = "Naam;BSN\r\nZoë;111222333\r\n".encode("cp1252")


@pytest.mark.parametrize(
    ("filename", "content_type", "data"),
    [
        # Regressions: content that was not recognised counted as read in full.
        ("export.csv", "application/vnd.ms-excel", CSV_CP1252),  # what Outlook sends
        ("export.csv", "application/octet-stream", CSV_CP1252),
        ("export.txt", "text/csv", "Naam\tBSN\r\nZoë\t111222333\r\n".encode("utf-16-le")),
        ("bundle.zip", "application/zip", b"\x00" + make_zip(("a.txt", f"BSN {BSN}".encode()))),
    ],
)
def test_text_in_unexpected_wrappings_is_still_read(extractor, filename, content_type, data):
    found = decision(message((filename, content_type, data)), extractor)
    assert found.action == "protect"
    assert any(r.rule == "bsn" and "fallback" not in r.why for r in found.reasons)


def test_bytes_of_an_unknown_format_fall_back_to_protect(extractor):
    unknown = bytes(range(1, 32)) * 100 + b"\xff\xfe\xfd" * 100
    found = decision(message(("data.bin", "application/octet-stream", unknown)), extractor)
    assert found.action == "protect"
    assert any("unreadable (unknown format)" in r.why for r in found.reasons)


def test_images_and_signatures_hold_no_text_and_change_nothing(extractor):
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    signature = b"\x30\x82\x05\x00" + bytes(300)  # DER: no magic of its own
    raw = message(
        ("logo.png", "image/png", png), ("smime.p7s", "application/pkcs7-signature", signature)
    )
    assert decision(raw, extractor).action == "relay"


def test_a_fallback_needs_the_rules_other_conditions(extractor, tmp_path):
    """Regression: an unreadable zip made a finance-only rule protect everyone's mail."""
    pack = tmp_path / "finance-only.toml"
    pack.write_text(
        '[groups]\nfinance = ["*@finance.example.org"]\n\n'
        '[[rules]]\nname = "iban"\naction = "protect"\n'
        'when.sender_group = ["finance"]\nwhen.detector = "iban"\n'
    )
    raw = message(("data.bin", "application/octet-stream", bytes(range(1, 32)) * 50))
    policy = Policy.load([pack])
    for sender, action in (("hr@example.org", "relay"), ("x@finance.example.org", "protect")):
        facts = gather(raw, sender, extractor)
        assert policy.decide(facts, ["b@example.net"])["b@example.net"].action == action


def test_a_fallback_never_overrides(extractor, tmp_path):
    pack = tmp_path / "partners.toml"
    pack.write_text(
        '[[rules]]\nname = "export"\naction = "reject"\ntext = "No."\nwhen.subject_tag = "Documents"\n\n'
        '[[rules]]\nname = "partners"\naction = "relay"\noverride = true\n'
        'when.recipient_domain = ["partner.example"]\n'
        "when.not = { attachment = { encrypted = true } }\n"
    )
    raw = message(("data.bin", "application/octet-stream", bytes(range(1, 32)) * 50))
    facts = gather(raw, "z@example.org", extractor)
    found = Policy.load([pack]).decide(facts, ["y@other.example", "p@partner.example"])
    assert found["y@other.example"].action == "reject"
    assert found["p@partner.example"].action == "reject"  # the override could not be proven
