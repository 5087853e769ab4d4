"""The text of Office Open XML documents: Word, Excel and PowerPoint (ECMA-376).

An OOXML file is a zip whose ``[Content_Types].xml`` names the type of each
part; the parts are chosen by those types, not by their conventional names,
so a document whose main part is not ``word/document.xml`` is still read:

- Word: the main document, headers, footers, footnotes, endnotes, comments;
  paragraphs as lines, including deleted text of tracked changes;
- Excel: each worksheet row as a line of tab-separated cells, shared strings
  looked up, inline strings and numbers as written (a BSN typed as a number is
  a number cell);
- PowerPoint: slides, then speaker notes.

Parts are streamed through :class:`~gateway.policy.formats.ZipReader`, so a
part that unpacks to gigabytes stops at the limits like any zip member.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeElementTree

from gateway.policy.formats import (
    Budget,
    Found,
    LimitReached,
    MemberStream,
    TextPieces,
    ZipReader,
    local_name,
    text_of,
    xml_blocks,
)

CONTENT_TYPES = "[Content_Types].xml"
_MAX_CONTENT_TYPES = 1 << 20

PartReader = Callable[[MemberStream, Budget, TextPieces], None]


@dataclass
class Package:
    """An OOXML package: its real type and its text parts, in reading order."""

    real_type: str
    family: str  # "word", "excel" or "powerpoint"
    parts: list[tuple[str, str]] = field(default_factory=list)  # (part name, leaf type)


# The leaf of each text part's content type, in reading order, per family.
_FAMILIES = {
    "word": ("main+xml", "header+xml", "footer+xml", "footnotes+xml", "endnotes+xml",
             "comments+xml"),
    "excel": ("sharedStrings+xml", "worksheet+xml"),
    "powerpoint": ("slide+xml", "notesSlide+xml"),
}  # fmt: skip
_FAMILY_MARKS = {
    "wordprocessingml": "word",
    "ms-word": "word",
    "spreadsheetml": "excel",
    "ms-excel": "excel",
    "presentationml": "powerpoint",
    "ms-powerpoint": "powerpoint",
}
_DIGITS = re.compile(r"(\d+)")


def package(archive: ZipReader) -> Package | None:
    """The OOXML package in ``archive``, or None when it is not a Word, Excel or
    PowerPoint document."""
    info = archive.info(CONTENT_TYPES)
    if info is None or info.file_size > _MAX_CONTENT_TYPES:
        return None
    root = SafeElementTree.fromstring(archive.read(info), forbid_dtd=True)
    types = {
        str(item.get("PartName", "")).lstrip("/"): str(item.get("ContentType", ""))
        for item in root
        if local_name(item.tag) == "Override"
    }
    main = next((ctype for ctype in types.values() if ctype.endswith(".main+xml")), None)
    family = None if main is None else _family(main)
    if main is None or family is None:
        return None
    base = main.removesuffix(".main+xml")
    found = Package(base + ".12" if base.startswith("application/vnd.ms-") else base, family)
    for leaf in _FAMILIES[family]:
        names = [name for name, ctype in types.items() if ctype.rpartition(".")[2] == leaf]
        found.parts.extend((name, leaf) for name in sorted(names, key=_natural))
    return found


def _family(main_type: str) -> str | None:
    return next((family for mark, family in _FAMILY_MARKS.items() if mark in main_type), None)


def _natural(name: str) -> list[str | int]:
    """Sort key putting slide2 before slide10."""
    return [int(piece) if piece.isdigit() else piece for piece in _DIGITS.split(name)]


def read(archive: ZipReader, document: Package, label: str, found: Found) -> None:
    """Add the text of ``document``'s parts, as one text labelled ``label``."""
    readers = _Readers()
    with text_of(found, label, archive.budget) as pieces:
        for name, leaf in document.parts:
            info = archive.info(name)
            if info is None:
                continue
            try:
                with archive.open(info) as stream:
                    readers.for_leaf(leaf)(stream, archive.budget, pieces)
            except LimitReached as stop:
                found.skip(stop, label)


class _Readers:
    """The part readers of one document; Excel's worksheets need its shared strings."""

    def __init__(self) -> None:
        self.shared: list[str] = []

    def for_leaf(self, leaf: str) -> PartReader:
        if leaf == "sharedStrings+xml":
            return self.shared_strings
        if leaf == "worksheet+xml":
            return self.worksheet
        return _paragraphs

    def shared_strings(self, stream: MemberStream, budget: Budget, pieces: TextPieces) -> None:
        for item in xml_blocks(stream, frozenset({"si"}), budget):
            self.shared.append(_string_item(item))

    def worksheet(self, stream: MemberStream, budget: Budget, pieces: TextPieces) -> None:
        for row in xml_blocks(stream, frozenset({"row"}), budget):
            cells = (self._cell(cell) for cell in row if local_name(cell.tag) == "c")
            pieces.add("\t".join(cells) + "\n")

    def _cell(self, cell: Element) -> str:
        value = _child(cell, "v")
        text = "" if value is None else value.text or ""
        kind = cell.get("t")
        if kind == "s":
            index = int(text) if text.strip().isdigit() else -1
            return self.shared[index] if 0 <= index < len(self.shared) else ""
        if kind == "inlineStr":
            inline = _child(cell, "is")
            return "" if inline is None else _string_item(inline)
        return text


def _paragraphs(stream: MemberStream, budget: Budget, pieces: TextPieces) -> None:
    """Word and DrawingML text: each paragraph (w:p, a:p) a line."""
    for paragraph in xml_blocks(stream, frozenset({"p"}), budget):
        pieces.add("".join(_runs(paragraph)) + "\n")


def _runs(element: Element) -> Iterator[str]:
    """The text of runs below ``element``, skipping property elements (w:pPr holds tab
    stops named w:tab, which are not tabs)."""
    for child in element:
        name = local_name(child.tag)
        if name in ("t", "delText"):
            yield child.text or ""
        elif name == "tab":
            yield "\t"
        elif name in ("br", "cr"):
            yield "\n"
        elif not name.endswith("Pr"):
            yield from _runs(child)


def _string_item(item: Element) -> str:
    """A shared or inline string: its text and rich-text runs, without phonetic guides."""
    texts: list[str] = []
    for child in item:
        name = local_name(child.tag)
        if name == "t":
            texts.append(child.text or "")
        elif name == "r":
            run_text = _child(child, "t")
            texts.append("" if run_text is None else run_text.text or "")
    return "".join(texts)


def _child(element: Element, name: str) -> Element | None:
    return next((child for child in element if local_name(child.tag) == name), None)
