"""SPF (RFC 7208) with pyspf, every lookup answered by our :class:`~gateway.mailauth.dns.Resolver`.

pyspf has no resolver argument: its default path calls the module-level ``spf.DNSLookup``, which
uses dnspython's global resolver (``/etc/resolv.conf``) through the deprecated
``dns.resolver.query`` (a DeprecationWarning on every lookup). Rather than replace that module
global, which would affect every user of pyspf in the process, :class:`_ResolverQuery`
subclasses ``spf.query`` and overrides its one DNS entry point, ``query.dns(name, qtype,
cnames, ignore_void)``, which every mechanism (``a``, ``mx``, ``ptr``, ``exists``, ``include``,
``redirect``, ``exp``) goes through. ``DNSLookup`` is then never called, so nothing global is
patched, each check uses the resolver it was given, and the lookup counting of RFC 7208 §4.6.4
(which pyspf does in its mechanisms, not in ``dns``) is kept. The override keeps ``dns``'s
contract: a list of values, ``[]`` for no data, void-lookup counting (RFC 7208 §4.6.4, at most
two), and ``spf.TempError`` on a temporary failure, which pyspf's ``check`` turns into
``temperror`` (never ``none``). CNAMEs are followed by the resolver itself.

Each check also records whether every answer it used was DNSSEC-validated (``secure``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import spf

from gateway.mailauth.dns import Answer, Resolver

#: RFC 8601 §2.7.2 result names; pyspf returns exactly these.
RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})
_MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4
_QTYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT"})


class _ResolverQuery(spf.query):  # type: ignore[misc]  # pyspf is untyped
    """``spf.query`` with its DNS lookups answered by ``resolver``; collects DNSSEC status."""

    def __init__(self, resolver: Resolver, ip: str, sender: str, helo: str) -> None:
        self._resolver = resolver
        self.answers: list[Answer] = []
        # strict=True: RFC 7208 processing limits; querytime=0: the resolver's own timeouts.
        super().__init__(i=ip, s=sender, h=helo, strict=True, querytime=0)

    def dns(
        self,
        name: Any,
        qtype: str,
        cnames: Any = None,
        ignore_void: bool = False,
    ) -> list[Any]:
        if not name:
            raise spf.PermError("invalid DNS name in SPF evaluation")
        text = str(name).rstrip(".").lower()
        labels = text.split(".")
        if not all(0 < len(label) < 64 for label in labels):
            return []  # pyspf's own rule: an impossible name has no data
        if qtype not in _QTYPES:  # type SPF (99) is only asked in pyspf's "harsh" mode
            return []
        answer = self._resolver.query_blocking(text + ".", qtype)
        self.answers.append(answer)
        if answer.status == "temperror":
            raise spf.TempError(f"DNS lookup of {text} {qtype} failed temporarily")
        values = [_value(qtype, record) for record in answer.records]
        if not values and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > _MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {_MAX_VOID_LOOKUPS} exceeded")
        return values


def _value(qtype: str, record: str) -> Any:
    """One record in the shape pyspf's dnspython path gives (``DNSLookup_dnspython``)."""
    if qtype == "TXT":
        # A tuple of character-strings (bytes); the resolver has joined them already.
        return (record.encode("utf-8"),)
    if qtype == "MX":
        preference, _, exchange = record.partition(" ")
        return (int(preference), exchange.rstrip("."))
    if qtype == "PTR":
        return record.rstrip(".")
    return record  # A / AAAA: the address text


def check(resolver: Resolver, *, ip: str, sender: str, helo: str) -> tuple[str, str, bool]:
    """``(result, explanation, secure)`` of SPF for ``sender`` (``""`` for a HELO check).

    With an empty ``sender`` the identity is ``postmaster@<helo>`` (RFC 7208 §2.3, §2.4).
    ``secure`` is true only when at least one DNS answer was used and all were validated.
    Blocking: run in a worker thread.
    """
    ipaddress.ip_address(ip)  # ValueError for a client address that is not one
    query = _ResolverQuery(resolver, ip, sender, helo)
    result, _code, explanation = query.check()
    if result not in RESULTS:  # defensive: pyspf's lax mode has other names
        result = "permerror"
    secure = bool(query.answers) and all(answer.secure for answer in query.answers)
    return str(result), str(explanation), secure
