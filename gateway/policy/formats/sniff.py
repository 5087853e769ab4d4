"""Real file types, by content: what a file is, whatever its name and declared type say.

A ``report.pdf`` that starts with ``MZ`` is a Windows executable, and policies
about executables must see it as one. The checks here come first because
``filetype`` misses or misnames what matters most to us: executables get the
names attachment conditions use, text wins over ``filetype``'s two-byte image
signatures (a text file starting "BM" is not a bitmap), and zip is only
"application/zip" here: whether it is OOXML (a ``[Content_Types].xml``) or ODF
(a ``mimetype`` member) is decided when the archive is opened, in the helper.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile

import filetype

from gateway.policy.formats import bom_codec, utf16_without_bom

HEAD = 8192  # bytes looked at
OCTET_STREAM = "application/octet-stream"
ZIP = "application/zip"
PDF = "application/pdf"
OLE = "application/x-ole-storage"  # Compound File Binary: legacy Office, .msg, encrypted OOXML
RTF = "application/rtf"
EMPTY = "application/x-empty"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "application/x-executable"),
    (b"PK\x03\x04", ZIP),
    (b"PK\x05\x06", ZIP),  # an empty archive
    (b"PK\x07\x08", ZIP),  # a spanned archive's first part
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", OLE),
    (b"{\\rtf", RTF),
)
_SCRIPTS = {
    "sh": "text/x-shellscript",
    "bash": "text/x-shellscript",
    "dash": "text/x-shellscript",
    "ksh": "text/x-shellscript",
    "zsh": "text/x-shellscript",
    "python": "text/x-python",
    "perl": "text/x-perl",
    "ruby": "text/x-ruby",
    "node": "text/javascript",
    "php": "text/x-php",
}
_INTERPRETER = re.compile(rb"#!\s*(\S+)(?:[ \t]+(\S+))?")
_VERSION = re.compile(r"[\d.]+$")
# C0 controls that never occur in text (NUL included; tab, line breaks, form feed and ESC do).
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")

# Streams of a Compound File, named in UTF-16LE in its directory.
_OLE_STREAMS = (
    ("EncryptedPackage", OLE),  # password-protected OOXML (MS-OFFCRYPTO)
    ("WordDocument", "application/msword"),
    ("Workbook", "application/vnd.ms-excel"),
    ("Book", "application/vnd.ms-excel"),
    ("PowerPoint Document", "application/vnd.ms-powerpoint"),
    ("__substg1.0_", "application/vnd.ms-outlook"),
)

_ARCHIVES = {
    "application/x-7z-compressed": "7z",
    "application/x-rar-compressed": "rar",
    "application/gzip": "gzip",
    "application/x-bzip2": "bzip2",
    "application/x-xz": "xz",
    "application/x-tar": "tar",
    "application/vnd.ms-cab-compressed": "cab",
    "application/zstd": "zstd",
    "application/x-lzip": "lzip",
    "application/x-lz4": "lz4",
    "application/x-compress": "compress",
    "application/x-lzop": "lzop",
    "application/x-brotli": "brotli",
    "application/x-rpm": "rpm",
    "application/x-deb": "deb",
    "application/x-unix-archive": "ar",
}
# Archives whose content we do not unpack: reading stops there, and says so.
UNREADABLE = frozenset(_ARCHIVES)
_OFFICE = "application/vnd.openxmlformats-officedocument."
_SHORT_NAMES = {
    **_ARCHIVES,
    PDF: "pdf",
    ZIP: "zip",
    OLE: "ole",
    "application/msword": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.ms-outlook": "msg",
    _OFFICE + "wordprocessingml.document": "docx",
    _OFFICE + "spreadsheetml.sheet": "xlsx",
    _OFFICE + "presentationml.presentation": "pptx",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
}


def sniff(data: bytes, declared: str) -> str:
    """The real type of ``data``, from its first bytes; ``declared`` only names the
    flavour of something that is text anyway (text/csv rather than text/plain)."""
    head = data[:HEAD]
    if not head:
        return EMPTY
    return (
        _magic(head)
        or _text(head, declared)
        or filetype.guess_mime(head)  # images, audio, video, fonts, other archives
        or _zip_anywhere(data)
        or (declared if declared in SIGNATURES else None)  # DER has no magic of its own
        or OCTET_STREAM
    )


def _zip_anywhere(data: bytes) -> str | None:
    """A ZIP with bytes in front of it (self-extracting, or junk that unzip tools skip)."""
    return ZIP if zipfile.is_zipfile(io.BytesIO(data)) else None


# The signatures and keys of signed mail (S/MIME, OpenPGP).
SIGNATURES = frozenset(
    {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-signature",
        "application/pgp-keys",
    }
)

# Declared types under which mail clients send text (Outlook: .csv as vnd.ms-excel).
TEXT_CARRIERS = frozenset(
    {"application/vnd.ms-excel", "application/csv", "application/x-csv", OCTET_STREAM}
)


def _magic(head: bytes) -> str | None:
    if head.startswith(b"MZ") and b"\x00" in head[:64]:  # a DOS header is full of zeros
        return "application/x-dosexec"
    if b"%PDF-" in head[:1024]:  # readers accept junk before the header
        return PDF
    for magic, real_type in _MAGIC:
        if head.startswith(magic):
            return real_type
    return None


def _text(head: bytes, declared: str) -> str | None:
    """A text type if ``head`` reads as text: UTF-8 (or a BOM's charset) without binary
    controls, or, for what is declared as text, any 8-bit charset."""
    codec = bom_codec(head) or utf16_without_bom(head)
    if codec is None:
        if _BINARY.search(head):
            return None
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)  # final=False: a cut char
        except UnicodeDecodeError:
            if not declared.startswith("text/") and declared not in TEXT_CARRIERS:
                return None
    if head.startswith(b"#!"):
        return _script(head)
    return declared if declared.startswith("text/") else "text/plain"


def _script(head: bytes) -> str:
    match = _INTERPRETER.match(head)
    if match is None:
        return "text/x-script"
    program = match[1].rpartition(b"/")[2]
    if program == b"env" and match[2]:
        program = match[2]
    name = _VERSION.sub("", program.decode("ascii", "replace"))
    return _SCRIPTS.get(name, "text/x-script")


def ole_type(data: bytes) -> tuple[str, bool]:
    """The real type of a Compound File by the streams it names, and whether it is an
    encrypted OOXML package."""
    for stream, real_type in _OLE_STREAMS:
        if stream.encode("utf-16-le") in data:
            return real_type, stream == "EncryptedPackage"
    return OLE, False


def short_name(real_type: str) -> str:
    """A format's short name for reasons: "pdf", "docx", "7z"."""
    if real_type in _SHORT_NAMES:
        return _SHORT_NAMES[real_type]
    subtype = real_type.rpartition("/")[2]
    for prefix in ("vnd.", "x-"):
        subtype = subtype.removeprefix(prefix)
    return subtype[:40]
