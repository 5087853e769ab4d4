"""Our own mails written as bytes, straight from their parts.

``EmailMessage`` builds every header field through its header registry (parse,
then fold again) and then flattens the tree: for each notification that was a
third of the event loop's time on the protected path (profiled with py-spy, 20
sessions). The messages Sealgate writes have a fixed shape — a few known header
fields and a text/HTML multipart/alternative — so they are written here
directly, with the standard library's encoders where encoding is needed: RFC
2047 encoded words for non-ASCII text and display names, quoted-printable for
the bodies. Every value arrives already cleaned (one line, no control
characters; message ids checked against the msg-id syntax).
"""

from __future__ import annotations

import email.header
import email.quoprimime
import email.utils
import os
import re
from email.headerregistry import Address

_MAX_LINE = 78
_CRLF = "\r\n"
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def needs_utf8(*addresses: Address | None) -> bool:
    """Whether a message must be written as UTF-8 (RFC 6532): an address is not ASCII."""
    return not all(a.addr_spec.isascii() for a in addresses if a is not None)


def address(value: Address, utf8: bool = False) -> str:
    """``Name <local@domain>``; a non-ASCII display name as an RFC 2047 encoded word,
    or as UTF-8 in a UTF-8 message."""
    if not utf8:
        return email.utils.formataddr((value.display_name, value.addr_spec))
    name = value.display_name
    if not name:
        return value.addr_spec
    if _SPECIALS.search(name):
        name = f'"{email.utils.quote(name)}"'
    return f"{name} <{value.addr_spec}>"


def unstructured(name: str, value: str, utf8: bool = False) -> str:
    """A text field (Subject) folded to 78 characters; non-ASCII text as encoded words,
    or as UTF-8 in a UTF-8 message."""
    if utf8 or value.isascii():
        return _fold(value, len(name) + 2)
    header = email.header.Header(value, "utf-8", maxlinelen=_MAX_LINE, header_name=name)
    return header.encode(linesep=_CRLF)


def _fold(value: str, used: int) -> str:
    """``value`` broken at spaces so that lines stay within 78 characters where they can."""
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > _MAX_LINE:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    return f"{_CRLF} ".join([*lines, line])


def ids(values: tuple[str, ...]) -> str:
    """Message ids separated by folding white space, each line within 78 characters."""
    lines: list[str] = []
    line = ""
    for value in values:
        if line and len(line) + 1 + len(value) > _MAX_LINE - len("References: "):
            lines.append(line)
            line = value
        else:
            line = f"{line} {value}" if line else value
    return f"{_CRLF} ".join([*lines, line])


def quoted_printable(text: str) -> str:
    """UTF-8 text as quoted-printable lines of at most 76 characters, CRLF line ends."""
    lines = text.encode("utf-8").splitlines()
    latin = b"\n".join(lines).decode("latin-1") + "\n"  # bytes as code points 0-255
    return email.quoprimime.body_encode(latin, maxlinelen=76, eol=_CRLF)


def alternative(fields: list[tuple[str, str]], text: str, html: str, language: str) -> bytes:
    """A multipart/alternative message (text, then HTML) under ``fields``, as bytes.

    Header fields that are non-ASCII after encoding (an internationalised
    address, RFC 6532) are written as UTF-8.
    """
    boundary = f"==sealgate-{os.urandom(12).hex()}=="  # '=' never occurs in QP text raw
    head = [f"{name}: {value}" for name, value in fields]
    head += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        f"Content-Language: {language}",
    ]
    parts = []
    for subtype, body in (("plain", text), ("html", html)):
        parts.append(
            f"--{boundary}{_CRLF}"
            f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
            f"Content-Transfer-Encoding: quoted-printable{_CRLF}{_CRLF}"
            f"{quoted_printable(body)}"
        )
    message = _CRLF.join(head) + _CRLF + _CRLF + "".join(parts) + f"--{boundary}--{_CRLF}"
    return message.encode("utf-8")
