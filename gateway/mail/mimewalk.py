"""Bytes-level MIME: where each part's header and body lie, and streaming body decoding.

The stdlib parser (``email.message_from_bytes``) copies every body several
times over and peaks near seven times the message size. Sealing a 25 MB
message must stay near one copy, so this module never builds a message tree
of bodies. It walks the raw bytes instead:

- a header section ends at the first empty line (RFC 5322 2.1); CRLF and bare
  LF line ends are both accepted, since mail arrives with either;
- only each part's header block is given to the stdlib parser (compat32,
  headers only), decoded as latin-1 so that every byte maps to one character
  and can be mapped back (boundaries) or re-decoded as UTF-8 (RFC 6532);
- multipart bodies are split at delimiter lines found by searching the raw
  buffer (RFC 2046 5.1.1): ``--boundary`` at the start of a line, optional trailing
  blanks, and the line end before it belongs to the delimiter;
- a body is kept as offsets into the raw message and decoded lazily, one
  slice at a time (RFC 2045 6.7 quoted-printable, 6.8 base64), so memory
  holds about one chunk of output beside the raw bytes.

Everything malformed is tolerated and described in ``problems``; nothing here
raises on bad input.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from email.policy import compat32

import pybase64

MAX_DEPTH = 50
MAX_PARTS = 1000
MAX_HEADER_BYTES = 256 * 1024

_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:|[ \t]")  # a field, or the continuation of one
_BLANK_LINE = re.compile(rb"\n\r?\n")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_LONE_CR = re.compile(rb"\r(?!\n)")
_BLANK_BEFORE_COLON = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.M)
_TOKEN_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_B64 = bytes(set(range(256)) - set(_B64_ALPHABET + b"="))
_IDENTITY = frozenset({"", "7bit", "8bit", "binary", "7-bit", "8-bit"})


@dataclass(frozen=True)
class Body:
    """A body as it lies in the raw message, decoded on demand."""

    raw: bytes = field(repr=False)
    start: int
    end: int
    encoding: str  # "base64", "quoted-printable" or "identity"

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The decoded body in pieces of at most ``size`` bytes."""
        size = max(1, size)
        if self.encoding == "base64":
            pieces = _base64(self.raw, self.start, self.end, size)
        elif self.encoding == "quoted-printable":
            pieces = _quoted_printable(self.raw, self.start, self.end, size)
        else:
            pieces = _identity(self.raw, self.start, self.end, size)
        for piece in pieces:
            for offset in range(0, len(piece), size):
                yield piece[offset : offset + size]

    def decode(self) -> bytes:
        """The whole decoded body (for text bodies, which are read whole anyway)."""
        if self.encoding == "identity":
            return self.raw[self.start : self.end]
        return b"".join(self.chunks(1 << 20))


@dataclass(frozen=True)
class Part:
    """One MIME entity: its header fields, its body, and for a multipart its children."""

    path: str  # "" for the message itself, "1", "1.2", ... for parts (IMAP-style numbering)
    header: Message
    content_type: str
    body: Body
    children: tuple[Part, ...] = ()

    @property
    def where(self) -> str:
        return f"part {self.path}" if self.path else "the message"

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")


def parse(raw: bytes) -> tuple[Part, list[str]]:
    """The MIME tree of ``raw`` and notes on what could not be read as MIME."""
    walker = _Walker(raw)
    start = raw.find(b"\n") + 1 if raw.startswith(b"From ") else 0  # an mbox "From " line
    if not raw:
        walker.problems.append("the message is empty")
    root = walker.part(start, len(raw), "", 0, "text/plain")
    return root, walker.problems


def read_header(data: bytes) -> Message:
    """The header fields at the start of ``data`` (e.g. of an attached message)."""
    head_end, _, _ = _split_head(data, 0, len(data))
    return _parse_header(data[:head_end])


def split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes, limit: int = MAX_PARTS
) -> tuple[list[tuple[int, int]], bool]:
    """The (start, end) of each body part between ``start`` and ``end`` (at most ``limit``),
    and whether the close delimiter was found or the limit reached (RFC 2046 5.1.1).
    Preamble and epilogue are left out."""
    spans: list[tuple[int, int]] = []
    current = -1  # start of the part being read, -1 while in the preamble
    for line_start, closing, line_end in _delimiter_lines(raw, start, end, boundary):
        if current >= 0:
            spans.append((current, max(current, _line_start(raw, line_start))))
        if closing or len(spans) >= limit:
            return spans, True
        current = line_end
    if current >= 0:
        spans.append((current, end))
    return spans, False


def _delimiter_lines(
    raw: bytes, start: int, end: int, boundary: bytes
) -> Iterator[tuple[int, bool, int]]:
    """(start, closes?, end after its line end) of each line that is "--boundary", maybe
    "--" to close, then only blanks. A regex with a leading literal finds them at the speed
    of a plain search, and skips look-alike lines (a longer boundary) without Python work."""
    line = re.escape(b"--" + boundary) + rb"(--)?[ \t]*(?=\r?\n|\Z)"
    first = re.compile(line).match(raw, start, end)
    if first:
        yield start, first[1] is not None, _past_line_end(raw, first.end(), end)
    for found in re.compile(b"\n" + line).finditer(raw, start, end):
        yield found.start() + 1, found[1] is not None, _past_line_end(raw, found.end(), end)


class _Walker:
    """Builds the Part tree, counting parts and collecting problems."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.count = 0

    def part(self, start: int, end: int, path: str, depth: int, default_type: str) -> Part:
        self.count += 1
        where = f"part {path}" if path else "the message"
        head_end, body_start, trouble = _split_head(self.raw, start, end)
        if trouble:
            self.problems.append(f"the header section of {where} {trouble}")
        header = _parse_header(self.raw[start:head_end])
        header.set_default_type(default_type)
        content_type = _content_type(header, where, self.problems)
        body = Body(self.raw, body_start, end, _transfer_encoding(header, where, self.problems))
        children: tuple[Part, ...] = ()
        if content_type.startswith("multipart/"):
            found = self._children(header, body_start, end, path, depth, where)
            if found is None:
                content_type = "text/plain"
                body = Body(self.raw, body_start, end, "identity")
            else:
                children = tuple(found)
        return Part(path, header, content_type, body, children)

    def _children(
        self, header: Message, start: int, end: int, path: str, depth: int, where: str
    ) -> list[Part] | None:
        """The parts of a multipart, or None when it has to be read as text instead."""
        if depth >= MAX_DEPTH:
            self.problems.append(
                f"multipart nesting deeper than {MAX_DEPTH} levels in {where}; "
                "its parts are only in the original message"
            )
            return []
        boundary = header.get_boundary()
        if not boundary:
            self.problems.append(
                f"{where} is multipart without a boundary parameter; its body is read as text"
            )
            return None
        limit = MAX_PARTS - self.count + 1
        boundary_bytes = boundary.encode("latin-1", "replace")
        spans, closed = split_multipart(self.raw, start, end, boundary_bytes, limit)
        if not spans:
            self.problems.append(
                f"{where} is multipart but its boundary never occurs; its body is read as text"
            )
            return None
        if not closed:
            self.problems.append(
                f"unterminated multipart boundary in {where}; its last part runs to the end"
            )
        digest = header.get_content_type() == "multipart/digest"
        default_type = "message/rfc822" if digest else "text/plain"
        parts: list[Part] = []
        for number, (part_start, part_end) in enumerate(spans, 1):
            if self.count >= MAX_PARTS:
                self.problems.append(
                    f"more than {MAX_PARTS} MIME parts; the rest are only in the original message"
                )
                break
            child_path = f"{path}.{number}" if path else str(number)
            parts.append(self.part(part_start, part_end, child_path, depth + 1, default_type))
        return parts


def _split_head(raw: bytes, start: int, end: int) -> tuple[int, int, str]:
    """(end of the header block, start of the body, what was wrong or "") for the entity at
    ``start``. Header lines are fields or continuations, as the stdlib's feedparser reads
    them; the first other line ends the header, and it should be the empty one."""
    pos = start
    while pos < end and _HEADER_LINE.match(raw, pos, end):
        newline = raw.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline + 1
        if line_end - start > MAX_HEADER_BYTES:
            blank = _BLANK_LINE.search(raw, max(start, pos - 1), end)
            return pos, blank.end() if blank else end, "is too large; only its start is read"
        pos = line_end
    if pos == end:
        return pos, pos, ""
    if raw.startswith(b"\n", pos, end) or raw.startswith(b"\r\n", pos, end):
        return pos, _past_line_end(raw, pos, end), ""
    return pos, pos, "ends at a line that is not a header field; the rest is read as its body"


def _parse_header(block: bytes) -> Message:
    """Header fields only, unfolded (RFC 5322 2.2.3), one character per byte. A lone CR
    becomes a blank: the stdlib would end the line there and stop reading fields."""
    unfolded = _BLANK_BEFORE_COLON.sub(rb"\1:", _FOLD.sub(b"", _LONE_CR.sub(b" ", block)))
    return Parser(policy=compat32).parsestr(unfolded.decode("latin-1"), headersonly=True)


def _content_type(header: Message, where: str, problems: list[str]) -> str:
    """The lower-case type/subtype. An unreadable declaration becomes
    application/octet-stream (not RFC 2045 5.2's text/plain), so it is offered, not shown."""
    declared = str(header.get("content-type", "")).split(";", 1)[0].strip().lower()
    if not declared:
        return header.get_default_type()
    if _TOKEN_TYPE.fullmatch(declared):
        return declared
    problems.append(f"unreadable Content-Type in {where}; treated as application/octet-stream")
    return "application/octet-stream"


def _transfer_encoding(header: Message, where: str, problems: list[str]) -> str:
    value = str(header.get("content-transfer-encoding", "")).strip().strip('"').lower()
    if value in ("base64", "quoted-printable"):
        return value
    if value not in _IDENTITY:
        problems.append(f"unknown transfer encoding {value[:40]!r} in {where}; kept as it is")
    return "identity"


def _past_line_end(raw: bytes, pos: int, end: int) -> int:
    """``pos`` moved over the line end (CRLF or LF) that starts there, if any."""
    if raw.startswith(b"\r\n", pos, end):
        return pos + 2
    return pos + 1 if raw.startswith(b"\n", pos, end) else pos


def _line_start(raw: bytes, pos: int) -> int:
    """``pos`` moved back over the line end before it (which belongs to a delimiter)."""
    if raw.startswith(b"\r\n", pos - 2, pos):
        return pos - 2
    return pos - 1 if raw.startswith(b"\n", pos - 1, pos) else pos


def _identity(raw: bytes, start: int, end: int, size: int) -> Iterator[bytes]:
    for pos in range(start, end, size):
        yield raw[pos : min(pos + size, end)]


def _base64(raw: bytes, start: int, end: int, size: int) -> Iterator[bytes]:
    """RFC 2045 6.8, leniently: characters outside the alphabet are ignored, and the first
    "=" ends the data ("may be taken as evidence that the end of the data has been
    reached"). Missing padding is tolerated, as the stdlib does."""
    window = max(4, size // 3 * 4)
    carry = b""
    for pos in range(start, end, window):
        data = carry + raw[pos : min(pos + window, end)].translate(None, _NOT_B64)
        padding = data.find(b"=")
        if padding >= 0:
            yield _decode_unpadded(data[:padding])
            return
        whole = len(data) - len(data) % 4
        carry = data[whole:]
        if whole:  # alphabet only, whole quads: pybase64's strict SIMD path (binascii's 4x time)
            yield pybase64.b64decode(data[:whole], validate=True)
    if carry:
        yield _decode_unpadded(carry)


def decode_base64(data: bytes) -> bytes:
    """A small base64 text decoded with the same leniency as a body (RFC 2047 "B" words)."""
    clean = data.translate(None, _NOT_B64)
    padding = clean.find(b"=")
    return _decode_unpadded(clean if padding < 0 else clean[:padding])


def decode_q(data: bytes) -> bytes:
    """RFC 2047 4.2 "Q" encoded text: "_" is a space, "=XX" a byte."""
    return binascii.a2b_qp(data, header=True)


def _decode_unpadded(data: bytes) -> bytes:
    """Base64 alphabet characters without padding, decoded; a lone last character (six
    bits, not a byte) is dropped."""
    whole = len(data) - len(data) % 4
    rest = data[whole:]
    decoded = binascii.a2b_base64(data[:whole]) if whole else b""
    if len(rest) >= 2:
        decoded += binascii.a2b_base64(rest + b"=" * (4 - len(rest)))
    return decoded


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _quoted_printable(raw: bytes, start: int, end: int, size: int) -> Iterator[bytes]:
    """RFC 2045 6.7 via ``binascii.a2b_qp`` (as the stdlib decodes), cut at line ends so
    that no "=XX" escape or soft line break is split between two slices."""
    pos = start
    while pos < end:
        cut = _qp_cut(raw, pos, end, size)
        yield binascii.a2b_qp(raw[pos:cut])
        pos = cut


def _qp_cut(raw: bytes, pos: int, end: int, size: int) -> int:
    """Where the slice from ``pos`` ends: at a line end before ``pos + size`` if there is
    one, else before the first "=" token that would cross it. Tokens as binascii.a2b_qp
    reads them: a soft line break ("=" then CR or LF) runs through the next LF, "==" is
    two bytes, "=XY" (hex) three, and an "=" before any other byte stays with that byte."""
    limit = pos + size
    if limit >= end:
        return end
    newline = raw.rfind(b"\n", pos, limit)
    if newline >= 0:
        return newline + 1
    at = pos
    while True:
        equals = raw.find(b"=", at, limit)
        if equals < 0:
            return limit
        after = raw[equals + 1 : min(equals + 2, end)]  # raw runs on past this body
        if after in (b"\r", b"\n"):  # a soft line break
            line_end = raw.find(b"\n", equals, end)
            return end if line_end < 0 else line_end + 1
        hexed = raw[equals + 1 : min(equals + 3, end)]
        step = 3 if len(hexed) == 2 and all(b in _HEX for b in hexed) else 2
        if equals + step > limit:
            return equals if equals > pos else min(equals + step, end)
        at = equals + step
