"""Directory sync: what the organisation's directory says, compared with what Sealgate knows.

`sealgate directory sync` reads people and groups from Active Directory or OpenLDAP
(:mod:`gateway.identity.ldapdirectory`) as :class:`DirectoryChanges`, compares them with
:class:`Known`, what Sealgate recorded at the last sync, and makes a :class:`SyncPlan`:
people to create, update, deactivate and delete, and groups likewise. Nothing here
talks to a directory or a database; the plan is data that a person can read before it
is applied.

A plan that would take away more than a set share of the active people at once (a
wrong filter, a renamed OU, a service account that lost its rights: each looks like
everyone leaving) is refused with :class:`SyncRefused` unless forced.

Applying a plan, and keeping the cursor of the last read, belong to the directory
store (:class:`SyncTarget`, gateway.store.directorysync); :func:`store_target` is
where the command finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.config import Config

_CURSOR_VERSION = "v1"


@dataclass(frozen=True)
class DirectoryPerson:
    """A person as the directory describes them (and as Sealgate recorded them)."""

    external_id: str  # objectGUID (AD) or entryUUID (OpenLDAP), as a UUID string
    user_name: str  # mail, lower-cased: the address a person signs in with
    emails: tuple[str, ...] = ()  # user_name first, then proxyAddresses' SMTP ones
    display_name: str | None = None
    phone: str | None = None  # mobile, E.164; None when absent or not international
    active: bool = True


@dataclass(frozen=True)
class DirectoryGroup:
    external_id: str
    display_name: str
    members: frozenset[str] = frozenset()  # external ids; only people are kept by a plan


@dataclass(frozen=True)
class Cursor:
    """Where a read ended, and in what: the changes since ``position`` in ``scope``.

    ``scope`` names the server and the searches (AD: the domain controller's
    invocationId, because USNs are counted per DC; the base DN and filters for
    both kinds), so a cursor of another DC or of other filters is never used: the
    next read is a full one. ``position`` is AD's highestCommittedUSN or
    OpenLDAP's latest modifyTimestamp.
    """

    scope: str
    position: str

    def text(self) -> str:
        return f"{_CURSOR_VERSION} {self.scope} {self.position}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor written by :meth:`text`; None for anything else (read everything)."""
        parts = text.split(" ")
        if len(parts) != 3 or parts[0] != _CURSOR_VERSION:
            return None
        return cls(parts[1], parts[2])


@dataclass(frozen=True)
class DirectoryChanges:
    """One read of the directory.

    A full read (``full``) lists every person and group in scope, and ``deleted``
    holds the known ids that were not found. An incremental read lists those
    changed since the cursor, and ``deleted`` those the directory reports deleted
    (AD's Deleted Objects; OpenLDAP's comparison of ids).
    """

    people: tuple[DirectoryPerson, ...]
    groups: tuple[DirectoryGroup, ...]
    deleted: frozenset[str]
    cursor: Cursor
    full: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Known:
    """What Sealgate recorded at the last sync: people and groups by external id, and
    the cursor of that read (None: read everything)."""

    people: Mapping[str, DirectoryPerson] = field(default_factory=dict)
    groups: Mapping[str, DirectoryGroup] = field(default_factory=dict)
    cursor: Cursor | None = None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self.people) | frozenset(self.groups)

    @property
    def active_people(self) -> int:
        return sum(1 for person in self.people.values() if person.active)


@dataclass(frozen=True)
class FieldChange:
    name: str  # a field of DirectoryPerson
    old: object
    new: object


@dataclass(frozen=True)
class PersonUpdate:
    person: DirectoryPerson  # as it will be
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class GroupUpdate:
    group: DirectoryGroup  # as it will be
    old_name: str  # the display name before; equal to group.display_name unless renamed
    added: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True)
class SyncPlan:
    """What applying a read would change. ``deactivate`` holds the updates that turn an
    active person inactive (with whatever else changed about them)."""

    cursor: Cursor
    full: bool
    create: tuple[DirectoryPerson, ...] = ()
    update: tuple[PersonUpdate, ...] = ()
    deactivate: tuple[PersonUpdate, ...] = ()
    delete: tuple[DirectoryPerson, ...] = ()
    create_groups: tuple[DirectoryGroup, ...] = ()
    update_groups: tuple[GroupUpdate, ...] = ()
    delete_groups: tuple[DirectoryGroup, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(
            (self.create, self.update, self.deactivate, self.delete)
            + (self.create_groups, self.update_groups, self.delete_groups)
        )

    @property
    def lost(self) -> int:
        """Active people this plan deactivates or deletes."""
        return len(self.deactivate) + sum(1 for person in self.delete if person.active)


class SyncRefused(Exception):
    """The plan takes away more active people than directory.max_disable_share allows."""

    def __init__(self, plan: SyncPlan, active: int, share: float) -> None:
        self.plan = plan
        self.active = active
        self.share = share
        super().__init__(
            f"this sync would deactivate or delete {plan.lost} of {active} active people "
            f"({plan.lost / active:.0%}), more than directory.max_disable_share allows "
            f"({share:.0%}): check the base DN, the filters and the service account's "
            "rights, or run again with --force"
        )


class SyncTarget(Protocol):
    """Where a sync's plan goes: the directory store (gateway.store.directorysync)."""

    def known(self) -> Known:
        """The people and groups recorded at the last sync, and its cursor. A person
        whose ``active`` the store does not know (a SCIM provider left it out) counts
        as active."""

    def apply(self, plan: SyncPlan) -> tuple[str, ...]:
        """Apply ``plan`` and keep ``plan.cursor``, in one transaction; warnings for
        what was left out (an address or a group name that another row holds)."""

    def close(self) -> None:
        """Release the store."""


def store_target(cfg: Config) -> SyncTarget:
    """The directory store of ``cfg.store``, opened and migrated as every command opens
    it (:class:`gateway.config.ConfigError` when it cannot be)."""
    from gateway.store import open_store
    from gateway.store.directorysync import SyncStore

    return SyncStore(open_store(cfg.store))


def plan_sync(
    known: Known, changes: DirectoryChanges, *, max_disable_share: float, force: bool = False
) -> SyncPlan:
    """The plan that brings ``known`` to what ``changes`` say, each step in the order of
    addresses (groups: of names); :class:`SyncRefused` when it deactivates or deletes
    more than ``max_disable_share`` of the known active people and ``force`` is false."""
    deleted = changes.deleted & known.ids
    create: list[DirectoryPerson] = []
    update: list[PersonUpdate] = []
    deactivate: list[PersonUpdate] = []
    for person in changes.people:
        old = known.people.get(person.external_id)
        if person.external_id in deleted:
            continue
        if old is None:
            create.append(person)
            continue
        diffs = _differences(old, person)
        if diffs:
            (deactivate if old.active and not person.active else update).append(
                PersonUpdate(person, diffs)
            )
    people = (set(known.people) | {p.external_id for p in create}) - deleted
    groups, warnings = _group_changes(known, changes, people, deleted)
    plan = SyncPlan(
        cursor=changes.cursor,
        full=changes.full,
        create=tuple(sorted(create, key=_by_name)),
        update=tuple(sorted(update, key=lambda u: u.person.user_name)),
        deactivate=tuple(sorted(deactivate, key=lambda u: u.person.user_name)),
        delete=tuple(sorted((known.people[i] for i in deleted if i in known.people), key=_by_name)),
        create_groups=groups[0],
        update_groups=groups[1],
        delete_groups=tuple(
            sorted((known.groups[i] for i in deleted if i in known.groups), key=_group_name)
        ),
        warnings=changes.warnings + tuple(warnings),
    )
    active = known.active_people
    if plan.lost and plan.lost > max_disable_share * active and not force:
        raise SyncRefused(plan, active, max_disable_share)
    return plan


def _differences(old: DirectoryPerson, new: DirectoryPerson) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(f.name, getattr(old, f.name), getattr(new, f.name))
        for f in fields(DirectoryPerson)
        if getattr(old, f.name) != getattr(new, f.name)
    )


def _group_changes(
    known: Known, changes: DirectoryChanges, people: set[str], deleted: frozenset[str]
) -> tuple[tuple[tuple[DirectoryGroup, ...], tuple[GroupUpdate, ...]], list[str]]:
    """New and changed groups, their members restricted to ``people`` (a group may list
    computers, contacts, nested groups or people outside the filter: Sealgate's
    groups hold people), and a warning for each group that lost members so. A deleted
    person leaves the groups that were not read again with their own row (the store
    deletes memberships with the person)."""
    create: list[DirectoryGroup] = []
    update: list[GroupUpdate] = []
    warnings: list[str] = []
    for group in changes.groups:
        if group.external_id in deleted:
            continue
        outside = group.members - people - deleted
        if outside:
            warnings.append(
                f'group "{group.display_name}": {_count(len(outside), "member")} not among '
                "the people synced (nested groups, computers, or outside the filter or base "
                "DN) left out"
            )
        group = DirectoryGroup(group.external_id, group.display_name, group.members & people)
        old = known.groups.get(group.external_id)
        if old is None:
            create.append(group)
        elif old != group:
            update.append(
                GroupUpdate(
                    group,
                    old.display_name,
                    added=group.members - old.members,
                    removed=old.members - group.members,
                )
            )
    create.sort(key=_group_name)
    update.sort(key=lambda u: u.group.display_name)
    return (tuple(create), tuple(update)), warnings


def _by_name(person: DirectoryPerson) -> str:
    return person.user_name


def _group_name(group: DirectoryGroup) -> str:
    return group.display_name


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
