"""What notifications take from the original message, cleaned and bounded.

Only the sender's address and display name, the sender's note
(``X-Sealgate-Note``, which gateway.notify.note makes fit to show) and (for the
threading headers) its Message-ID and References, ever reach a notification;
the subject is kept for an administrator's subject template that chooses to
reveal it. Whatever the original's header fields hold, cleaning them cannot
fail: a notification that cannot be written would defer the message for ever.
"""

from __future__ import annotations

import email.header
import email.policy
import email.utils
import re
import unicodedata
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage

from gateway.mail import message
from gateway.mail.instructions import NOTE_FIELD
from gateway.mail.message import MESSAGE_ID

MAX_REFERENCES = 20
_MAX_NAME = 78
_MAX_SUBJECT = 250
_MAX_NOTE = 4000  # characters of a note read at all; what is shown is shorter
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_BREAKING = ("Cc", "Cf", "Zl", "Zp")
_DOT_ATOM = re.compile(r"[^\s()<>\[\]:;@\\,\"]+")
_DOMAIN = re.compile(r"[^\s()<>\[\]:;@\\,\"]+|\[[!-Z^-~]+\]")  # a name or [literal]


def display_name(name: str) -> str | None:
    """A display name safe to put in a header: no control or line-breaking characters.

    None (notifications then name the bare address) when the name holds bytes that
    are no text in any charset: undecodable encoded words, raw 8-bit bytes that are
    not UTF-8 (read as surrogates, or as U+FFFD by a lenient decoder).
    """
    if any(unicodedata.category(ch) == "Cs" or ch == "\ufffd" for ch in name):
        return None
    cleaned = clean_text(name, _MAX_NAME)
    return cleaned if cleaned is not None and _writable(cleaned) else None


def _writable(name: str) -> bool:
    """Whether the header writer can put ``name`` in From and Subject fields.

    It re-reads what looks like an encoded word (``=?utf-8?b?wPc=?=`` left over
    when decoding failed) and fails on one that is not text: try it once here
    rather than fail on every notification of the message.
    """
    msg = EmailMessage(policy=email.policy.SMTP)  # ASCII: the writer makes encoded words
    try:
        msg["From"] = Address(display_name=name, username="x", domain="example.org")
        msg["Subject"] = name
        msg.as_bytes()
    except (UnicodeError, ValueError, IndexError, HeaderParseError):
        return False
    return True


def clean_text(text: str, limit: int) -> str | None:
    """``text`` on one line: control and format characters become blanks, runs of blanks
    one blank, at most ``limit`` characters; None when nothing is left."""
    kept = "".join(" " if unicodedata.category(ch) in _BREAKING else ch for ch in text)
    kept = " ".join(kept.split())[:limit].strip()
    return kept or None


def parse_address(text: str, what: str = "address") -> Address:
    """``text`` as an :class:`Address` that can be written in a header; ValueError if not.

    Non-ASCII local parts and domains are kept (they need SMTPUTF8); the error
    names ``what`` but never repeats the address.
    """
    local, at, domain = text.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or len(text) > 320
        or any(unicodedata.category(ch) in (*_BREAKING, "Zs") for ch in domain)
        or not _DOMAIN.fullmatch(domain)
        or any(unicodedata.category(ch) in _BREAKING for ch in local)
    ):
        raise ValueError(f"{what}: not an address that can be written in a header")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        username = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    elif _DOT_ATOM.fullmatch(local) and ".." not in local and not local.startswith("."):
        username = local
    else:
        raise ValueError(f"{what}: not an address that can be written in a header")
    try:
        return Address(username=username, domain=domain)
    except (ValueError, IndexError, HeaderParseError) as error:
        raise ValueError(f"{what}: not an address that can be written in a header") from error


@dataclass(frozen=True)
class Original:
    """The few facts of the original message a notification may use."""

    sender: str  # the envelope sender
    sender_name: str | None
    subject: str | None
    message_id: str | None
    references: tuple[str, ...]
    content_language: str | None
    note: str | None = None  # the sender's note, decoded, on one line; not yet fit to show

    @classmethod
    def of(cls, sender: str, data: bytes) -> Original:
        """Read the original's header; never fails, whatever the header holds."""
        name, _ = email.utils.parseaddr(message.first_value(data, "from") or "")
        message_id = (message.first_value(data, "message-id") or "").strip()
        subject = message.first_value(data, "subject")
        note = message.first_value(data, NOTE_FIELD)
        return cls(
            sender=sender,
            sender_name=display_name(_decoded(name)),
            subject=clean_text(_decoded(subject), _MAX_SUBJECT) if subject else None,
            message_id=message_id if MESSAGE_ID.fullmatch(message_id) else None,
            references=_references(data),
            content_language=_content_language(message.first_value(data, "content-language")),
            note=clean_text(_decoded(note[: _MAX_NOTE * 4]), _MAX_NOTE) if note else None,
        )

    @property
    def shown(self) -> str:
        """How notifications name the sender: the display name, else the address."""
        return self.sender_name or self.sender or "?"

    @property
    def thread(self) -> tuple[str, ...]:
        """References for a message answering the original: its references and its id."""
        ids = self.references + ((self.message_id,) if self.message_id else ())
        return bounded_references(ids)


def bounded_references(ids: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Valid message ids, without repeats; the first and the most recent when too many."""
    seen: dict[str, None] = {}
    for value in ids:
        if MESSAGE_ID.fullmatch(value):
            seen.setdefault(value)
    kept = tuple(seen)
    if len(kept) > MAX_REFERENCES:
        kept = kept[:1] + kept[-(MAX_REFERENCES - 1) :]
    return kept


def _references(data: bytes) -> tuple[str, ...]:
    """The References of the original, or (RFC 5322 3.6.4) its single In-Reply-To."""
    found = MESSAGE_ID.findall(message.first_value(data, "references") or "")
    if not found:
        in_reply_to = MESSAGE_ID.findall(message.first_value(data, "in-reply-to") or "")
        found = in_reply_to if len(in_reply_to) == 1 else []
    return bounded_references(found)


def _content_language(value: str | None) -> str | None:
    """The language tags of Content-Language (RFC 3282), lower case, comma separated."""
    if not value:
        return None
    tags = [t.strip() for t in value.split(",")]
    kept = [t.lower() for t in tags if _LANGUAGE_TAG.fullmatch(t)][:8]
    return ", ".join(kept) or None


def _decoded(text: str | None) -> str:
    """RFC 2047 encoded words decoded; the text as it is when they cannot be."""
    if not text:
        return ""
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError, AssertionError):
        return text
