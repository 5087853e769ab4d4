"""Conditions: the ``when`` table of a rule, compiled once when the packs load.

A ``when`` table holds condition keys, all of which must hold; ``any``,
``all`` and ``not`` combine nested tables. Each key is compiled by a factory
from :data:`FACTORIES`, and other services add theirs with
:func:`register` (mail authentication adds verdicts and transport posture)
without changing the engine. A condition either looks at the whole message
(tested once per message) or at the recipient (tested per recipient).

Conditions that read content (detectors, attachments) say so, because when the
content could not be read in full their rule applies its fallback action
rather than not firing.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2  # linear-time matching: an administrator's pattern cannot stall the gateway

from gateway.policy.facts import MessageFacts
from gateway.policy.types import Detector, Where

WHERES: tuple[Where, ...] = ("subject", "body", "attachment")


@dataclass(frozen=True)
class Outcome:
    """Whether a condition holds. ``unknown``: it could not tell, because content it
    reads was not read in full; the rule then applies its fallback action."""

    matched: bool
    why: tuple[str, ...] = ()
    unknown: bool = False


UNKNOWN = Outcome(False, (), True)


class Context:
    """One message under evaluation: its facts, and what was computed for it so far."""

    def __init__(self, facts: MessageFacts) -> None:
        self.facts = facts
        self._scans: dict[str, dict[Where, list[str]]] = {}
        self._outcomes: dict[int, Outcome] = {}

    def scan(self, detector: Detector) -> dict[Where, list[str]]:
        """Every value ``detector`` finds, by where it was found; once per message."""
        found = self._scans.get(detector.name)
        if found is None:
            found = {where: [] for where in WHERES}
            for source in self.facts.extracted.texts:
                found[source.where] += detector.find(source.text)
            self._scans[detector.name] = found
        return found

    def remembered(self, condition: Condition, compute: Callable[[], Outcome]) -> Outcome:
        key = id(condition)
        if key not in self._outcomes:
            self._outcomes[key] = compute()
        return self._outcomes[key]


class Condition:
    """Base of all conditions. Subclasses implement :meth:`check`."""

    per_recipient = False
    reads_content = False

    @property
    def subject_tags(self) -> list[str]:
        """Subject tags this condition looks for (removed from what is sealed)."""
        return []

    def test(self, ctx: Context, recipient: str) -> Outcome:
        if self.per_recipient:
            return self.check(ctx, recipient)
        return ctx.remembered(self, lambda: self.check(ctx, recipient))

    def check(self, ctx: Context, recipient: str) -> Outcome:
        raise NotImplementedError


@dataclass
class Env:
    """What compiling needs: the named things packs define, and where problems go."""

    detectors: Mapping[str, Detector]
    groups: Mapping[str, list[str]]
    lists: Mapping[str, list[str]]
    problems: list[str] = field(default_factory=list)

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")


Factory = Callable[[Any, Env, str], Condition | None]
FACTORIES: dict[str, Factory] = {}


def register(key: str, factory: Factory) -> None:
    """Make ``key`` usable in ``when`` tables; the factory reports problems to ``Env``."""
    if key in FACTORIES:
        raise ValueError(f"condition {key!r} is already registered")
    FACTORIES[key] = factory


def compile_when(table: Any, env: Env, path: str) -> Condition:
    """A ``when`` table as one condition; an empty table always holds."""
    if not isinstance(table, dict):
        env.problem(path, "expected a table of conditions")
        return Always()
    parts = []
    for key, value in table.items():
        factory = FACTORIES.get(key)
        if factory is None:
            known = ", ".join(sorted(FACTORIES))
            env.problem(f"{path}.{key}", f"unknown condition (known: {known})")
            continue
        condition = factory(value, env, f"{path}.{key}")
        if condition is not None:
            parts.append(condition)
    return parts[0] if len(parts) == 1 else All(parts)


# --- combinators -------------------------------------------------------------------


class Always(Condition):
    def check(self, ctx: Context, recipient: str) -> Outcome:
        return Outcome(True, ("always",))


class _Combined(Condition):
    def __init__(self, parts: Sequence[Condition]) -> None:
        self.parts = list(parts)
        self.per_recipient = any(p.per_recipient for p in parts)
        self.reads_content = any(p.reads_content for p in parts)

    @property
    def subject_tags(self) -> list[str]:
        return [tag for part in self.parts for tag in part.subject_tags]


class All(_Combined):
    """Holds if every part holds; false if one is false, else unknown if one is unknown."""

    def check(self, ctx: Context, recipient: str) -> Outcome:
        outcomes = [part.test(ctx, recipient) for part in self.parts]
        if any(not o.matched and not o.unknown for o in outcomes):
            return Outcome(False)
        if any(o.unknown for o in outcomes):
            return UNKNOWN
        return Outcome(True, tuple(w for o in outcomes for w in o.why) or ("always",))


class AnyOf(_Combined):
    """Holds if one part holds; else unknown if one is unknown, else false."""

    def check(self, ctx: Context, recipient: str) -> Outcome:
        outcomes = [part.test(ctx, recipient) for part in self.parts]
        why = tuple(w for o in outcomes if o.matched for w in o.why)
        if any(o.matched for o in outcomes):
            return Outcome(True, why)
        return UNKNOWN if any(o.unknown for o in outcomes) else Outcome(False)


class Not(_Combined):
    """Holds if the part is false; unknown stays unknown."""

    def check(self, ctx: Context, recipient: str) -> Outcome:
        inner = self.parts[0].test(ctx, recipient)
        if inner.unknown:
            return UNKNOWN
        return Outcome(not inner.matched, () if inner.matched else ("a listed exception",))

    @property
    def subject_tags(self) -> list[str]:
        return []  # tags under "not" ask for no protection


def _tables(value: Any, env: Env, path: str) -> list[Condition]:
    if not isinstance(value, list) or not value:
        env.problem(path, "expected a non-empty list of condition tables")
        return []
    return [compile_when(item, env, f"{path}[{i}]") for i, item in enumerate(value)]


def _any(value: Any, env: Env, path: str) -> Condition | None:
    parts = _tables(value, env, path)
    return AnyOf(parts) if parts else None


def _all(value: Any, env: Env, path: str) -> Condition | None:
    parts = _tables(value, env, path)
    return All(parts) if parts else None


def _not(value: Any, env: Env, path: str) -> Condition | None:
    return Not([compile_when(value, env, path)])


# --- helpers for factories ---------------------------------------------------------


def strings(value: Any, env: Env, path: str, *, allow_one: bool = True) -> list[str] | None:
    """A list of non-empty strings (or one string), else a problem and None."""
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        env.problem(path, "expected a non-empty list of strings")
        return None
    return list(value)


def options(
    value: Any, env: Env, path: str, known: Mapping[str, type | tuple[type, ...]]
) -> dict[str, Any] | None:
    """A table whose keys are all known and of the right type, else problems and None."""
    if not isinstance(value, dict):
        env.problem(path, "expected a table")
        return None
    ok = True
    for key, item in value.items():
        if key not in known:
            env.problem(f"{path}.{key}", f"unknown option (known: {', '.join(known)})")
            ok = False
        elif not isinstance(item, known[key]) or isinstance(item, bool) != (known[key] is bool):
            env.problem(f"{path}.{key}", f"wrong type {type(item).__name__}")
            ok = False
    return dict(value) if ok else None


def pattern(text: Any, env: Env, path: str) -> Any:
    if not isinstance(text, str):
        env.problem(path, "expected a regular expression string")
        return None
    try:
        return re2.compile(text)
    except re2.error as error:
        env.problem(
            path,
            f"not a usable regular expression ({error}); look-around and "
            "backreferences are not supported, which keeps matching linear-time",
        )
        return None


def address_matches(address: str, patterns: Sequence[str]) -> bool:
    """``alice@example.org``, ``*@example.org`` or ``*@*.example.org``, case-insensitively;
    internationalised domains match in either form (``bücher.example``, ``xn--bcher-kva``)."""
    address = canonical_address(address)
    return any(fnmatch.fnmatchcase(address, canonical_address(p)) for p in patterns)


def domain_matches(domain: str, patterns: Sequence[str]) -> bool:
    """``example.org`` (exactly) or ``*.example.org`` (subdomains), case-insensitively,
    internationalised domains in either form."""
    domain = canonical_domain(domain)
    return any(fnmatch.fnmatchcase(domain, canonical_domain(p)) for p in patterns)


def canonical_address(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local.lower()}@{canonical_domain(domain)}" if at else address.lower()


@functools.lru_cache(maxsize=4096)
def canonical_domain(domain: str) -> str:
    """Lower case, no final dot, each label in its ASCII (IDNA/punycode) form."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(_ascii_label(label) for label in labels)


def _ascii_label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label  # not a valid IDN label: compared as it is


register("any", _any)
register("all", _all)
register("not", _not)
