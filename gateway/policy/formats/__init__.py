"""Reading the text inside attachments: what the format readers share.

Everything an attachment says about itself is the sender's choice and may be
hostile: a zip member's declared size, a compression ratio of 1000:1 (10 GB of
zeros fit in 10 MB), archives nested like 42.zip, a document's XML. So the
readers never trust a size they did not count:

- every decompressed byte comes through :class:`ZipReader`, which counts it
  against the member's size cap and compression ratio, the archive's ratio, the
  bytes the whole message may still unpack, and the clock, while streaming, in
  pieces of at most one chunk: a bomb stops after a few MB, not after 10 GB;
- every piece of text goes through :class:`TextPieces`, counted against the
  text the detectors may still be handed;
- a limit raises :class:`LimitReached`, whose scope says how much reading it
  ends (one member, one archive, or everything left in the message), and the
  reader that catches it notes it in :attr:`Found.incomplete`, by position
  ("attachment 2 > member 1"), never by file name: names can be confidential.

The readers run in a helper process (see :mod:`gateway.policy.textract` for
why), except plain text, which the gateway decodes itself with the same code.
XML is parsed with defusedxml (no entity expansion, no DTDs) and streamed, each
paragraph or row rendered and dropped as soon as it ends.
"""

from __future__ import annotations

import codecs
import html
import io
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from xml.etree.ElementTree import Element

import nh3
from defusedxml import ElementTree as SafeElementTree

from gateway.policy.types import AttachmentFacts, TextSource, Where

Scope = Literal["member", "archive", "message"]

CHUNK = 1 << 20  # bytes decompressed per step between checks
RATIO_FLOOR = 1 << 20  # below this many bytes, no ratio is suspicious: small parts compress well


class LimitReached(Exception):
    """A limit stopped reading; ``scope`` says how much it ends.

    ``label`` is the position where a message-wide limit struck, filled in by
    the innermost reader that knows one."""

    def __init__(self, reason: str, scope: Scope, label: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.scope = scope
        self.label = label


@dataclass
class Budget:
    """The limits, and what the message may still spend; sent to the helper and back."""

    max_depth: int
    max_members: int
    max_ratio: float
    max_file_bytes: int  # an attachment or member larger than this is not read
    expanded_bytes: int  # still to unpack
    text_chars: int  # still to hand to the detectors
    deadline: float  # time.monotonic() in the process that reads

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitReached("time limit", "message")


@dataclass
class Kind:
    """What is known of a file's type, filled in as reading learns it."""

    real_type: str
    encrypted: bool = False


@dataclass
class Found:
    """What reading found: texts, the members of archives, and what was left out."""

    texts: list[TextSource] = field(default_factory=list)
    files: list[AttachmentFacts] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    def note(self, label: str, reason: str) -> None:
        self.incomplete.append(f"{label}: {reason}")

    def skip(self, stop: LimitReached, label: str) -> None:
        """Note a limit that ended one member or part, at ``label``; re-raise wider ones."""
        if stop.scope != "member":
            raise stop
        self.note(label, stop.reason)


class TextPieces:
    """The text of one file, counted against the message's text budget as it grows."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._pieces: list[str] = []

    def add(self, text: str) -> None:
        kept = text[: self._budget.text_chars]
        self._budget.text_chars -= len(kept)
        self._pieces.append(kept)
        if len(kept) < len(text):
            raise LimitReached("text limit", "message")

    def text(self) -> str:
        return "".join(self._pieces)


@contextmanager
def text_of(
    found: Found, label: str, budget: Budget, where: Where = "attachment"
) -> Iterator[TextPieces]:
    """Collect one file's text; whatever was collected is kept, even when a limit stops it."""
    pieces = TextPieces(budget)
    try:
        yield pieces
    finally:
        text = pieces.text()
        if text.strip():
            found.texts.append(TextSource(where, text, label))


# --- text ------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM starts it
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:address|article|blockquote|br|dd|div|dl|dt|footer|h[1-6]|header|hr|li|ol"
    r"|p|pre|section|table|tr|ul)\b[^>]*>",
    re.I,
)
_CELL_TAG = re.compile(r"<\s*/?\s*t[dh]\b[^>]*>", re.I)
_NOT_TEXT = {"script", "style", "title", "template", "noscript", "svg", "math", "head"}


def decode_text(data: bytes) -> str:
    """``data`` as text: by its byte-order mark, else UTF-8, else windows-1252.

    Attachments do not tell us their charset parameter, so this guesses the
    way mail clients do; a wrong guess changes letters, not digits."""
    codec = bom_codec(data) or utf16_without_bom(data)
    if codec is not None:
        return data.decode(codec, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def bom_codec(data: bytes) -> str | None:
    """The codec a byte-order mark at the start of ``data`` names."""
    return next((codec for bom, codec in _BOMS if data.startswith(bom)), None)


def utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text written without a byte-order mark (Excel's "Unicode text" export):
    Latin text then has a NUL in nearly every other byte, and none in the others."""
    head = data[: 4096 & ~1]
    if len(head) < 16:
        return None
    for codec, units, highs in (("utf-16-le", head[0::2], head[1::2]),
                                ("utf-16-be", head[1::2], head[0::2])):  # fmt: skip
        if highs.count(0) >= 0.9 * len(highs) and _mostly_text(units):
            return codec
    return None


def _mostly_text(low_bytes: bytes) -> bool:
    printable = sum(1 for b in low_bytes if 32 <= b < 127 or b in (9, 10, 13) or b >= 160)
    return printable >= 0.9 * len(low_bytes)


def html_to_text(markup: str) -> str:
    """The text of an HTML document, block ends as line breaks and cells apart, so that
    "<td>1112</td><td>22333</td>" does not become one number."""
    marked = _CELL_TAG.sub("\t", _BLOCK_TAG.sub("\n", markup))
    return html.unescape(nh3.clean(marked, tags=set(), clean_content_tags=set(_NOT_TEXT)))


# --- zip archives ----------------------------------------------------------------------


class ZipReader:
    """A zip archive whose members are read within the limits, however they lie."""

    def __init__(self, data: bytes, budget: Budget) -> None:
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        self.budget = budget
        self._allowed = max(budget.max_ratio * len(data), RATIO_FLOOR)
        self._unpacked = 0

    def info(self, name: str) -> zipfile.ZipInfo | None:
        try:
            return self.zip.getinfo(name)
        except KeyError:
            return None

    def open(self, info: zipfile.ZipInfo) -> MemberStream:
        return MemberStream(self, info)

    def read(self, info: zipfile.ZipInfo) -> bytes:
        with self.open(info) as stream:
            return b"".join(iter(lambda: stream.read(CHUNK), b""))

    def count(self, size: int) -> None:
        """Count ``size`` more bytes unpacked from this archive against the limits."""
        self._unpacked += size
        self.budget.expanded_bytes -= size
        if self._unpacked > self._allowed:
            raise LimitReached("decompression ratio", "archive")
        if self.budget.expanded_bytes < 0:
            raise LimitReached("size limit", "message")


class MemberStream:
    """One member's bytes, each piece counted before it is handed on; a file-like enough
    for ElementTree, whose ``read`` returns at most one chunk."""

    def __init__(self, archive: ZipReader, info: zipfile.ZipInfo) -> None:
        self._archive = archive
        self._budget = archive.budget
        self._raw = archive.zip.open(info)
        self._allowed = max(self._budget.max_ratio * info.compress_size, RATIO_FLOOR)
        self._unpacked = 0

    def __enter__(self) -> MemberStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()

    def read(self, size: int = -1) -> bytes:
        self._budget.check_time()
        piece = self._raw.read(CHUNK if size < 0 else min(size, CHUNK))
        self._unpacked += len(piece)
        if self._unpacked > self._budget.max_file_bytes:
            raise LimitReached("size limit", "member")
        if self._unpacked > self._allowed:
            raise LimitReached("decompression ratio", "member")
        self._archive.count(len(piece))
        return piece


# --- XML -------------------------------------------------------------------------------


def local_name(tag: object) -> str:
    """An element's name without its namespace (so strict and transitional OOXML agree)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def xml_blocks(stream: MemberStream, blocks: frozenset[str], budget: Budget) -> Iterator[Element]:
    """The elements named in ``blocks`` (local names), each whole when handed out and
    dropped from the tree afterwards, so memory holds about one block at a time."""
    parents: list[Element] = []
    for event, element in SafeElementTree.iterparse(
        stream, events=("start", "end"), forbid_dtd=True
    ):
        if event == "start":
            parents.append(element)
            continue
        budget.check_time()
        parents.pop()
        if local_name(element.tag) in blocks:
            yield element
            _drop(element, parents[-1] if parents else None)


def _drop(element: Element, parent: Element | None) -> None:
    """Free a rendered block. Its tail, if any, is lost: in OOXML and ODF, text between
    paragraphs is layout whitespace."""
    if parent is None:
        element.clear()
    else:
        parent.remove(element)
