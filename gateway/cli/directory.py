"""``sealgate directory sync``: people and groups from Active Directory or OpenLDAP.

A dry run by default: the command reads what changed since the last sync, prints
the plan (who is created, updated, deactivated, deleted; groups likewise) and
changes nothing. ``--apply`` hands the plan to the directory store, which applies
it and keeps the cursor in one transaction (gateway.store.directorysync); a plan
that takes away more than ``directory.max_disable_share`` of the active people is
refused (exit 1) unless ``--force``. Progress goes to standard error, on a
terminal only, so cron mail holds the plan and nothing else.

The gateway's modules are imported inside the functions that use them
(gateway/cli/__init__.py says why).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from gateway.cli.common import CONFIG_OPTION, load_or_exit

if TYPE_CHECKING:
    from gateway.config import Directory as Settings
    from gateway.identity.directorysync import (
        DirectoryPerson,
        FieldChange,
        GroupUpdate,
        PersonUpdate,
        SyncPlan,
        SyncTarget,
    )


@click.group()
def directory() -> None:
    """Provision people and groups from Active Directory or OpenLDAP."""


@directory.command()
@CONFIG_OPTION
@click.option("--apply", "apply_plan", is_flag=True, help="Apply the plan (default: print it).")
@click.option(
    "--force",
    is_flag=True,
    help="Go on when more than directory.max_disable_share of the active people would be "
    "deactivated or deleted.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Read everything and compare it with what Sealgate knows, instead of the changes "
    "since the last sync (finds people who left the base DN or the filter).",
)
def sync(config_path: Path, apply_plan: bool, force: bool, full: bool) -> None:
    """Read the directory's changes and print the plan; --apply applies it."""
    from gateway.config import ConfigError
    from gateway.identity.directorysync import store_target

    cfg = load_or_exit(config_path)
    if not cfg.directory.url:
        click.echo(f"{config_path}: directory.url is not set: nothing to sync", err=True)
        sys.exit(2)
    try:
        target = store_target(cfg)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"{config_path}: {problem}", err=True)
        sys.exit(2)
    try:
        _sync(cfg.directory, target, apply_plan=apply_plan, force=force, full=full)
    finally:
        target.close()


def _sync(
    settings: Settings, target: SyncTarget, *, apply_plan: bool, force: bool, full: bool
) -> None:
    from gateway.identity.directorysync import SyncRefused, plan_sync
    from gateway.identity.ldapdirectory import DirectoryError, LDAPDirectory
    from gateway.store import StoreError

    try:
        known = target.known()
    except StoreError as error:
        _fail(str(error))
    click.echo(f"Directory: {settings.url} ({settings.kind}), base DN {settings.base_dn}")
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        with LDAPDirectory(settings, progress) as reader:
            changes = reader.read(known.cursor, known.ids, full=full)
    except DirectoryError as error:
        _fail(str(error))
    finally:
        if progress is not None:
            progress.done()
    refused = None
    try:
        plan = plan_sync(known, changes, max_disable_share=settings.max_disable_share, force=force)
    except SyncRefused as refusal:
        plan, refused = refusal.plan, refusal
    how = "everything" if changes.full else "the changes since the last sync"
    click.echo(
        f"Read {how}: {_count(len(changes.people), 'person', 'people')}, "
        f"{_count(len(changes.groups), 'group')}, {len(changes.deleted)} deleted."
    )
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    people = [*known.people.values(), *changes.people]
    click.echo("\n".join(describe(plan, {p.external_id: p.user_name for p in people})))
    if refused is not None:
        _fail(f"refused: {refused}")
    if not apply_plan:
        if not plan.empty:
            click.echo("Dry run: nothing was changed. Run again with --apply to apply this plan.")
        return
    try:
        left_out = target.apply(plan)  # an empty plan too: the cursor moves on
    except StoreError as error:
        _fail(f"{error}; nothing was applied, and the next run reads the same changes")
    for warning in left_out:
        click.echo(f"warning: {warning}", err=True)
    if not plan.empty:
        click.echo("Applied.")


def _fail(message: str) -> NoReturn:
    click.echo(f"sealgate: {message}", err=True)
    sys.exit(1)


def describe(plan: SyncPlan, names: Mapping[str, str]) -> list[str]:
    """The plan as lines a person reads: one per person or group, then a summary.
    ``names`` gives member ids their addresses. Phone numbers are not shown."""
    if plan.empty:
        return ["Nothing to change."]
    lines = ["Plan:"]
    lines += [f"  create      {_person(p)}" for p in plan.create]
    lines += [f"  update      {_update(u)}" for u in plan.update]
    lines += [f"  deactivate  {_update(u)}" for u in plan.deactivate]
    lines += [f"  delete      {p.user_name}" for p in plan.delete]
    lines += [
        f'  group create "{g.display_name}" ({_count(len(g.members), "member")})'
        for g in plan.create_groups
    ]
    lines += [f"  group update {_group_update(u, names)}" for u in plan.update_groups]
    lines += [f'  group delete "{g.display_name}"' for g in plan.delete_groups]
    counts = [
        (len(plan.create), "to create"),
        (len(plan.update), "to update"),
        (len(plan.deactivate), "to deactivate"),
        (len(plan.delete), "to delete"),
    ]
    group_counts = [
        (len(plan.create_groups), "to create"),
        (len(plan.update_groups), "to update"),
        (len(plan.delete_groups), "to delete"),
    ]
    lines.append("People: " + _summary(counts) + "; groups: " + _summary(group_counts) + ".")
    return lines


def _person(person: DirectoryPerson) -> str:
    text = person.user_name
    if person.display_name:
        text += f' "{person.display_name}"'
    if not person.active:
        text += " (inactive)"
    return text


def _update(update: PersonUpdate) -> str:
    return f"{update.person.user_name}: " + "; ".join(_change(c) for c in update.changes)


def _change(change: FieldChange) -> str:
    old, new = change.old, change.new
    if change.name == "active":
        return "active -> inactive" if old else "inactive -> active"
    if change.name == "phone":
        return "phone " + ("set" if old is None else "removed" if new is None else "changed")
    if change.name == "emails":
        assert isinstance(old, tuple) and isinstance(new, tuple)
        added = [f"+{e}" for e in new if e not in old]
        removed = [f"-{e}" for e in old if e not in new]
        return "emails " + " ".join(added + removed or ["reordered"])
    return f"{change.name} {_shown(old)} -> {_shown(new)}"


def _group_update(update: GroupUpdate, names: Mapping[str, str]) -> str:
    parts = []
    if update.old_name != update.group.display_name:
        parts.append(f'renamed from "{update.old_name}"')
    parts += sorted(f"+{names.get(i, i)}" for i in update.added)
    parts += sorted(f"-{names.get(i, i)}" for i in update.removed)
    return f'"{update.group.display_name}": ' + ", ".join(parts)


def _shown(value: object) -> str:
    return "(none)" if value is None else f'"{value}"'


def _summary(counts: list[tuple[int, str]]) -> str:
    return ", ".join(f"{n} {what}" for n, what in counts if n) or "none"


def _count(number: int, noun: str, plural: str = "") -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


class _Progress:
    """``reading people: 1200`` on standard error, rewritten in place at most ten times a
    second; ``done()`` clears the line."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._shown = 0.0
        self._width = 0

    def __call__(self, what: str, count: int) -> None:
        now = self._clock()
        if now - self._shown < 0.1:
            return
        self._shown = now
        text = f"reading {what}: {count}"
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = len(text)

    def done(self) -> None:
        if self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
