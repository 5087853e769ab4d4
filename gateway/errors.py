"""Errors that carry their SMTP reply.

Every failure on a message's way ends as an SMTP reply to the sending MTA. A
:class:`GatewayError` knows its reply; anything else is unexpected and answers
``451 4.3.0`` so that the sending MTA keeps the mail and retries (RFC 5321
4.2.5: a 4yz reply leaves the message with the client). A permanent reply is
only ever given for a reason a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_UNSAFE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True)
class SMTPReply:
    """One SMTP reply: basic code, enhanced code (RFC 3463) and a text safe to show."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"not an SMTP reply code: {self.code}")
        if not _ENHANCED.match(self.enhanced) or self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced!r} does not fit {self.code}")

    @property
    def is_success(self) -> bool:
        return self.code < 400

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class GatewayError(Exception):
    """A failure whose SMTP reply is known."""

    reply: SMTPReply

    def __init__(self, reply: SMTPReply, detail: str = "") -> None:
        super().__init__(detail or reply.text)
        self.reply = reply
        self.detail = detail

    @property
    def is_temporary(self) -> bool:
        return self.reply.is_temporary


class TemporaryError(GatewayError):
    """The sending MTA should keep the message and retry later (4xx)."""

    def __init__(self, code: int, enhanced: str, text: str, detail: str = "") -> None:
        if not 400 <= code < 500:
            raise ValueError(f"a temporary error needs a 4xx code, not {code}")
        super().__init__(SMTPReply(code, enhanced, text), detail)


class PermanentError(GatewayError):
    """The message cannot be accepted as it is; retrying will not help (5xx)."""

    def __init__(self, code: int, enhanced: str, text: str, detail: str = "") -> None:
        if not 500 <= code < 600:
            raise ValueError(f"a permanent error needs a 5xx code, not {code}")
        super().__init__(SMTPReply(code, enhanced, text), detail)


INTERNAL_ERROR = SMTPReply(451, "4.3.0", "Internal error; please try again later")


def reply_for(error: BaseException) -> SMTPReply:
    """The reply for any exception: its own if it carries one, else a generic 451.

    The text of an unexpected exception never reaches the client: it may hold
    paths, addresses or message content. Callers log the details.
    """
    if isinstance(error, GatewayError):
        return error.reply
    return INTERNAL_ERROR


def safe_text(text: str, limit: int = 200) -> str:
    """Printable ASCII only, whitespace collapsed, bounded length.

    Used for texts that come from elsewhere (an upstream server's reply) before
    they are passed on to a client or into a log line.
    """
    cleaned = " ".join(_UNSAFE.sub(" ", text).split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3].rstrip() + "..."
    return cleaned
