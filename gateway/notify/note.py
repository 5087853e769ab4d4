"""The sender's personal note (``X-Sealgate-Note``), made fit for a notification.

A notification must look like what it is: a message from the organisation
with one link, to its own portal. Recipients are taught that the button is the
only link, and spam filters score notifications by their links. A note is
therefore shown as plain text, on one line, marked as the sender's words, and
*without links*: rendering a URL as text is not enough, because mail clients
turn ``https://…``, ``www.…`` and bare host names (``login.example.com``) into
links of their own. So every such token is replaced by a visible marker
("[link removed]"), and the sender who wants to share a link puts it in the
protected message. E-mail addresses stay: they are how a recipient is told
whom to ask, and look like nothing but what they are.

A bare word with a dot counts as a host name only when its last label is a
top-level domain in the public suffix list (``report.zip`` is one, and is
removed; ``report.pdf`` stays).
"""

from __future__ import annotations

import functools
import re

from publicsuffixlist import PublicSuffixList

from gateway.notify.original import clean_text

ELLIPSIS = "\u2026"
# Any word with "://" in it, or one that starts with "www.".
_URL = re.compile(r"\S*://\S*|(?<![\w.-])www\.\S*", re.IGNORECASE)
# Dotted names not part of an e-mail address or a longer word, with an optional port and path.
_HOST = re.compile(
    r"(?<![\w@.-])((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+([^\W\d_]{2,63}|xn--[a-z0-9-]{1,59}))"
    r"(?![\w@-])(?::\d{1,5})?(?:/\S*)?",
    re.IGNORECASE,
)


def shown(note: str | None, limit: int, marker: str) -> str | None:
    """``note`` as a notification shows it: on one line, control and format characters
    gone, every link replaced by ``marker``, at most ``limit`` characters (cut with an
    ellipsis); None when nothing is left. Never fails, whatever the note holds."""
    if not note:
        return None
    text = clean_text(note, len(note))  # first: a hidden character must not split a link
    if text is None:
        return None
    text = _URL.sub(marker, text)
    text = _HOST.sub(lambda m: marker if _top_level(m.group(2)) else m.group(0), text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text or None


def _top_level(label: str) -> bool:
    """Whether ``label`` is a top-level domain (``com``, ``nl``, ``zip``, ``xn--p1ai``)."""
    try:
        return _suffixes().publicsuffix(label.lower()) is not None
    except (ValueError, UnicodeError):
        return False


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The public suffix list packaged with ``publicsuffixlist``, read once (about 35 ms).
    Unknown labels are not suffixes: ``pdf`` is no top-level domain."""
    return PublicSuffixList(accept_unknown=False)
