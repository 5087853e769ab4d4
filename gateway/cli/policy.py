"""``sealgate policy check | explain | test``: the administrator's tools for policy packs.

``check`` loads and compiles packs and prints every problem with file, rule
and key. ``explain`` runs the packs over one message and prints the decision
per recipient with the reasons. ``test`` runs them over a folder of messages,
each with the outcomes expected of it, so that an organisation can keep tests
for its own policy the way it keeps the policy itself.

The gateway's modules are imported inside the functions that use them
(gateway/cli/__init__.py says why).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CONFIG_OPTION

if TYPE_CHECKING:
    from gateway.config import Policy as PolicySection
    from gateway.policy.engine import Policy
    from gateway.policy.textract import TextExtractor
    from gateway.policy.types import Decision

PACK_OPTION = click.option(
    "--pack",
    "packs",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A pack file (repeatable). Default: policy.packs of the configuration.",
)


@click.group()
def policy() -> None:
    """Check policy packs and see what they decide."""


def _settings(config_path: Path, packs: Sequence[Path]) -> tuple[list[Path], PolicySection | None]:
    """The packs to use (from the options, else the configuration) and ``[policy]``."""
    from gateway import config

    if packs and not config_path.exists():
        return list(packs), None
    try:
        cfg = config.load(config_path)
    except config.ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(2)
    return list(packs) or cfg.policy.pack_files, cfg.policy


def _load(packs: Sequence[Path]) -> Policy:
    from gateway.policy.engine import Policy
    from gateway.policy.packs import PolicyError

    try:
        return Policy.load(packs)
    except PolicyError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        sys.exit(2)


@contextmanager
def _extractor(settings: PolicySection | None) -> Iterator[TextExtractor]:
    """A text extractor with the configured limits (the defaults without a configuration)."""
    from gateway.policy.textract import Limits, TextExtractor

    extractor = TextExtractor(Limits() if settings is None else Limits.from_config(settings))
    extractor.start()
    try:
        yield extractor
    finally:
        extractor.close()


@policy.command()
@CONFIG_OPTION
@PACK_OPTION
def check(config_path: Path, packs: tuple[Path, ...]) -> None:
    """Load and compile the packs; print every problem (exit 2) or a summary."""
    files, _ = _settings(config_path, packs)
    loaded = _load(files)
    click.echo(f"ok: {len(loaded.rules)} rules from {len(loaded.packs.files)} pack file(s)")
    for rule in loaded.rules:
        scope = " (scoped to some senders)" if rule.senders is not None else ""
        click.echo(f"  {rule.spec.name:<28} {rule.spec.action:<8}{scope} {rule.spec.description}")


@policy.command()
@CONFIG_OPTION
@PACK_OPTION
@click.argument("message", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--from", "sender", default="", help="Envelope sender (MAIL FROM).")
@click.option("--to", "recipients", multiple=True, required=True, help="A recipient (repeat).")
def explain(
    config_path: Path,
    packs: tuple[Path, ...],
    message: Path,
    sender: str,
    recipients: tuple[str, ...],
) -> None:
    """Print what the packs decide for MESSAGE, per recipient, and why."""
    from gateway.policy.facts import gather

    files, settings = _settings(config_path, packs)
    loaded = _load(files)
    with _extractor(settings) as extractor:
        facts = gather(message.read_bytes(), sender, extractor if loaded.reads_content else None)
    decisions = loaded.decide(facts, recipients)
    for note in facts.extracted.incomplete:
        click.echo(f"note: content not read in full: {note}")
    for recipient, decision in decisions.items():
        click.echo(describe(recipient, decision))


def describe(recipient: str, decision: Decision) -> str:
    lines = [f"{recipient}: {decision.action}"]
    lines += [f"  {r.rule} -> {r.action}: {r.why}" for r in decision.reasons]
    if not decision.reasons:
        lines.append("  no rule fired: relayed as it is")
    if decision.action in ("reject", "hold"):
        lines.append(f"  text to the sender: {decision.refusal_text()}")
    return "\n".join(lines)


@policy.command("test")
@CONFIG_OPTION
@PACK_OPTION
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
def test_command(config_path: Path, packs: tuple[Path, ...], directory: Path) -> None:
    """Run the packs over every NAME.eml in DIRECTORY against NAME.expect.toml beside it.

    NAME.expect.toml holds ``from = "..."`` and an ``[expect]`` table of
    recipient = action, optionally ``[rules]`` of recipient = [rule names that
    must fire]. Exit 1 if any expectation fails.
    """
    files, settings = _settings(config_path, packs)
    loaded = _load(files)
    messages = sorted(directory.glob("*.eml"))
    if not messages:
        raise click.UsageError(f"no .eml files in {directory}")
    failures = 0
    with _extractor(settings) as extractor:
        for path in messages:
            problems = _run_case(loaded, extractor, path)
            failures += bool(problems)
            click.echo(f"{'FAIL' if problems else 'ok  '} {path.name}")
            for problem in problems:
                click.echo(f"     {problem}")
    click.echo(f"{len(messages) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


def _run_case(loaded: Policy, extractor: TextExtractor, path: Path) -> list[str]:
    from gateway.policy.facts import gather

    expect_path = path.with_suffix(".expect.toml")
    try:
        expected = tomllib.loads(expect_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        return [f"{expect_path.name}: cannot be read: {error}"]
    outcomes = expected.get("expect")
    if not isinstance(outcomes, dict) or not outcomes:
        return [f"{expect_path.name}: needs an [expect] table of recipient = action"]
    sender = str(expected.get("from", ""))
    reader = extractor if loaded.reads_content else None
    decisions = loaded.decide(gather(path.read_bytes(), sender, reader), list(outcomes))
    return _compare(decisions, outcomes, expected.get("rules", {}))


def _compare(decisions: dict[str, Decision], outcomes: dict[str, Any], rules: Any) -> list[str]:
    problems = []
    for recipient, action in outcomes.items():
        decision = decisions[recipient]
        if decision.action != action:
            fired = ", ".join(r.rule for r in decision.reasons) or "no rule"
            problems.append(f"{recipient}: expected {action}, got {decision.action} ({fired})")
        wanted = rules.get(recipient, []) if isinstance(rules, dict) else []
        missing = set(wanted) - {r.rule for r in decision.reasons}
        if missing:
            problems.append(f"{recipient}: rules that did not fire: {', '.join(sorted(missing))}")
    return problems
