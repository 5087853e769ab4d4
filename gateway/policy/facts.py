"""The facts about one message that conditions test.

Gathered once per message: the envelope, the header fields (read from the
raw bytes, never re-serialised), the decoded subject, and the text and
attachment facts from the text extraction. ``extra`` carries facts other
services add, such as mail-authentication verdicts, keyed by name.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol

from gateway import message
from gateway.policy.types import Extracted


@dataclass(frozen=True)
class MessageFacts:
    sender: str  # the envelope sender, "" for <>
    headers: Message = field(repr=False)  # the top-level header fields only
    subject: str | None = field(repr=False)
    extracted: Extracted = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def header_values(self, name: str) -> list[str]:
        return [str(value) for value in self.headers.get_all(name, [])]


def headers_of(raw: bytes) -> Message:
    """The header block of ``raw`` as a stdlib Message (headers only, compat32: lenient)."""
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    return parser.parsebytes(message.header_block(raw), headersonly=True)


class Extractor(Protocol):
    def extract(self, raw: bytes) -> Extracted: ...


def gather(
    raw: bytes,
    sender: str,
    extractor: Extractor | None,
    extra: Mapping[str, Any] | None = None,
) -> MessageFacts:
    """The facts of one message; without an extractor (no rule reads content) no text.
    ``extra`` holds what other services found (mail-authentication verdicts)."""
    headers = headers_of(raw)
    subject = headers.get("subject")
    extracted = extractor.extract(raw) if extractor is not None else Extracted((), ())
    return MessageFacts(
        sender=sender,
        headers=headers,
        subject=decoded(str(subject)) if subject is not None else None,
        extracted=extracted,
        extra=dict(extra or {}),
    )


def decoded(value: str) -> str:
    """An RFC 2047 header value as text; the raw value if it cannot be decoded."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
