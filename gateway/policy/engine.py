"""The policy engine: packs in, one explained decision per recipient out.

    packs (TOML) --load--> rules with compiled conditions and detectors
    message facts + recipients --decide--> {recipient: Decision(action, reasons)}

For each recipient every rule is tested; the rules that fire give their
action and a reason. The strictest action wins (reject > hold > protect >
relay), except that rules marked ``override`` win over all others (e.g.
"internal domains are always relayed"). A rule that reads content and did
not fire while the content could not be read in full (a size, time or
nesting limit, an encrypted archive) fires with its fallback action, by
default ``protect``: a limit never makes mail leave unprotected silently.
With no rule firing, mail is relayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.policy import addressconds, authconds, contentconds, headerconds  # noqa: F401
from gateway.policy.conditions import Condition, Context, Env, address_matches, compile_when
from gateway.policy.detectors import DetectorPluginError, available
from gateway.policy.facts import MessageFacts
from gateway.policy.packs import PackSet, PolicyError, RuleSpec, load_packs
from gateway.policy.types import (
    PRECEDENCE,
    Decision,
    Detector,
    DetectorConfigError,
    DetectorFactory,
    Reason,
)


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    condition: Condition
    senders: tuple[str, ...] | None  # the pack's scope; None: every sender


class NamedDetector:
    """A detector under the name a pack gave it (several settings of one type may coexist)."""

    def __init__(self, name: str, detector: Detector) -> None:
        self.name = name
        self._detector = detector

    def find(self, text: str) -> list[str]:
        return self._detector.find(text)


class Policy:
    """Compiled packs. Immutable once loaded, so one instance serves every thread."""

    def __init__(self, packs: PackSet, rules: list[Rule], detectors: dict[str, Detector]) -> None:
        self.packs = packs
        self.rules = rules
        self.detectors = detectors
        tags = (tag for rule in rules for tag in rule.condition.subject_tags)
        self.subject_tags: list[str] = list(dict.fromkeys(tags))
        """Tags any rule looks for in the subject: removed from what is sealed."""

    @classmethod
    def load(
        cls, paths: Sequence[Path], factories: Mapping[str, DetectorFactory] | None = None
    ) -> Policy:
        """Load, merge and compile packs; :class:`PolicyError` lists every problem."""
        packs = load_packs(paths)
        problems: list[str] = []
        try:
            found = available() if factories is None else factories
        except DetectorPluginError as error:
            raise PolicyError([str(error)]) from None
        detectors = _detectors(packs, found, problems)
        env = Env(detectors, packs.groups, packs.lists, problems)
        rules = [_compile(spec, env) for spec in packs.rules.values()]
        if problems:
            raise PolicyError(problems)
        return cls(packs, rules, detectors)

    @property
    def strip_headers(self) -> list[str]:
        """Header fields removed from everything that leaves (instructions to Sealgate)."""
        return list(self.packs.strip_headers)

    @property
    def reads_content(self) -> bool:
        return any(rule.condition.reads_content for rule in self.rules)

    def decide(self, facts: MessageFacts, recipients: Sequence[str]) -> dict[str, Decision]:
        ctx = Context(facts)
        return {r: _choose(self._fired(ctx, r)) for r in recipients}

    def _fired(self, ctx: Context, recipient: str) -> list[_Fired]:
        fired = []
        for rule in self.rules:
            if rule.senders is not None and not address_matches(ctx.facts.sender, rule.senders):
                continue
            spec = rule.spec
            outcome = rule.condition.test(ctx, recipient)
            if outcome.matched:
                reason = Reason(spec.name, spec.action, "; ".join(outcome.why))
                fired.append(_Fired(reason, spec, spec.override))
            elif outcome.unknown:
                unread = "; ".join(ctx.facts.extracted.incomplete)
                why = f"content not read in full ({unread}): fallback"
                fired.append(_Fired(Reason(spec.name, spec.fallback, why), spec, False))
        return fired


@dataclass(frozen=True)
class _Fired:
    reason: Reason
    spec: RuleSpec
    override: bool  # a fallback never overrides: it is a guess, not the rule's verdict


def _choose(fired: list[_Fired]) -> Decision:
    """The strictest action wins; among rules marked ``override`` only, if any fired."""
    if not fired:
        return Decision("relay")
    candidates = [item for item in fired if item.override] or fired
    winner = max(candidates, key=lambda item: PRECEDENCE[item.reason.action])
    text = winner.spec.text if winner.reason.action in ("reject", "hold") else None
    return Decision(
        winner.reason.action,
        tuple(item.reason for item in fired),
        text,
        _verify(fired),
        # Releasable only if every hold rule that fired lets the sender release.
        releasable=all(
            item.spec.release == "sender" for item in fired if item.reason.action == "hold"
        ),
    )


def _verify(fired: list[_Fired]) -> tuple[str, ...] | None:
    """The second factors every protecting rule that names some allows (the strictest set);
    the first rule's own list if they share none, None if no rule says."""
    lists = [
        item.spec.verify
        for item in fired
        if item.spec.verify is not None and item.reason.action == "protect"
    ]
    if not lists:
        return None
    common = [method for method in lists[0] if all(method in other for other in lists[1:])]
    return tuple(common) or lists[0]


def _detectors(
    packs: PackSet, factories: Mapping[str, DetectorFactory], problems: list[str]
) -> dict[str, Detector]:
    """Detectors the packs configure, plus every builtin that needs no options."""
    detectors: dict[str, Detector] = {}
    for name, factory in factories.items():
        try:
            detectors[name] = NamedDetector(name, factory({}))
        except DetectorConfigError:
            continue  # needs options (keywords, regex): only as configured by a pack
        except Exception as error:  # a third-party factory's own failure
            problems.append(f"detector {name!r}: its factory failed: {error!r}")
    for name, (source, options) in packs.detectors.items():
        settings = dict(options)
        kind = settings.pop("type", name)
        configured = factories.get(kind) if isinstance(kind, str) else None
        if configured is None:
            problems.append(f"{source}.type: unknown detector type {kind!r} "
                            f"(known: {', '.join(sorted(factories))})")  # fmt: skip
            continue
        try:
            detectors[name] = NamedDetector(name, configured(settings))
        except DetectorConfigError as error:
            problems.append(f"{source}.{error.key}: {error.problem}")
        except Exception as error:  # a third-party factory's own failure
            problems.append(f"{source}: the detector's factory failed: {error!r}")
    return detectors


def _compile(spec: RuleSpec, env: Env) -> Rule:
    condition = compile_when(spec.when, env, f"{spec.source}: when")
    senders = None
    if spec.scope is not None:
        members = [m for group in spec.scope.groups for m in env.groups.get(group, [])]
        for group in spec.scope.groups:
            if group not in env.groups:
                env.problem(f"{spec.source}: pack.scope.groups", f"no group named {group!r}")
        senders = (*spec.scope.senders, *members)
    return Rule(spec, condition, senders)
