"""Conditions on who sent the message: the mail-authentication verdicts and the From domain.

The verdicts arrive as facts (``MessageFacts.extra``) from gateway.mailauth
when verification is on; ``from_domain`` reads the header itself, so a rule
refusing mail whose From is not one of ours works either way.
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


class Aligned(Condition):
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


def _aligned(fact: str) -> Any:
    def factory(value: Any, env: Env, path: str) -> Condition | None:
        if not isinstance(value, bool):
            env.problem(path, "expected true or false")
            return None
        return Aligned(fact, value)

    return factory


register("from_domain", _from_domain)
register("spf", _verdict("spf", _RESULTS))
register("dmarc", _verdict("dmarc", _RESULTS))
register("arc", _verdict("arc", _RESULTS))
register("dmarc_policy", _verdict("dmarc_policy", ("none", "quarantine", "reject")))
register("dkim_aligned", _aligned("dkim_aligned"))
register("spf_aligned", _aligned("spf_aligned"))
