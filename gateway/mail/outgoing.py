"""What leaves Sealgate: the message without the instructions meant for Sealgate.

Header fields that policy packs list as instructions (``X-Sealgate-Protect``)
are removed from everything that leaves; they are not covered by senders'
DKIM signatures in practice, so removing them breaks nothing. Subject tags
(``[secure]``) are removed only from what is sealed: the subject is signed,
so relayed copies keep it as it is.
"""

from __future__ import annotations

import email.header
import re
from collections.abc import Sequence

from gateway.mail import message


def without_headers(data: bytes, names: Sequence[str]) -> bytes:
    for name in names:
        data = message.remove_fields(data, name)
    return data


def subject_without_tags(data: bytes, tags: Sequence[str]) -> bytes | None:
    """The Subject field ``data`` has with every tag removed (case-insensitively), a whole
    "Subject: ...\\r\\n"; None when there is nothing to remove. What is sealed has it in
    place of the original's (``message.replaced_field``), without a copy of the message."""
    subject = _subject(data)
    if subject is None or not tags:
        return None
    stripped = subject
    for tag in tags:
        stripped = re.sub(r"\s*" + re.escape(tag) + r"\s*", " ", stripped, flags=re.IGNORECASE)
    stripped = " ".join(stripped.split())
    if stripped == subject:
        return None
    return _subject_field(stripped)


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
