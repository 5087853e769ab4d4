"""Which recipients get a sealed copy, until policy packs decide it (gateway.policy).

A sender asks for protection with a subject tag such as ``[secure]`` or with
the header ``X-Sealgate-Protect: yes``. Recipients in the configured internal
domains still get the message as it is; every other recipient gets a sealed
envelope. The tag is removed from the subject of what is sealed, and the
header from everything that leaves, so neither reaches a recipient.

Relayed copies keep their subject untouched: the subject is covered by the
sender's DKIM signature, while the removed header is not signed in practice.
"""

from __future__ import annotations

import email.header
import re
from dataclasses import dataclass, field

from gateway import config, message


@dataclass(frozen=True)
class Protection:
    """The interim decision for one message."""

    protected: tuple[str, ...]  # recipients that get a sealed envelope
    relayed: tuple[str, ...]  # recipients that get the message as it is
    reason: str  # why, for the log: the tag or header that asked for it
    sealed_bytes: bytes = field(repr=False)  # what is sealed: tag and header removed
    relayed_bytes: bytes = field(repr=False)  # what is relayed: header removed


class Triggers:
    def __init__(self, settings: config.Protect) -> None:
        self.settings = settings
        self._tags = [
            (tag, re.compile(r"\s*" + re.escape(tag) + r"\s*", re.IGNORECASE))
            for tag in settings.subject_tags
            if tag
        ]

    def decide(self, data: bytes, rcpt_tos: tuple[str, ...]) -> Protection | None:
        """None when nothing asks for protection (or no recipient is external)."""
        reason = self._reason(data)
        relayed_bytes = message.remove_fields(data, self.settings.header)
        if reason is None:
            return None
        internal = set(self.settings.internal_domains)
        protected = tuple(r for r in rcpt_tos if _domain(r) not in internal)
        relayed = tuple(r for r in rcpt_tos if _domain(r) in internal)
        if not protected:
            return None
        sealed_bytes = self._strip_tags(relayed_bytes)
        return Protection(protected, relayed, reason, sealed_bytes, relayed_bytes)

    def clean(self, data: bytes) -> bytes:
        """What leaves for a recipient who is not protected: the header removed."""
        return message.remove_fields(data, self.settings.header)

    def _reason(self, data: bytes) -> str | None:
        flag = message.first_value(data, self.settings.header)
        if flag is not None and flag.strip().lower() in ("yes", "true", "1", "on"):
            return f"header {self.settings.header}"
        subject = _subject(data)
        for tag, pattern in self._tags:
            if subject is not None and pattern.search(subject):
                return f"subject tag {tag}"
        return None

    def _strip_tags(self, data: bytes) -> bytes:
        subject = _subject(data)
        if subject is None:
            return data
        stripped = subject
        for _, pattern in self._tags:
            stripped = pattern.sub(" ", stripped)
        stripped = " ".join(stripped.split())
        if stripped == subject:
            return data
        return message.replace_field(data, "subject", _subject_field(stripped))


def _subject(data: bytes) -> str | None:
    raw = message.first_value(data, "subject")
    if raw is None:
        return None
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return raw


def _subject_field(text: str) -> bytes:
    if text.isascii():
        return b"Subject: " + text.encode("ascii") + b"\r\n"
    encoded = email.header.Header(text, "utf-8", header_name="Subject").encode(linesep="\r\n")
    return b"Subject: " + encoded.encode("ascii") + b"\r\n"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")
