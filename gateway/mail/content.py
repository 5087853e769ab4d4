"""The content model: what a reader of a sealed message needs, read from its raw bytes.

``extract`` turns a received message into display headers, a text and a
sanitised HTML body, and attachments that stream their decoded bytes. The
original message is always sealed beside this, so nothing here has to be
perfect, only honest: whatever cannot be interpreted is described in
``Content.problems`` (never with body text) instead of being dropped silently,
and malformed input never raises.

Structure comes from :mod:`gateway.mail.mimewalk` (RFC 2045/2046, without
holding decoded copies of the bodies). This module interprets it:

- the body: the first text/plain and text/html that are not attachments,
  both taken from the first multipart/alternative or multipart/related
  (RFC 2046 5.1.4, RFC 2387) when the message has one; every other leaf part
  is an attachment, including message/rfc822 (kept whole, not descended
  into), application/ms-tnef (winmail.dat, not interpreted) and text/calendar;
- header fields: RFC 2047 encoded words are decoded here rather than with
  ``email.header.decode_header``, which mangles raw UTF-8 text beside encoded
  words (RFC 6532 allows it) and raises on bad base64; adjacent words in one
  charset are joined before decoding, so a character split between two words
  survives;
- parameters: RFC 2231 values (charset, continuations) as the stdlib reads
  them, and RFC 2047 words in file names, which many mailers write;
- charsets: the declared one, else UTF-8, else windows-1252 with replacements.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import Message
from email.utils import getaddresses
from functools import cache

from gateway.mail import mimewalk
from gateway.mail.sanitize import sanitise_html

MAX_PROBLEMS = 100
MAX_FILENAME = 200
MAX_BODY_BYTES = 8 * 1024 * 1024  # a larger text body is offered as an attachment instead

_log = logging.getLogger(__name__)

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_MESSAGE_ID = re.compile(r"<[^<>]*>")
_CID_REFERENCE = re.compile(r"cid:([^\"'\s>]+)", re.I)
_ADDRESS_SPECIALS = frozenset('()<>[]:;@\\,."')
_NAME_DROPPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, bidi overrides, ...
_ATTACHED_MESSAGES = frozenset({"message/rfc822", "message/global"})


@dataclass(frozen=True)
class Headers:
    """The header fields a reader sees, decoded for display."""

    from_: list[str]
    to: list[str]
    cc: list[str]
    date: str | None
    subject: str | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "from": list(self.from_),
            "to": list(self.to),
            "cc": list(self.cc),
            "date": self.date,
            "subject": self.subject,
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": list(self.references),
        }


@dataclass(frozen=True, eq=False)
class AttachmentSource:
    """One attachment: its description and its decoded bytes on demand.

    ``disposition`` is "inline" when the HTML body shows the part through a
    ``cid:`` reference to ``content_id``, else "attachment" (offered for
    download). ``filename`` never holds path separators (replaced by "_") or
    control and bidi-formatting characters."""

    filename: str = field(repr=False)
    content_type: str
    disposition: str
    content_id: str | None
    _body: mimewalk.Body = field(repr=False)

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The decoded bytes in pieces of at most ``size``, read afresh on every call from
        the raw message; memory holds about one piece at a time."""
        return self._body.chunks(size)


@dataclass(frozen=True)
class Content:
    """What a reader needs; ``problems`` says what could not be interpreted, never quoting
    body text (the original message, sealed beside, holds everything)."""

    headers: Headers = field(repr=False)  # reprs never show content (logs, tracebacks)
    text: str | None = field(repr=False)
    html: str | None = field(repr=False)
    attachments: list[AttachmentSource]
    problems: list[str]


def extract(raw: bytes) -> Content:
    """The content model of ``raw``; never raises on malformed input."""
    try:
        return _extract(raw)
    except MemoryError:
        raise
    except Exception as exc:  # the last wall: the sealed original still holds everything
        _log.warning("content extraction failed: %s", type(exc).__name__)
        problem = "no MIME structure could be read; the original message holds everything"
        return Content(Headers([], [], [], None, None, None, None, []), None, None, [], [problem])


def with_subject(content: Content, field: bytes) -> Content:
    """``content`` as the same message would read with its Subject field replaced by
    ``field`` (a whole "Subject: ...\\r\\n"): what sealing shows of a message whose
    protection tags it removed without copying the message."""
    subject = _unstructured(mimewalk.read_header(field + b"\r\n"), "subject", [])
    return replace(content, headers=replace(content.headers, subject=subject))


def _extract(raw: bytes) -> Content:
    root, problems = mimewalk.parse(raw)
    headers = _headers(root.header, problems)
    reader = _BodyReader(problems)
    reader.visit(root, in_group=False)
    html = None if reader.html is None else sanitise_html(reader.html)
    attachments = _attachments(reader.others, html, problems)
    return Content(headers, reader.text, html, attachments, _capped(problems))


class _BodyReader:
    """Walks the tree in order: fills the text and HTML slots, collects the other leaves."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.text: str | None = None
        self.html: str | None = None
        self.body_read = False
        self.others: list[mimewalk.Part] = []

    def visit(self, part: mimewalk.Part, in_group: bool) -> None:
        if part.is_multipart:
            group = not self.body_read and part.content_type in (
                "multipart/alternative",
                "multipart/related",
            )
            for child in part.children:
                self.visit(child, in_group or group)
            self.body_read = self.body_read or group
        elif (in_group or not self.body_read) and _is_body(part) and self._fill(part):
            self.body_read = self.body_read or not in_group
        else:
            self.others.append(part)

    def _fill(self, part: mimewalk.Part) -> bool:
        """Take ``part`` as the text or HTML body if that slot is still empty."""
        is_text = part.content_type == "text/plain"
        if (self.text if is_text else self.html) is not None:
            return False
        if part.body.end - part.body.start > MAX_BODY_BYTES:
            self.problems.append(
                f"the text of {part.where} is too large to show; it is offered as an attachment"
            )
            return False
        if is_text:
            self.text = self._decode(part)
        else:
            self.html = self._decode(part)
        return True

    def _decode(self, part: mimewalk.Part) -> str:
        charset = part.header.get_content_charset()
        text = _decode(part.body.decode(), charset, part.where, self.problems)
        return text.replace("\r\n", "\n")


def _is_body(part: mimewalk.Part) -> bool:
    return (
        part.content_type in ("text/plain", "text/html")
        and part.header.get_content_disposition() != "attachment"
        and not part.header.get_param("filename", None, "content-disposition")
        and not part.header.get_param("name", None, "content-type")
    )


def _decode(data: bytes, charset: str | None, where: str, problems: list[str]) -> str:
    """``data`` as text that is valid Unicode: some codecs (UTF-7, UTF-16) can yield
    lone surrogates, which JSON-as-UTF-8 and the HTML sanitiser refuse."""
    text = _decode_charset(data, charset, where, problems)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(f"invalid characters in {where} replaced")
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _decode_charset(data: bytes, charset: str | None, where: str, problems: list[str]) -> str:
    """``data`` as text: the declared charset, else UTF-8, else windows-1252."""
    if charset:
        try:
            return data.decode(charset)
        except LookupError:
            reason = f"unknown charset {charset[:40]!r} in {where}"
        except ValueError:
            reason = f"text that is not valid {charset[:40]} in {where}"
    elif data.isascii():
        return data.decode("ascii")
    else:
        reason = f"8-bit text without a charset in {where}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{reason}, decoded as windows-1252 with replacements")
        return data.decode("cp1252", "replace")
    if charset:
        problems.append(f"{reason}, decoded as UTF-8")
    return text


# --- header fields -----------------------------------------------------------------


def _headers(header: Message, problems: list[str]) -> Headers:
    return Headers(
        from_=_addresses(header, "from", problems),
        to=_addresses(header, "to", problems),
        cc=_addresses(header, "cc", problems),
        date=_unstructured(header, "date", problems),
        subject=_unstructured(header, "subject", problems),
        message_id=next(iter(_message_ids(header, "message-id")), None),
        in_reply_to=next(iter(_message_ids(header, "in-reply-to")), None),
        references=_message_ids(header, "references"),
    )


def _field_text(value: object) -> str:
    """A header value as the parser gave it (one character per byte), read as UTF-8
    (RFC 6532) or, failing that, windows-1252."""
    data = str(value).encode("latin-1", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _unstructured(header: Message, name: str, problems: list[str]) -> str | None:
    value = header.get(name)
    return None if value is None else _decode_words(_field_text(value), problems).strip()


def _addresses(header: Message, name: str, problems: list[str]) -> list[str]:
    shown: list[str] = []
    for value in header.get_all(name, []):
        text = _field_text(value)
        pairs = [(n, a) for n, a in getaddresses([text]) if n or a]
        if not pairs and text.strip():
            shown.append(_decode_words(text, problems).strip())
        for display_name, address in pairs:
            shown.append(_address(_decode_words(display_name, problems).strip(), address))
    return shown


def _address(name: str, address: str) -> str:
    if not name or not address:
        return name or address
    if _ADDRESS_SPECIALS.intersection(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def _message_ids(header: Message, name: str) -> list[str]:
    text = " ".join(_field_text(value) for value in header.get_all(name, []))
    return _MESSAGE_ID.findall(text) or text.split()


def _decode_words(text: str, problems: list[str]) -> str:
    """RFC 2047 encoded words decoded; blanks between adjacent words dropped (6.2)."""
    pieces: list[str] = []
    run: list[tuple[str, bytes]] = []  # adjacent encoded words: (charset, decoded bytes)
    pos = 0
    for word in _ENCODED_WORD.finditer(text):
        between = text[pos : word.start()]
        if not run or between.strip():
            pieces += [_join_words(run, problems), between]
            run = []
        charset = word[1].partition("*")[0].lower()  # RFC 2231 6: "*" introduces a language
        data = _word_bytes(word[2], word[3])
        if run and run[-1][0] == charset:
            run[-1] = (charset, run[-1][1] + data)
        else:
            run.append((charset, data))
        pos = word.end()
    pieces += [_join_words(run, problems), text[pos:]]
    return "".join(pieces)


def _word_bytes(encoding: str, encoded: str) -> bytes:
    data = encoded.encode("utf-8")
    if encoding in "bB":
        return mimewalk.decode_base64(data)
    return mimewalk.decode_q(data)


def _join_words(run: list[tuple[str, bytes]], problems: list[str]) -> str:
    return "".join(_decode(data, charset, "the header fields", problems) for charset, data in run)


# --- attachments ---------------------------------------------------------------------


def _attachments(
    parts: list[mimewalk.Part], html: str | None, problems: list[str]
) -> list[AttachmentSource]:
    shown = _cid_references(html or "")
    sources: list[AttachmentSource] = []
    for number, part in enumerate(parts, 1):
        content_id = _content_id(part.header)
        inline = (
            content_id is not None
            and content_id.lower() in shown
            and part.header.get_content_disposition() != "attachment"
        )
        sources.append(
            AttachmentSource(
                filename=_filename(part, number, problems),
                content_type=part.content_type,
                disposition="inline" if inline else "attachment",
                content_id=content_id,
                _body=part.body,
            )
        )
    return sources


def _cid_references(html: str) -> set[str]:
    """The content ids the (sanitised) HTML shows through ``cid:`` URLs (RFC 2392)."""
    return {urllib.parse.unquote(ref).lower() for ref in _CID_REFERENCE.findall(html)}


def _content_id(header: Message) -> str | None:
    value = header.get("content-id")
    content_id = None if value is None else _field_text(value).strip().strip("<>").strip()
    return content_id or None


def _filename(part: mimewalk.Part, number: int, problems: list[str]) -> str:
    declared = _param(part, "filename", "content-disposition", problems) or _param(
        part, "name", "content-type", problems
    )
    name = clean_filename(declared or "")
    if name:
        return name
    if part.content_type in _ATTACHED_MESSAGES:
        return f"{clean_filename(_attached_subject(part, problems)) or 'message'}.eml"
    if part.content_type == "text/calendar":
        return "invite.ics"
    if part.content_type == "application/ms-tnef":
        return "winmail.dat"
    return f"attachment-{number}{_mime_types().guess_extension(part.content_type) or '.bin'}"


def _param(part: mimewalk.Part, name: str, field_name: str, problems: list[str]) -> str | None:
    """A parameter's text: RFC 2231 (charset, language, text) or plain, then RFC 2047."""
    value = part.header.get_param(name, None, field_name)
    if isinstance(value, tuple):
        charset, _, text = value
        where = f"the file name of {part.where}"
        return _decode(str(text).encode("latin-1", "replace"), charset or None, where, problems)
    return _decode_words(_field_text(value), problems) if value else None


def clean_filename(name: str) -> str:
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in _NAME_DROPPED)
    kept = kept.replace("/", "_").replace("\\", "_").strip().strip(".").strip()
    if len(kept) <= MAX_FILENAME:
        return kept
    stem, dot, extension = kept.rpartition(".")
    if dot and stem and len(extension) <= 16:
        return f"{stem[: MAX_FILENAME - len(extension) - 1]}.{extension}"
    return kept[:MAX_FILENAME]


def _attached_subject(part: mimewalk.Part, problems: list[str]) -> str:
    """The Subject of an attached message, read from the start of its decoded body."""
    head = b""
    for chunk in part.body.chunks(16384):
        head += chunk
        if b"\n\n" in head or b"\n\r\n" in head or len(head) >= 65536:
            break
    return _unstructured(mimewalk.read_header(head), "subject", problems) or ""


@cache
def _mime_types() -> mimetypes.MimeTypes:
    """Python's built-in type map only, so names do not depend on the host's mime.types."""
    return mimetypes.MimeTypes()


def _capped(problems: list[str]) -> list[str]:
    unique = list(dict.fromkeys(problems))
    if len(unique) <= MAX_PROBLEMS:
        return unique
    return [*unique[:MAX_PROBLEMS], f"... and {len(unique) - MAX_PROBLEMS} more problems"]
