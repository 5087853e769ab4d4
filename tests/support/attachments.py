"""Attachments of every format the text extraction reads, built in the tests.

Each builder returns the bytes of a real file made by the library that writes
that format (fpdf2, python-docx, openpyxl, python-pptx) or, for ODF and the
hand-made cases (a slow PDF, an encrypted-zip flag), by the format's rules.
"""

from __future__ import annotations

import email
import io
import struct
import zipfile
import zlib
from email import policy
from email.message import EmailMessage

import docx
import openpyxl
import pptx
from fpdf import FPDF

BSN = "111222333"  # passes the 11-test
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"


# --- documents -------------------------------------------------------------------------


def make_pdf(text: str, *, password: str | None = None) -> bytes:
    document = FPDF()
    if password is not None:
        document.set_encryption(owner_password="owner", user_password=password)
    document.add_page()
    document.set_font("helvetica", size=12)
    document.cell(text=text)
    return bytes(document.output())


def make_docx(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph("Personal data")
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(text: str) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["name", "bsn", "note"])
    sheet.append(["Jan", int(BSN), text])  # the BSN as a number cell
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_pptx(text: str) -> bytes:
    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = "Quarterly"
    slide.notes_slide.notes_text_frame.text = text
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_odt(text: str) -> bytes:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        "<office:body><office:text>"
        f"<text:h>Client</text:h><text:p>BSN:<text:s/><text:span>{text}</text:span> ok</text:p>"
        "</office:text></office:body></office:document-content>"
    )
    return make_zip(("mimetype", ODT.encode()), ("content.xml", content.encode()))


def make_csv(text: str) -> bytes:
    return f"name;bsn\r\nJan;{text}\r\n".encode("cp1252")


def make_zip(*members: tuple[str, bytes], level: int = 6) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members:
            stored = name == "mimetype"  # ODF: first and uncompressed
            archive.writestr(name, data, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return out.getvalue()


def set_encrypted_flag(data: bytes, index: int) -> bytes:
    """``data`` with the encryption flag set on the ``index``-th member (central directory)."""
    patched = bytearray(data)
    entry = -1
    for _ in range(index + 1):
        entry = patched.index(b"PK\x01\x02", entry + 1)
    (flags,) = struct.unpack_from("<H", patched, entry + 8)
    struct.pack_into("<H", patched, entry + 8, flags | 1)
    return bytes(patched)


def slow_pdf(operations: int, pages: int) -> bytes:
    """A 5 KB PDF whose ``pages`` pages share one content stream of ``operations`` text
    operations, compressed: pypdf's extract_text spends seconds in each page's one call
    (about 4 s for 180,000 operations on our machines)."""
    content = zlib.compress(b"BT /F1 1 Tf " + b"(a) Tj 1 0 Td " * operations + b"ET", 9)
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R"
            b" /Resources << /Font << /F1 4 0 R >> >> >>")  # fmt: skip
    kids = b" ".join(b"%d 0 R" % (5 + number) for number in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *[page] * pages,
    ]
    out = io.BytesIO(b"%PDF-1.4\n")
    out.seek(0, io.SEEK_END)
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + b"PE\0\0"


# --- messages --------------------------------------------------------------------------


def message(*attachments: tuple[str, str, bytes], body: str = "See attached.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "zoe@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "Documents"
    msg.set_content(body)
    for filename, content_type, data in attachments:
        if content_type == "message/rfc822":  # a well-formed message only
            msg.add_attachment(email.message_from_bytes(data, policy=policy.default))
            continue
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype, subtype, filename=filename)
    return msg.as_bytes()
