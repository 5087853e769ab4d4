"""The facts about one message that conditions test.

Gathered once per message: the envelope, the header fields (read from the
raw bytes, never re-serialised), the decoded subject, and the text and
attachment facts from the text extraction. ``extra`` carries the
mail-authentication verdicts, keyed by the condition that tests them.

The services a condition may ask (protected conversations, recipient-domain
posture, the organisation's directory) are handed over as :class:`Lookups`, typed, so that a renamed
service is an error and not a condition that quietly never fires.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol

from gateway.mail import message
from gateway.mailauth.posture import PostureChecker
from gateway.policy.types import Extracted


class Threads(Protocol):
    """What remembers protected conversations (gateway.store.threads.Threads)."""

    def in_protected_thread(self, message_ids: list[str]) -> bool: ...


class ProtectedBefore(Protocol):
    """Whether Sealgate protected a message with this Message-ID in another SMTP
    transaction than the one being decided (not a retry of it)."""

    def __call__(self, message_id: str) -> bool: ...


class Directory(Protocol):
    """What the organisation's directory says about people (gateway.store.directoryfacts)."""

    def groups_of(self, address: str) -> frozenset[str]: ...

    def phones_of(self, addresses: Iterable[str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class Lookups:
    """Services the policy may ask about a message, each asked only by the condition
    that needs it (and only when a rule uses that condition)."""

    threads: Threads | None = None  # protected_thread
    protected_before: ProtectedBefore | None = None  # protected_thread: the message itself
    posture: PostureChecker | None = None  # recipient_tls
    directory: Directory | None = None  # sender_directory_group; SMS numbers of colleagues


@dataclass(frozen=True)
class MessageFacts:
    sender: str  # the envelope sender, "" for <>
    headers: Message = field(repr=False)  # the top-level header fields only
    subject: str | None = field(repr=False)
    extracted: Extracted = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)  # mail-authentication verdicts
    lookups: Lookups = field(default_factory=Lookups)
    # A copy Sealgate relayed in the clear of a message it protected for other
    # recipients, come back (gateway.outbound.loopmarker): part of a protected conversation.
    protected_copy: bool = False

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
    lookups: Lookups | None = None,
    *,
    protected_copy: bool = False,
) -> MessageFacts:
    """The facts of one message; without an extractor (no rule reads content) no text.
    ``extra`` holds the mail-authentication verdicts."""
    headers = headers_of(raw)
    subject = headers.get("subject")
    extracted = extractor.extract(raw) if extractor is not None else Extracted((), ())
    return MessageFacts(
        sender=sender,
        headers=headers,
        subject=decoded(str(subject)) if subject is not None else None,
        extracted=extracted,
        extra=dict(extra or {}),
        lookups=lookups or Lookups(),
        protected_copy=protected_copy,
    )


def decoded(value: str) -> str:
    """An RFC 2047 header value as text; the raw value if it cannot be decoded."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
