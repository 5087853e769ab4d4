"""Conditions on the people: recipients, their domains, senders and sender groups.

Address patterns are ``alice@example.org``, ``*@example.org`` or
``*@*.example.org``; domain patterns ``example.org`` or ``*.example.org``.
Instead of patterns, a condition may name a list (``{ list = "internal" }``)
or the pack's groups, so one edit of a list changes every rule using it.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.conditions import (
    UNKNOWN,
    Condition,
    Context,
    Env,
    Outcome,
    address_matches,
    domain_matches,
    register,
    strings,
)


class RecipientDomain(Condition):
    per_recipient = True

    def __init__(self, patterns: list[str], label: str) -> None:
        self.patterns = patterns
        self.label = label

    def check(self, ctx: Context, recipient: str) -> Outcome:
        domain = recipient.rpartition("@")[2]
        hit = domain_matches(domain, self.patterns)
        return Outcome(hit, (f"recipient domain in {self.label}",) if hit else ())


class Recipient(Condition):
    per_recipient = True

    def __init__(self, patterns: list[str], label: str) -> None:
        self.patterns = patterns
        self.label = label

    def check(self, ctx: Context, recipient: str) -> Outcome:
        hit = address_matches(recipient, self.patterns)
        return Outcome(hit, (f"recipient in {self.label}",) if hit else ())


class Sender(Condition):
    def __init__(self, patterns: list[str], label: str) -> None:
        self.patterns = patterns
        self.label = label

    def check(self, ctx: Context, recipient: str) -> Outcome:
        hit = bool(ctx.facts.sender) and address_matches(ctx.facts.sender, self.patterns)
        return Outcome(hit, (f"sender in {self.label}",) if hit else ())


def _patterns(value: Any, env: Env, path: str) -> tuple[list[str], str] | None:
    """Patterns given inline, or ``{ list = "name" }`` naming a list of the packs."""
    if isinstance(value, dict):
        name = value.get("list")
        if set(value) != {"list"} or not isinstance(name, str):
            env.problem(path, 'expected a list of patterns or { list = "NAME" }')
            return None
        if name not in env.lists:
            env.problem(f"{path}.list", f"no list named {name!r} in the packs")
            return None
        return env.lists[name], f"list {name}"
    patterns = strings(value, env, path)
    return (patterns, "the rule's list") if patterns else None


def _recipient_domain(value: Any, env: Env, path: str) -> Condition | None:
    found = _patterns(value, env, path)
    return RecipientDomain(*found) if found else None


def _recipient(value: Any, env: Env, path: str) -> Condition | None:
    found = _patterns(value, env, path)
    return Recipient(*found) if found else None


def _sender(value: Any, env: Env, path: str) -> Condition | None:
    found = _patterns(value, env, path)
    return Sender(*found) if found else None


def _sender_group(value: Any, env: Env, path: str) -> Condition | None:
    names = strings(value, env, path)
    if names is None:
        return None
    missing = [name for name in names if name not in env.groups]
    for name in missing:
        env.problem(path, f"no group named {name!r} in the packs")
    if missing:
        return None
    members = [member for name in names for member in env.groups[name]]
    return Sender(members, "group " + ", ".join(names))


class SenderDirectoryGroup(Condition):
    """``sender_directory_group = ["Finance"]``: the sender is a member of one of these
    groups in the organisation's directory (SCIM or the directory sync; names compared
    without case). Asked once per message, only when a rule uses it; when the directory
    cannot be read the outcome is unknown and the rule's fallback applies."""

    def __init__(self, names: list[str]) -> None:
        self.names = {name.lower() for name in names}
        self.label = ", ".join(names)

    def check(self, ctx: Context, recipient: str) -> Outcome:
        directory = ctx.facts.lookups.directory
        if directory is None or not ctx.facts.sender:
            return Outcome(False)
        try:
            groups = directory.groups_of(ctx.facts.sender)
        except Exception:  # the store is down: do not guess "not a member"
            return UNKNOWN
        hit = bool(groups & self.names)
        return Outcome(hit, (f"sender in directory group {self.label}",) if hit else ())


def _sender_directory_group(value: Any, env: Env, path: str) -> Condition | None:
    names = strings(value, env, path)
    return SenderDirectoryGroup(names) if names else None


register("recipient_domain", _recipient_domain)
register("recipient", _recipient)
register("sender", _sender)
register("sender_group", _sender_group)
register("sender_directory_group", _sender_directory_group)
