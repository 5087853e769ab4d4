"""The text of OpenDocument files (ODF 1.2+: odt, ods, odp and their templates).

An ODF file is a zip whose first member, ``mimetype``, names its type. Its
text is in ``content.xml`` (body) and ``styles.xml`` (headers and footers), as
paragraphs (text:p, text:h) of mixed content: text, spans, and the elements
that stand for spaces, tabs and line breaks. A password-protected document
says so in its manifest (manifest:encryption-data) and its XML parts are then
ciphertext: it is noted as encrypted, not read.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from gateway.policy.formats import Found, LimitReached, ZipReader, local_name, text_of, xml_blocks

_MIMETYPE_PREFIX = "application/vnd.oasis.opendocument."
_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_MAX_SPACES = 64  # text:s c="1000000000" must not become a gigabyte of spaces
_PARTS = ("content.xml", "styles.xml")
_MANIFEST = "META-INF/manifest.xml"


def mimetype(archive: ZipReader) -> str | None:
    """The ODF type ``archive`` declares, or None when it is not an ODF file."""
    info = archive.info("mimetype")
    if info is None or info.file_size > 200:
        return None
    declared = archive.read(info)[:200].decode("ascii", "replace").strip()
    return declared if declared.startswith(_MIMETYPE_PREFIX) else None


def read(archive: ZipReader, label: str, found: Found) -> bool:
    """Add the document's text; True when it is encrypted (and so was not read)."""
    manifest = archive.info(_MANIFEST)
    if manifest is not None and b"encryption-data" in archive.read(manifest):
        found.note(label, "encrypted")
        return True
    with text_of(found, label, archive.budget) as pieces:
        for name in _PARTS:
            info = archive.info(name)
            if info is None:
                continue
            try:
                with archive.open(info) as stream:
                    for paragraph in xml_blocks(stream, frozenset({"p", "h"}), archive.budget):
                        pieces.add(_inline(paragraph) + "\n")
            except LimitReached as stop:
                found.skip(stop, label)
    return False


def _inline(element: Element) -> str:
    """The text of a paragraph's mixed content."""
    texts = [element.text or ""]
    for child in element:
        name = local_name(child.tag)
        if name == "s":
            texts.append(" " * _count(child.get(f"{{{_TEXT_NS}}}c")))
        elif name == "tab":
            texts.append("\t")
        elif name == "line-break":
            texts.append("\n")
        else:
            texts.append(_inline(child))
        texts.append(child.tail or "")
    return "".join(texts)


def _count(value: str | None) -> int:
    return min(int(value), _MAX_SPACES) if value and value.isdigit() else 1
