"""Zip archives, and the dispatch of any file to the reader of its real type.

A zip is opened once and decides what it is: OOXML (a ``[Content_Types].xml``
naming a Word, Excel or PowerPoint main part), ODF (a ``mimetype`` member), or
an archive whose members are files in their own right, each sniffed and read
like an attachment, recursively. Recursion is where zip bombs live, so:

- members are listed as facts ("attachment 1 > member 2"), at most
  ``max_members`` per archive, and an archive deeper than ``max_depth`` is not
  opened ("nesting limit"): 42.zip's sixteen-fold fan-out stops at depth 3;
- every member is unpacked through :class:`~gateway.policy.formats.ZipReader`,
  which ends a member past its size cap or ratio, an archive past its ratio
  (which catches overlapping-entry bombs whose members each look innocent),
  and everything once the message's unpacked bytes are spent;
- an encrypted member (flag bit 0, ZipCrypto or AES) is noted, not read, and
  makes its archive count as encrypted.

Formats we recognise but do not unpack (7z, rar, gzip, legacy Office, ...) are
named in ``incomplete`` as "unreadable (7z)", so rules can fall back instead of
treating an unread archive as clean.
"""

from __future__ import annotations

import mimetypes
import zipfile

from gateway.policy.formats import (
    CHUNK,
    Budget,
    Found,
    Kind,
    LimitReached,
    ZipReader,
    decode_text,
    html_to_text,
    odf,
    ooxml,
    pdf,
    sniff,
    text_of,
)
from gateway.policy.types import AttachmentFacts

_TYPES = mimetypes.MimeTypes()  # Python's built-in map only: the same on every host
_MORE_TYPES = {  # what that map lacks
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "7z": "application/x-7z-compressed",
    "rar": "application/x-rar-compressed",
}
_ENCRYPTED_FLAG = 0x1


def read_attachment(
    data: bytes, declared: str, label: str, depth: int, budget: Budget
) -> tuple[Kind, Found]:
    """Read one attachment's ``data`` within ``budget``; never raises."""
    found = Found()
    kind = Kind(sniff.OCTET_STREAM)
    try:
        read_file(data, declared, label, depth, budget, found, kind)
    except LimitReached as stop:
        found.note(stop.label or label, stop.reason)
    return kind, found


def read_file(
    data: bytes, declared: str, label: str, depth: int, budget: Budget, found: Found, kind: Kind
) -> None:
    """Read ``data`` by its real type into ``found``, learning ``kind`` on the way.

    Limits propagate as :class:`LimitReached`; anything else a broken file
    makes a parser raise is noted as "unreadable (format)"."""
    kind.real_type = sniff.sniff(data, declared)
    try:
        _read(data, label, depth, budget, found, kind)
    except LimitReached as stop:
        stop.label = stop.label or label  # the innermost file a message-wide limit struck
        raise
    except Exception:  # a malformed file: whatever the parser raises, the message goes on
        found.note(label, f"unreadable ({sniff.short_name(kind.real_type)})")


def _read(data: bytes, label: str, depth: int, budget: Budget, found: Found, kind: Kind) -> None:
    real_type = kind.real_type
    if real_type.startswith("text/") or real_type == sniff.RTF:
        text = decode_text(data)
        with text_of(found, label, budget) as pieces:
            pieces.add(html_to_text(text) if real_type == "text/html" else text)
    elif real_type == sniff.PDF:
        pdf.read(data, label, budget, found, kind)
    elif real_type == sniff.ZIP:
        try:
            _read_zip(ZipReader(data, budget), label, depth, found, kind)
        except LimitReached as stop:  # this archive's ratio, or a part too large to read
            if stop.scope == "message":
                raise
            found.note(label, stop.reason)
    elif real_type == sniff.OLE:
        kind.real_type, kind.encrypted = sniff.ole_type(data)
        short = sniff.short_name(kind.real_type)
        found.note(label, "encrypted" if kind.encrypted else f"unreadable ({short})")
    elif real_type in sniff.UNREADABLE:
        found.note(label, f"unreadable ({sniff.short_name(real_type)})")
    elif not _holds_no_text(real_type):
        # Bytes we cannot interpret may hold anything: say so, so that rules fall back.
        found.note(label, "unreadable (unknown format)")


# Types that carry no text a detector could read: media, programs (rules look at
# their type instead) and the signatures and keys of signed mail.
_NO_TEXT_PREFIXES = ("image/", "audio/", "video/", "font/")
_NO_TEXT = frozenset({sniff.EMPTY, "application/x-dosexec", "application/x-executable"})


def _holds_no_text(real_type: str) -> bool:
    return (
        real_type.startswith(_NO_TEXT_PREFIXES)
        or real_type in _NO_TEXT
        or real_type in sniff.SIGNATURES
    )


def _read_zip(archive: ZipReader, label: str, depth: int, found: Found, kind: Kind) -> None:
    document = ooxml.package(archive)
    if document is not None:
        kind.real_type = document.real_type
        ooxml.read(archive, document, label, found)
        return
    odf_type = odf.mimetype(archive)
    if odf_type is not None:
        kind.real_type = odf_type
        kind.encrypted = odf.read(archive, label, found)
        return
    if depth + 1 > archive.budget.max_depth:
        found.note(label, "nesting limit")
        return
    members = [info for info in archive.zip.infolist() if not info.is_dir()]
    if len(members) > archive.budget.max_members:
        found.note(label, "member limit")
        del members[archive.budget.max_members :]
    for number, info in enumerate(members, 1):
        _read_member(archive, info, f"{label} > member {number}", depth + 1, found, kind)


def _declared_type(name: str) -> str:
    """A member's type by its name: an archive declares none, its name is the sender's word."""
    extension = name.rpartition(".")[2].lower()
    return _MORE_TYPES.get(extension) or _TYPES.guess_type(name)[0] or sniff.OCTET_STREAM


def _member_bytes(archive: ZipReader, info: zipfile.ZipInfo, declared: str, kind: Kind) -> bytes:
    """A member's bytes, its type told from the first ones: a member too large to read
    whole (a padded executable) still shows what it is."""
    with archive.open(info) as stream:
        head = stream.read(sniff.HEAD)
        kind.real_type = sniff.sniff(head, declared)
        return head + b"".join(iter(lambda: stream.read(CHUNK), b""))


def _read_member(
    archive: ZipReader,
    info: zipfile.ZipInfo,
    label: str,
    depth: int,
    found: Found,
    outer: Kind,
) -> None:
    """Read one member and list it; a limit wider than the member propagates."""
    declared = _declared_type(info.filename)
    kind = Kind(sniff.OCTET_STREAM, encrypted=bool(info.flag_bits & _ENCRYPTED_FLAG))
    index = len(found.files)
    try:
        if kind.encrypted:
            outer.encrypted = True
            found.note(label, "encrypted")
        else:
            read_file(_member_bytes(archive, info, declared, kind), declared, label, depth,
                      archive.budget, found, kind)  # fmt: skip
    except LimitReached as stop:
        found.skip(stop, label)
    except Exception:  # a broken entry (bad CRC, unknown compression): the next may be fine
        found.note(label, "unreadable (zip)")
    finally:
        facts = AttachmentFacts(
            label, info.filename, declared, kind.real_type, info.file_size, kind.encrypted, depth
        )
        found.files.insert(index, facts)
