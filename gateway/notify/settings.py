"""What the organisation configures for its notifications: sender, branding, language."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.notify.original import parse_address

LANGUAGES = ("en", "nl")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_DOMAIN_KEY = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Branding:
    """The organisation's name, logo (an absolute URL, normally on the portal host) and colour."""

    organisation: str = "Sealgate"
    logo_url: str | None = None
    colour: str = "#0b5cad"

    def __post_init__(self) -> None:
        if not self.organisation.strip() or not self.organisation.isprintable():
            raise ValueError("branding.organisation: must be a non-empty printable name")
        if len(self.organisation) > 100:
            raise ValueError("branding.organisation: at most 100 characters")
        if not _COLOUR.fullmatch(self.colour):
            raise ValueError('branding.colour: must be "#rrggbb"')
        if self.logo_url is not None:
            check_url(self.logo_url, "branding.logo_url")


@dataclass(frozen=True)
class Settings:
    """How Sealgate writes the messages it sends in its own name."""

    from_address: str
    hostname: str  # the right-hand side of the Message-IDs it makes
    branding: Branding = field(default_factory=Branding)
    reply_to: str = "sender"  # "sender" (the original's sender) | "none" | an address
    subject: dict[str, str] | None = None  # per language: a Jinja2 template for the subject
    language: str = "auto"  # "auto" | "en" | "nl"
    default_language: str = "en"
    domain_languages: dict[str, str] = field(default_factory=dict)  # "nl", "example.be" -> lang
    allow_note: bool = True  # show the sender's X-Sealgate-Note in notifications
    max_note_length: int = 500  # characters of a note shown, the ellipsis included

    def __post_init__(self) -> None:
        parse_address(self.from_address, "from_address")
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", self.hostname):
            raise ValueError("hostname: must be a host name")
        if self.reply_to not in ("sender", "none"):
            parse_address(self.reply_to, "reply_to")
        if self.language not in ("auto", *LANGUAGES):
            raise ValueError('language: must be "auto", "en" or "nl"')
        if self.default_language not in LANGUAGES:
            raise ValueError('default_language: must be "en" or "nl"')
        for key, value in (self.subject or {}).items():
            if key not in LANGUAGES:
                raise ValueError(f"subject: unknown language {key!r} (expected en or nl)")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"subject.{key}: must be a non-empty template")
        for key, value in self.domain_languages.items():
            if not _DOMAIN_KEY.fullmatch(key.lower().strip(".")):
                raise ValueError(f"domain_languages: {key!r} is not a domain or suffix")
            if value not in LANGUAGES:
                raise ValueError(f"domain_languages.{key}: must be en or nl")
        if self.max_note_length < 2:
            raise ValueError("max_note_length: at least 2 characters")


def check_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or not url.isprintable()
        or any(ch in url for ch in " \"'<>\\`")
    ):
        raise ValueError(f"{name}: must be an absolute http(s) URL")
