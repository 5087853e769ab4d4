"""E-mail addresses in text: a pragmatic subset of the RFC 5322 addr-spec.

Found: a dot-atom local part (letters and digits of any script, as RFC 6531
allows, and ``! # $ % & ' * + / = ? ^ _ ` { | } ~ -``; dots between atoms, so
plus-tags and ``first.last`` work), ``@``, and a domain of dot-separated labels
(letters, digits and inner hyphens, internationalised ones too) ending in an
alphabetic or ``xn--`` top-level label. Not found: quoted local parts, comments
and address literals (``user@[192.0.2.1]``), which people do not write in prose,
and image and code file names that look like addresses (``logo@2x.png``: no
top-level domain is named png, jpg, jpeg, gif, svg, webp, bmp, ico, tif, tiff, css
or js).
RFC 5321's limits apply: at most 64 octets before the ``@``, 253 after, 63 per
label.

Options: ``exclude_domains`` drops addresses at those domains and their
subdomains (the organisation's own); ``personal_only`` drops role addresses
(``info@``, ``noreply@``, ``support@`` ... :data:`ROLE_NAMES`, a plus-tag
ignored). The value of a hit is the address in lower case, so the engine can
count distinct people.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.policy.detectors._common import (
    Frozen,
    Match,
    bool_option,
    check_keys,
    compile_re2,
    encode,
    scan,
    str_list_option,
)
from gateway.policy.types import Detector, DetectorConfigError

NAME = "email_addresses"

ROLE_NAMES = frozenset(
    {
        "abuse", "accounts", "admin", "administratie", "administration", "administrator",
        "alerts", "billing", "bounce", "bounces", "careers", "contact", "customerservice",
        "do-not-reply", "donotreply", "dpo", "facturen", "factuur", "finance", "hello", "help",
        "helpdesk", "hostmaster", "hr", "info", "inkoop", "invoice", "invoices", "jobs",
        "klantenservice", "legal", "mail", "mailer-daemon", "marketing", "media", "news",
        "newsletter", "nieuwsbrief", "no-reply", "noreply", "notifications", "office", "orders",
        "pers", "postmaster", "press", "privacy", "purchasing", "receptie", "reception", "root",
        "sales", "secretariaat", "security", "service", "support", "team", "vacatures",
        "verkoop", "webmaster",
    }
)  # fmt: skip

_OPTIONS = ("exclude_domains", "personal_only")
# File extensions that are no top-level domain (IANA root zone), seen in "name@2x.png".
_FILE_EXTENSIONS = frozenset(
    {"bmp", "css", "gif", "ico", "jpeg", "jpg", "js", "png", "svg", "tif", "tiff", "webp"}
)
_ATOM = r"[\pL\pN\pM!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[\pL\pN](?:[\pL\pN\pM-]*[\pL\pN\pM])?"
_TOP_LABEL = r"(?:(?i:xn--)[0-9A-Za-z-]+|\pL[\pL\pM]+)"
_CANDIDATE = compile_re2(
    rf"({_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TOP_LABEL})(?:$|[^\pL\pN\pM_-])"
)


def _domain_key(domain: str) -> str:
    """A domain in one comparable form: lower-case, internationalised labels as ``xn--``."""
    domain = domain.lower().rstrip(".")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _plausible(local: str, domain: str) -> bool:
    """Within RFC 5321's length limits, and not a file name."""
    if len(local.encode()) > 64 or len(domain.encode()) > 253:
        return False
    labels = domain.split(".")
    return labels[-1] not in _FILE_EXTENSIONS and all(len(label.encode()) <= 63 for label in labels)


class EmailDetector(Frozen):
    """Finds e-mail addresses; see the module docstring."""

    __slots__ = ("name", "_excluded", "_personal_only")
    name: str
    _excluded: frozenset[str]
    _personal_only: bool

    def __init__(self, excluded: frozenset[str], personal_only: bool) -> None:
        self._init(name=NAME, _excluded=excluded, _personal_only=personal_only)

    def find(self, text: str) -> list[str]:
        data = encode(text)
        if b"@" not in data:  # most text has no address: skip the scan
            return []
        return scan(_CANDIDATE, data, self._check)

    def _check(self, data: bytes, match: Match) -> tuple[str | None, int]:
        start, end = match.span(1)
        address = data[start:end].decode("utf-8").lower()
        local, _, domain = address.rpartition("@")
        if not _plausible(local, domain) or self._is_excluded(domain):
            return None, end
        if self._personal_only and local.partition("+")[0] in ROLE_NAMES:
            return None, end
        return address, end

    def _is_excluded(self, domain: str) -> bool:
        if not self._excluded:
            return False
        key = _domain_key(domain)
        labels = key.split(".")
        return any(".".join(labels[index:]) in self._excluded for index in range(len(labels)))


def create(options: Mapping[str, Any]) -> Detector:
    """The ``email_addresses`` detector factory."""
    check_keys(options, _OPTIONS)
    domains = str_list_option(options, "exclude_domains", (), allow_empty=True)
    for domain in domains:
        if "@" in domain or any(char.isspace() for char in domain.strip()):
            raise DetectorConfigError("exclude_domains", f"{domain!r} is not a domain name")
    excluded = frozenset(_domain_key(domain.strip()) for domain in domains)
    personal_only = bool_option(options, "personal_only", False)
    return EmailDetector(excluded, personal_only)
