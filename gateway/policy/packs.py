"""Policy packs: TOML files an administrator can read, version and test.

A pack holds rules, and the named things rules refer to: detector settings,
sender groups and lists of domains. Packs are loaded in the order the
configuration lists them, each after the packs it includes, and later packs
refine earlier ones the way inherited settings work elsewhere:

- a rule with the name of an earlier rule replaces it (organisation ->
  domain -> sender group);
- ``disable = ["rule"]`` drops an inherited rule;
- detector settings, groups and lists of the same name are replaced too;
- ``[pack.scope]`` limits a pack's own rules to some senders.

Every problem is reported at once, naming the file, the rule and the key:
``policies/finance.toml: rules[2] (card-numbers): action: must be one of ...``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from gateway.config import describe
from gateway.policy.detectors import BUILTIN
from gateway.policy.types import Action

MAX_INCLUDE_DEPTH = 8
_RULE_LINE = re.compile(r"^rules\[(\d+)\]\.?([^:]*): (.*)$")


class PolicyError(Exception):
    """Packs that cannot be used; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Scope(_Strict):
    senders: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class Header(_Strict):
    name: str = ""
    description: str = ""
    include: list[str] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)
    strip_headers: list[str] = Field(default_factory=list)
    scope: Scope | None = None


def _one_line(value: Any) -> Any:
    """A rule's text goes into an SMTP reply and a bounce: one printable line."""
    if isinstance(value, str) and (
        not value.strip() or len(value) > 400 or not value.isprintable()
    ):
        raise PydanticCustomError(
            "one_line", "must be one line of printable text, at most 400 characters"
        )
    return value


class RuleModel(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: str = ""
    action: Literal["relay", "protect", "hold", "reject"]
    text: Annotated[str, BeforeValidator(_one_line)] | None = None
    override: bool = False
    fallback: Literal["relay", "protect", "hold", "reject"] = "protect"
    # How a protected recipient proves who they are; None: email (and the sender's access
    # code or SMS when the message supplies them).
    verify: list[Literal["email", "sms", "access-code"]] | None = Field(None, min_length=1)
    # Who may release a held recipient: the sender (who gets a release page) or nobody
    # (the recipient is refused with the rule's text, as a bounce).
    release: Literal["sender", "none"] = "sender"
    when: dict[str, Any] = Field(default_factory=dict)


class PackModel(_Strict):
    pack: Header = Field(default_factory=Header)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    lists: dict[str, list[str]] = Field(default_factory=dict)
    detectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rules: list[RuleModel] = Field(default_factory=list)


@dataclass(frozen=True)
class RuleSpec:
    """One rule as loaded, with where it came from (for errors and explanations)."""

    name: str
    description: str
    action: Action
    text: str | None
    override: bool
    fallback: Action
    when: dict[str, Any]
    source: str  # "policies/finance.toml: rules[2] (card-numbers)"
    scope: Scope | None = None
    verify: tuple[str, ...] | None = None
    release: str = "sender"


@dataclass
class PackSet:
    """Every loaded pack merged: what the engine compiles."""

    files: list[Path] = field(default_factory=list)
    rules: dict[str, RuleSpec] = field(default_factory=dict)  # in order of first appearance
    groups: dict[str, list[str]] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    detectors: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # -> source
    strip_headers: list[str] = field(default_factory=list)


def load_packs(paths: Sequence[Path]) -> PackSet:
    """Load and merge packs in order; raise :class:`PolicyError` with every problem."""
    merged = PackSet()
    problems: list[str] = []
    loaded: set[Path] = set()
    for path in paths:
        _load(Path(path), merged, problems, chain=(), loaded=loaded)
    if problems:
        raise PolicyError(problems)
    return merged


def _load(
    path: Path,
    merged: PackSet,
    problems: list[str],
    *,
    chain: tuple[Path, ...],
    loaded: set[Path],
) -> None:
    """Load ``path`` after what it includes. A file already loaded is not loaded again:
    re-merging it would undo what later packs changed (like an import, once)."""
    resolved = path.resolve()
    if resolved in chain:
        problems.append(f"{path}: includes itself (through {' -> '.join(map(str, chain))})")
        return
    if resolved in loaded:
        return
    if len(chain) > MAX_INCLUDE_DEPTH:
        problems.append(f"{path}: includes nested more than {MAX_INCLUDE_DEPTH} deep")
        return
    loaded.add(resolved)
    model = _parse(path, problems)
    if model is None:
        return
    for index, included in enumerate(model.pack.include):
        target = path.parent / included
        if not target.is_file():
            problems.append(f"{path}: pack.include[{index}]: no such file {str(target)!r}")
            continue
        _load(target, merged, problems, chain=(*chain, resolved), loaded=loaded)
    _merge(path, model, merged, problems)


def _parse(path: Path, problems: list[str]) -> PackModel | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
        return None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        problems.append(f"{path}: not valid TOML: {error}")
        return None
    try:
        return PackModel.model_validate(data)
    except ValidationError as error:
        problems.extend(f"{path}: {_located(line, data)}" for line in describe(error, data))
        return None


def _scoped_pack_ok(path: Path, model: PackModel, merged: PackSet, problems: list[str]) -> bool:
    """A pack scoped to some senders must not change what applies to everyone else.

    Replacing or disabling an organisation's rule, list, group or detector
    from such a pack would change it for every sender; its rules need names
    of their own instead.
    """
    clashes = [f"pack.disable: {name}" for name in model.pack.disable]
    clashes += [f"rules: {r.name}" for r in model.rules if r.name in merged.rules]
    for table in ("lists", "groups", "detectors"):
        earlier: Mapping[str, object] = getattr(merged, table)
        clashes += [f"{table}.{name}" for name in getattr(model, table) if name in earlier]
    clashes += [f"detectors.{name}" for name in model.detectors if name in BUILTIN]
    for clash in clashes:
        problems.append(
            f"{path}: {clash}: a pack with pack.scope cannot replace or disable what earlier "
            "packs define for every sender; use a name of its own"
        )
    return not clashes


def _located(line: str, data: dict[str, Any]) -> str:
    """``rules[2].action: ...`` -> ``rules[2] (card-numbers): action: ...``: name the rule."""
    match = _RULE_LINE.match(line)
    if match is None:
        return line
    index, key, problem = int(match[1]), match[2], match[3]
    rules = data.get("rules")
    rule = rules[index] if isinstance(rules, list) and index < len(rules) else None
    name = rule.get("name") if isinstance(rule, dict) else None
    label = f"rules[{index}] ({name})" if isinstance(name, str) else f"rules[{index}]"
    return f"{label}: {key}: {problem}" if key else f"{label}: {problem}"


def _merge(path: Path, model: PackModel, merged: PackSet, problems: list[str]) -> None:
    merged.files.append(path)
    if model.pack.scope is not None and not _scoped_pack_ok(path, model, merged, problems):
        return
    for name in model.pack.disable:
        if merged.rules.pop(name, None) is None:
            problems.append(f"{path}: pack.disable: no earlier rule named {name!r}")
    merged.groups.update(model.groups)
    merged.lists.update(model.lists)
    for name, options in model.detectors.items():
        merged.detectors[name] = (f"{path}: detectors.{name}", dict(options))
    merged.strip_headers += [h for h in model.pack.strip_headers if h not in merged.strip_headers]
    seen: set[str] = set()
    for index, rule in enumerate(model.rules):
        if rule.name in seen:
            problems.append(f"{path}: rules[{index}] ({rule.name}): name: used twice in this pack")
        seen.add(rule.name)
        merged.rules.pop(rule.name, None)  # a replaced rule moves to where it is redefined
        merged.rules[rule.name] = RuleSpec(
            name=rule.name,
            description=rule.description,
            action=rule.action,
            text=rule.text,
            override=rule.override,
            fallback=rule.fallback,
            when=rule.when,
            source=f"{path}: rules[{index}] ({rule.name})",
            scope=model.pack.scope,
            verify=tuple(rule.verify) if rule.verify is not None else None,
            release=rule.release,
        )
