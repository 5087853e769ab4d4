"""Conditions on what the message contains: detector hits and attachments.

A detector condition counts hits and distinct values where the rule says
(subject, body, attachments) against thresholds; the reason records the
counts, never the values. An attachment condition holds when one attachment
(or archive member) has every property the rule lists; types are the real
types found by content, so a renamed executable is still an executable.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from gateway.policy.conditions import (
    UNKNOWN,
    WHERES,
    Condition,
    Context,
    Env,
    Outcome,
    options,
    register,
    strings,
)
from gateway.policy.types import AttachmentFacts, Detector, Where


class DetectorCondition(Condition):
    reads_content = True

    def __init__(
        self, detector: Detector, min_count: int, min_distinct: int, where: tuple[Where, ...]
    ) -> None:
        self.detector = detector
        self.min_count = min_count
        self.min_distinct = min_distinct
        self.where = where

    def check(self, ctx: Context, recipient: str) -> Outcome:
        found = ctx.scan(self.detector)
        values = [value for where in self.where for value in found[where]]
        count, distinct = len(values), len(set(values))
        if count < self.min_count or distinct < self.min_distinct or not values:
            # Attachments not read in full might have held what is missing.
            unread = "attachment" in self.where and ctx.facts.extracted.incomplete
            return UNKNOWN if unread else Outcome(False)
        places = ", ".join(where for where in self.where if found[where])
        why = f"detector {self.detector.name}: {count} hits, {distinct} distinct, in {places}"
        return Outcome(True, (why,))


class AttachmentCondition(Condition):
    reads_content = True

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table

    def check(self, ctx: Context, recipient: str) -> Outcome:
        for attachment in ctx.facts.extracted.attachments:
            why = self._matches(attachment)
            if why is not None:
                return Outcome(True, (f"{attachment.label}: {why}",))
        return UNKNOWN if ctx.facts.extracted.incomplete else Outcome(False)

    def _matches(self, item: AttachmentFacts) -> str | None:
        """Why ``item`` has every listed property, or None if it lacks one."""
        table = self.table
        tests: list[tuple[str, bool, str]] = []
        if "name" in table:
            tests.append(("name", _globbed(item.filename.lower(), table["name"]), "name pattern"))
        if "real_type" in table:
            hit = _globbed(item.real_type, table["real_type"])
            tests.append(("real_type", hit, f"real type {item.real_type}"))
        if "declared_type" in table:
            hit = _globbed(item.declared_type, table["declared_type"])
            tests.append(("declared_type", hit, f"declared type {item.declared_type}"))
        if "min_size" in table:
            tests.append(("min_size", item.size >= table["min_size"], f"{item.size} bytes"))
        if "max_size" in table:
            tests.append(("max_size", item.size <= table["max_size"], f"{item.size} bytes"))
        if "encrypted" in table:
            said = "encrypted" if item.encrypted else "not encrypted"
            tests.append(("encrypted", item.encrypted == table["encrypted"], said))
        if "nested" in table:
            said = "inside an archive" if item.depth else "attached directly"
            tests.append(("nested", (item.depth > 0) == table["nested"], said))
        if not all(hit for _, hit, _ in tests):
            return None
        return ", ".join(dict.fromkeys(said for _, _, said in tests))


def _globbed(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p.lower()) for p in patterns)


def _detector(value: Any, env: Env, path: str) -> Condition | None:
    if isinstance(value, str):
        value = {"name": value}
    table = options(value, env, path, {"name": str, "min_count": int, "min_distinct": int,
                                       "in": list})  # fmt: skip
    if table is None:
        return None
    name = table.get("name")
    detector = env.detectors.get(name) if isinstance(name, str) else None
    if detector is None:
        known = ", ".join(sorted(env.detectors))
        env.problem(f"{path}.name", f"unknown detector {name!r} (known: {known})")
        return None
    where = tuple(table.get("in", WHERES))
    if not where or any(w not in WHERES for w in where):
        env.problem(f"{path}.in", f"expected places among {', '.join(WHERES)}")
        return None
    counts = {key: table.get(key, 1) for key in ("min_count", "min_distinct")}
    for key, count in counts.items():
        if count < 1:
            env.problem(f"{path}.{key}", "must be at least 1")
            return None
    return DetectorCondition(detector, counts["min_count"], counts["min_distinct"], where)


_ATTACHMENT_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "name": (list, str),
    "real_type": (list, str),
    "declared_type": (list, str),
    "min_size": int,
    "max_size": int,
    "encrypted": bool,
    "nested": bool,
}


def _attachment(value: Any, env: Env, path: str) -> Condition | None:
    table = options(value, env, path, _ATTACHMENT_OPTIONS)
    if table is None:
        return None
    if not table:
        env.problem(path, f"expected at least one of {', '.join(_ATTACHMENT_OPTIONS)}")
        return None
    for key in ("name", "real_type", "declared_type"):
        if key in table:
            listed = strings(table[key], env, f"{path}.{key}")
            if listed is None:
                return None
            table[key] = [item.lower() for item in listed]
    return AttachmentCondition(table)


register("detector", _detector)
register("attachment", _attachment)
