"""Conditions on who sent the message: the mail-authentication verdicts and the From domain.

The verdicts arrive as facts (``MessageFacts.extra``) from gateway.mailauth
when verification is on; ``from_domain`` reads the header itself, so a rule
refusing mail whose From is not one of ours works either way. ``recipient_tls`` asks, per
recipient, how safely the recipient's domain receives mail (DANE, MTA-STS), through the
posture checker the pipeline hands over in ``MessageFacts.lookups``.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.conditions import (
    Condition,
    Context,
    Env,
    Outcome,
    domain_matches,
    register,
    strings,
)
from gateway.policy.facts import decoded

_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")


class FromDomain(Condition):
    def __init__(self, patterns: list[str], label: str) -> None:
        self.patterns = patterns
        self.label = label

    def check(self, ctx: Context, recipient: str) -> Outcome:
        domains = [_domain(value) for value in ctx.facts.header_values("from")]
        hit = bool(domains) and all(domain_matches(d, self.patterns) for d in domains if d)
        return Outcome(hit, (f"From domain in {self.label}",) if hit else ())


def _domain(value: str) -> str:
    address = decoded(value).rsplit("<", 1)[-1].rstrip("> \t")
    return address.rpartition("@")[2]


class Verdict(Condition):
    """A verdict fact is one of the listed results: ``dmarc = ["fail"]``, ``spf = [...]``."""

    def __init__(self, fact: str, values: list[str]) -> None:
        self.fact = fact
        self.values = [value.lower() for value in values]

    def check(self, ctx: Context, recipient: str) -> Outcome:
        value = ctx.facts.extra.get(self.fact)
        hit = isinstance(value, str) and value.lower() in self.values
        return Outcome(hit, (f"{self.fact} {value}",) if hit else ())


class BooleanFact(Condition):
    def __init__(self, fact: str, wanted: bool) -> None:
        self.fact = fact
        self.wanted = wanted

    def check(self, ctx: Context, recipient: str) -> Outcome:
        value = ctx.facts.extra.get(self.fact)
        hit = isinstance(value, bool) and value == self.wanted
        return Outcome(hit, (f"{self.fact} {str(value).lower()}",) if hit else ())


def _from_domain(value: Any, env: Env, path: str) -> Condition | None:
    if isinstance(value, dict):
        name = value.get("list")
        if set(value) != {"list"} or not isinstance(name, str) or name not in env.lists:
            env.problem(path, 'expected a list of domains or { list = "NAME" } of the packs')
            return None
        return FromDomain(env.lists[name], f"list {name}")
    patterns = strings(value, env, path)
    return FromDomain(patterns, "the rule's list") if patterns else None


def _verdict(fact: str, allowed: tuple[str, ...]) -> Any:
    def factory(value: Any, env: Env, path: str) -> Condition | None:
        values = strings(value, env, path)
        if values is None:
            return None
        wrong = [v for v in values if v.lower() not in allowed]
        if wrong:
            env.problem(path, f"unknown result {wrong[0]!r} (known: {', '.join(allowed)})")
            return None
        return Verdict(fact, values)

    return factory


def _boolean(fact: str) -> Any:
    def factory(value: Any, env: Env, path: str) -> Condition | None:
        if not isinstance(value, bool):
            env.problem(path, "expected true or false")
            return None
        return BooleanFact(fact, value)

    return factory


class RecipientTLS(Condition):
    """The recipient's domain enforces TLS with one of the listed mechanisms.

    ``recipient_tls = ["dane", "mta-sts"]`` holds for a recipient whose domain enforces TLS with
    DANE or MTA-STS (see gateway.mailauth.posture); ``recipient_tls = ["none"]`` for one whose
    domain enforces neither (including a domain whose lookups failed: that is the cautious
    side for a rule that protects). The posture checker comes with the mail-authentication
    facts (``[mailauth] verify = true``): without it the condition never holds, whatever it
    lists, so a rule relaying on it relays nothing and a "none" rule does not fire either.
    """

    per_recipient = True

    def __init__(self, wanted: list[str]) -> None:
        self.wanted = [value.lower() for value in wanted]

    def check(self, ctx: Context, recipient: str) -> Outcome:
        checker = ctx.facts.lookups.posture
        domain = recipient.rpartition("@")[2].strip().rstrip(">")
        if checker is None or not domain:
            return Outcome(False)
        enforced = checker.check(domain).enforced
        if enforced is None:
            hit = "none" in self.wanted
            return Outcome(hit, ("recipient domain enforces no TLS",) if hit else ())
        if enforced in self.wanted:
            label = _TLS_LABELS[enforced]
            return Outcome(True, (f"recipient domain enforces TLS with {label}",))
        return Outcome(False)


_TLS_LABELS = {"dane": "DANE", "mta-sts": "MTA-STS"}


def _recipient_tls(value: Any, env: Env, path: str) -> Condition | None:
    values = strings(value, env, path)
    if values is None:
        return None
    allowed = (*_TLS_LABELS, "none")
    wrong = [v for v in values if v.lower() not in allowed]
    if wrong:
        env.problem(path, f"unknown mechanism {wrong[0]!r} (known: {', '.join(allowed)})")
        return None
    return RecipientTLS(values)


register("from_domain", _from_domain)
register("spf", _verdict("spf", _RESULTS))
register("dmarc", _verdict("dmarc", _RESULTS))
register("arc", _verdict("arc", _RESULTS))
register("dmarc_policy", _verdict("dmarc_policy", ("none", "quarantine", "reject")))
register("dkim_aligned", _boolean("dkim_aligned"))
register("spf_aligned", _boolean("spf_aligned"))
register("recipient_tls", _recipient_tls)
