"""DMARC (RFC 7489): the From domain, the policy record, alignment and the result.

The organisational domain (§3.2) comes from the public suffix list of the ``publicsuffixlist``
package (kept current by its releases; ``python -m publicsuffixlist.update`` refreshes it in
place). A :class:`PublicSuffixList` can be injected: the test zones live under ``.test``, which
the list does not hold (the package treats unknown TLDs as public suffixes by default; tests
pass a list that names ``test`` explicitly rather than rely on that).
"""

from __future__ import annotations

import email.policy
import re
import secrets
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from gateway.mailauth.dns import Answer, Resolver

POLICIES = ("none", "quarantine", "reject")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


def normalise_domain(domain: str) -> str | None:
    """``domain`` lower case, A-labels, no final dot; None when it is not a domain name."""
    name = domain.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return name if _DOMAIN.match(name) else None


def from_domain(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """The RFC5322.From domain (§3.1.1, §6.6.1); ``(None, reason)`` when there is not exactly one.

    A message with no From field, several From fields, or a From field with other than exactly
    one address is not valid for DMARC.
    """
    values = [value for name, value in headers if name.strip().lower() == b"from"]
    if len(values) != 1:
        return None, f"{len(values)} From header fields"
    text = values[0].decode("utf-8", "replace")
    try:
        parsed = email.policy.default.header_factory("From", text)
        addresses = parsed.addresses
    except Exception:  # the email package raises assorted errors on garbage
        return None, "unparseable From header field"
    if len(addresses) != 1:
        return None, f"From names {len(addresses)} addresses"
    domain = normalise_domain(str(addresses[0].domain))
    if domain is None:
        return None, "From address has no valid domain"
    return domain, ""


@dataclass(frozen=True)
class Record:
    """A DMARC policy record as it applies to the From domain."""

    policy: str  # p, or sp (falling back to p) when found at the organisational domain
    adkim: str  # "r" | "s"
    aspf: str
    pct: int


@dataclass(frozen=True)
class Lookup:
    """The outcome of the policy discovery of §6.6.3."""

    status: str  # "found" | "none" | "temperror"
    record: Record | None
    answers: tuple[Answer, ...]


def _parse(text: str, at_org: bool) -> Record | None:
    """The record from one TXT string; None when it is not a usable DMARC record."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        # §6.6.3: no valid p but a valid rua: treat as p=none; otherwise no record at all.
        if "rua" not in tags:
            return None
        p = "none"
    policy = p
    if at_org:
        sp = tags.get("sp", "").lower()
        if sp in POLICIES:
            policy = sp
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    if not 0 <= pct <= 100:
        pct = 100
    return Record(
        policy=policy,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
    )


def _select(answer: Answer) -> str | None:
    """The single record starting ``v=DMARC1`` (§6.6.3: none or several mean no policy)."""
    candidates = {
        record for record in answer.records if re.match(r"^v\s*=\s*DMARC1\s*(;|$)", record)
    }
    return candidates.pop() if len(candidates) == 1 else None


def discover(resolver: Resolver, domain: str, org_domain: str) -> Lookup:
    """Look the policy up at ``_dmarc.<domain>``, then at ``_dmarc.<org_domain>`` (§6.6.3)."""
    answers: list[Answer] = []
    for name, at_org in ((domain, False), (org_domain, True)):
        if at_org and name == domain:
            break
        answer = resolver.query_blocking(f"_dmarc.{name}.", "TXT")
        answers.append(answer)
        if answer.status == "temperror":
            return Lookup("temperror", None, tuple(answers))
        text = _select(answer)
        record = _parse(text, at_org) if text is not None else None
        if record is not None:
            return Lookup("found", record, tuple(answers))
    return Lookup("none", None, tuple(answers))


def organisational_domain(psl: PublicSuffixList, domain: str) -> str:
    """§3.2: the public suffix plus one label; the domain itself if it is a public suffix."""
    private = psl.privatesuffix(domain)
    return private if isinstance(private, str) else domain


def aligned(psl: PublicSuffixList, identifier: str | None, from_dom: str, mode: str) -> bool:
    """Identifier alignment (§3.1): exact match in strict mode, same organisation in relaxed."""
    if identifier is None:
        return False
    if identifier == from_dom:
        return True
    return mode == "r" and organisational_domain(psl, identifier) == organisational_domain(
        psl, from_dom
    )


def sampled(pct: int) -> bool:
    """Whether this message falls under the policy (``pct``, §6.6.4)."""
    return pct >= 100 or secrets.randbelow(100) < pct


def downgrade(policy: str) -> str:
    """The policy applied to a message outside the ``pct`` sample (§6.6.4)."""
    return {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
