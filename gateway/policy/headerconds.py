"""Conditions on header fields: subject tags, patterns, any header, sensitivity labels,
and whether the message answers a conversation Sealgate protected.

Microsoft Purview writes a document or message's sensitivity label into the
``msip_labels`` header, e.g.
``MSIP_Label_<GUID>_Enabled=true; MSIP_Label_<GUID>_Name=Confidential; ...``;
a label counts when its ``Enabled`` is true, matched by GUID or by name.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.mail.message import MESSAGE_ID
from gateway.policy.conditions import (
    UNKNOWN,
    Condition,
    Context,
    Env,
    Outcome,
    options,
    pattern,
    register,
    strings,
)
from gateway.policy.facts import decoded

_LABEL_FIELD = re.compile(r"MSIP_Label_([0-9a-fA-F-]{36})_(\w+)\s*=\s*([^;]*)")


class SubjectTag(Condition):
    def __init__(self, tags: list[str]) -> None:
        self.tags = tags

    @property
    def subject_tags(self) -> list[str]:
        return list(self.tags)

    def check(self, ctx: Context, recipient: str) -> Outcome:
        subject = (ctx.facts.subject or "").lower()
        found = [tag for tag in self.tags if tag.lower() in subject]
        return Outcome(bool(found), tuple(f"subject tag {tag}" for tag in found))


class SubjectMatches(Condition):
    def __init__(self, compiled: Any, text: str) -> None:
        self.compiled = compiled
        self.text = text

    def check(self, ctx: Context, recipient: str) -> Outcome:
        hit = self.compiled.search(ctx.facts.subject or "") is not None
        return Outcome(hit, ("subject matches the rule's pattern",) if hit else ())


class HeaderCondition(Condition):
    def __init__(self, name: str, equals: list[str] | None, compiled: Any) -> None:
        self.name = name
        self.equals = [value.lower() for value in equals] if equals is not None else None
        self.compiled = compiled

    def check(self, ctx: Context, recipient: str) -> Outcome:
        for raw in ctx.facts.header_values(self.name):
            value = decoded(raw).strip()
            if self.equals is not None and value.lower() not in self.equals:
                continue
            if self.compiled is not None and self.compiled.search(value) is None:
                continue
            return Outcome(True, (f"header {self.name}",))
        return Outcome(False)


class SensitivityLabel(Condition):
    def __init__(self, labels: list[str]) -> None:
        self.labels = {label.lower() for label in labels}

    def check(self, ctx: Context, recipient: str) -> Outcome:
        for guid, name in enabled_labels(ctx.facts.header_values("msip_labels")):
            if guid.lower() in self.labels or (name or "").lower() in self.labels:
                return Outcome(True, (f"sensitivity label {name or guid}",))
        return Outcome(False)


def enabled_labels(values: list[str]) -> list[tuple[str, str | None]]:
    """(GUID, name) of every enabled label in ``msip_labels`` header values."""
    labels: dict[str, dict[str, str]] = {}
    for value in values:
        for guid, key, setting in _LABEL_FIELD.findall(decoded(value)):
            labels.setdefault(guid, {})[key.lower()] = setting.strip()
    return [
        (guid, fields.get("name"))
        for guid, fields in labels.items()
        if fields.get("enabled", "").lower() == "true"
    ]


def _subject_tag(value: Any, env: Env, path: str) -> Condition | None:
    tags = strings(value, env, path)
    return SubjectTag(tags) if tags else None


def _subject_matches(value: Any, env: Env, path: str) -> Condition | None:
    compiled = pattern(value, env, path)
    return SubjectMatches(compiled, value) if compiled is not None else None


def _header(value: Any, env: Env, path: str) -> Condition | None:
    table = options(value, env, path, {"name": str, "equals": (list, str), "matches": str})
    if table is None:
        return None
    if "name" not in table:
        env.problem(f"{path}.name", "required: the header field's name")
        return None
    equals = strings(table["equals"], env, f"{path}.equals") if "equals" in table else None
    compiled = pattern(table["matches"], env, f"{path}.matches") if "matches" in table else None
    return HeaderCondition(table["name"], equals, compiled)


def _sensitivity_label(value: Any, env: Env, path: str) -> Condition | None:
    labels = strings(value, env, path)
    return SensitivityLabel(labels) if labels else None


class ProtectedThread(Condition):
    """``protected_thread = true``: References or In-Reply-To name a message Sealgate
    protected, or a secure reply it delivered; or the message is itself a copy of a
    message Sealgate protected for others that came back in another transaction (a
    colleague's forward, an alias): by its loop marker (``MessageFacts.protected_copy``),
    or, when a forwarder re-wrote its bytes, by its own Message-ID. Asked only when a
    rule uses it, once per message; when a lookup fails the outcome is unknown and the
    rule's fallback applies."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted

    def check(self, ctx: Context, recipient: str) -> Outcome:
        try:
            found = ctx.facts.protected_copy or _in_thread(ctx) or _protected_before(ctx)
        except Exception:  # the store is down: do not guess "not protected"
            return UNKNOWN
        hit = found == self.wanted
        return Outcome(hit, (f"protected thread {str(found).lower()}",) if hit else ())


def _in_thread(ctx: Context) -> bool:
    threads = ctx.facts.lookups.threads
    fields = ctx.facts.header_values("references") + ctx.facts.header_values("in-reply-to")
    ids = sorted(set(MESSAGE_ID.findall(" ".join(fields))))
    return threads is not None and bool(ids) and threads.in_protected_thread(ids)


def _protected_before(ctx: Context) -> bool:
    asked = ctx.facts.lookups.protected_before
    own = MESSAGE_ID.findall(" ".join(ctx.facts.header_values("message-id")))
    return asked is not None and len(own) == 1 and asked(own[0])


def _protected_thread(value: Any, env: Env, path: str) -> Condition | None:
    if not isinstance(value, bool):
        env.problem(path, "expected true or false")
        return None
    return ProtectedThread(value)


register("subject_tag", _subject_tag)
register("subject_matches", _subject_matches)
register("header", _header)
register("sensitivity_label", _sensitivity_label)
register("protected_thread", _protected_thread)
