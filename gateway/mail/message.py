"""Reading a message's header without re-serialising it.

A relayed message must leave with the bytes it arrived with, or the sender's
DKIM signature breaks (RFC 6376 3.4: even "relaxed" canonicalisation does not
survive a re-encoded body). So Sealgate never round-trips a relayed message
through :mod:`email`; it reads header fields from the raw bytes and only ever
prepends new fields.
"""

from __future__ import annotations

import functools
import re

CRLF = b"\r\n"
MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}>")  # msg-id: printable ASCII without < > or blanks
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.MULTILINE)


def header_block(data: bytes) -> bytes:
    """The header section including its final CRLF, without the empty separator line."""
    if data.startswith(CRLF):
        return b""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def fields(header: bytes) -> list[tuple[str, bytes, int]]:
    """(lower-case name, raw unfolded value, offset of the field) for each header field."""
    if len(header) <= _REMEMBERED_HEADER:
        return list(_remembered_fields(header))
    return _parse_fields(header)


# Several modules read the same message's header one field at a time (the notification
# alone asks for five), so recent headers' fields are kept: equal bytes, equal fields.
_REMEMBERED_HEADER = 16_384


@functools.lru_cache(maxsize=64)
def _remembered_fields(header: bytes) -> tuple[tuple[str, bytes, int], ...]:
    return tuple(_parse_fields(header))


def _parse_fields(header: bytes) -> list[tuple[str, bytes, int]]:
    return [
        (m.group(1).decode("ascii").lower(), _unfold(m.group(2)), m.start())
        for m in _FIELD.finditer(header)
    ]


def first_value(data: bytes, name: str) -> str | None:
    """The first value of header field ``name`` as text, or None when absent."""
    wanted = name.lower()
    for field_name, value, _ in fields(header_block(data)):
        if field_name == wanted:
            return value.decode("utf-8", "replace").strip()
    return None


def all_values(data: bytes, name: str) -> list[str]:
    """Every value of header field ``name`` as text, in order."""
    wanted = name.lower()
    return [
        value.decode("utf-8", "replace").strip()
        for field_name, value, _ in fields(header_block(data))
        if field_name == wanted
    ]


def _unfold(value: bytes) -> bytes:
    return value.replace(b"\r\n", b"")


def remove_fields(data: bytes, name: str) -> bytes:
    """``data`` without any header field called ``name`` (folded lines included).

    Unsigned fields can be removed without breaking a DKIM signature; the
    rest of the message keeps its bytes.
    """
    header = header_block(data)
    wanted = name.lower()
    spans = [
        (m.start(), m.end() + 2)
        for m in _FIELD.finditer(header)
        if m.group(1).decode("ascii").lower() == wanted
    ]
    if not spans:
        return data
    view = memoryview(data)  # slices of a view are not copies: the result is the one copy
    kept, position = [], 0
    for start, end in spans:
        kept.append(view[position:start])
        position = end
    kept.append(view[position:])
    return b"".join(kept)


def replaced_field(data: bytes, name: str, field: bytes) -> list[bytes | memoryview]:
    """``data`` with its first field called ``name`` replaced by ``field`` (a whole
    "Name: value\\r\\n"), as pieces: views of ``data`` around the new field, so that a
    large message is not copied; ``[data]`` when there is no such field."""
    wanted = name.lower()
    for m in _FIELD.finditer(header_block(data)):
        if m.group(1).decode("ascii").lower() == wanted:
            view = memoryview(data)
            return [view[: m.start()], field, view[m.end() + 2 :]]
    return [data]
