"""The directory store as the target of ``sealgate directory sync --apply``.

The sync (gateway.identity.directorysync) reads Active Directory or OpenLDAP and
makes a plan against :meth:`SyncStore.known`; :meth:`SyncStore.apply` carries it
out. Which rows are the sync's: those whose ``sync_source`` names its source
(:data:`SOURCE`, the row of ``directory_sync`` that holds its cursor). Rows
provisioned over SCIM have none, so the sync never compares the directory with
them and a full read never deletes them.

A person the directory has and SCIM provisioned too is not duplicated (the
address is unique). The sync takes the SCIM row over when its ``externalId`` is
the directory's id (objectGUID, entryUUID: what docs/identity.md tells a SCIM
client in front of Active Directory to send); otherwise the person is left out
of the sync with a warning, and so is a group whose name is taken likewise.
Later SCIM writes to a row the sync keeps are allowed; the next change in the
directory, or a ``--full`` run, writes the directory's values again.

:meth:`SyncStore.apply` is one transaction: the plan's changes, by the store's
own rules (gateway.store.directory: a new version per changed row, sessions
ended on deactivation, renaming and deletion, a ``directory-user-*`` or
``directory-group-*`` event whose detail ends in ``by=sync``), and the new
cursor. If anything fails, nothing is applied and the cursor stays, so the next
run reads the same changes again. Deletions go first, so an address or a group
name a plan frees can be taken by a person or group the same plan creates.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from gateway.identity.directorysync import (
    Cursor,
    DirectoryGroup,
    DirectoryPerson,
    GroupUpdate,
    Known,
    SyncPlan,
)
from gateway.store.database import Store, append_event
from gateway.store.directory import Email, insert_user, new_id, remove_user, update_user
from gateway.store.errors import StoreError
from gateway.store.schema import (
    directory_emails,
    directory_groups,
    directory_members,
    directory_sync,
    directory_users,
)

SOURCE = "directory"  # the configuration's one [directory]: its rows and its cursor
BY_SYNC = "by=sync"
_UNREAD = object()


class SyncConflict(StoreError):
    """Another sync applied a plan after this one read the store."""


class SyncStore:
    """People and groups of one sync source, with its cursor (blocking)."""

    def __init__(self, store: Store, source: str = SOURCE) -> None:
        self.store = store
        self.source = source
        self._cursor_read: object = _UNREAD  # the cursor text known() saw (None: no row)

    def close(self) -> None:
        self.store.close()

    def known(self) -> Known:
        """The source's people (with their addresses) and groups (with their members among
        those people), by external id, and its cursor; None if it has none, or one another
        version of Sealgate wrote."""
        with self.store.transaction("reading the directory sync's people", write=False) as conn:
            text = conn.scalar(
                select(directory_sync.c.cursor).where(directory_sync.c.source == self.source)
            )
            people = _people(conn, self.source)
            groups = _groups(conn, self.source)
        self._cursor_read = text
        return Known(people, groups, Cursor.parse(text) if text is not None else None)

    def apply(self, plan: SyncPlan) -> tuple[str, ...]:
        """Apply ``plan`` and keep its cursor in one transaction; what was left out, and
        why. :class:`SyncConflict` when another sync applied a plan since :meth:`known`."""
        now = datetime.now(UTC)
        with self.store.transaction("applying a directory sync", write=True) as conn:
            self._check_cursor(conn)
            run = _Run(conn, self.source, now)
            for group in plan.delete_groups:
                run.delete_group(group)
            for person in plan.delete:
                run.delete_person(person)
            for change in plan.deactivate + plan.update:
                run.update_person(change.person)
            for person in plan.create:
                run.create_person(person)
            for group in plan.create_groups:
                run.create_group(group)
            for group_change in plan.update_groups:
                run.update_group(group_change)
            _keep_cursor(conn, self.source, plan.cursor, now)
        self._cursor_read = plan.cursor.text()
        return tuple(run.warnings)

    def _check_cursor(self, conn: Connection) -> None:
        """The cursor row, locked (PostgreSQL; SQLite writes one at a time already), must
        be the one :meth:`known` read: two syncs at once would undo each other."""
        current = conn.scalar(
            select(directory_sync.c.cursor)
            .where(directory_sync.c.source == self.source)
            .with_for_update()
        )
        if self._cursor_read is not _UNREAD and current != self._cursor_read:
            raise SyncConflict(
                "another directory sync applied its changes while this one ran (run it again)"
            )


class _Run:
    """The writes of one apply, inside its transaction, and what they left out."""

    def __init__(self, conn: Connection, source: str, now: datetime) -> None:
        self.conn = conn
        self.source = source
        self.now = now
        self.warnings: list[str] = []
        self._users: dict[str, str] | None = None  # external id -> user id, see _user_ids

    # people

    def create_person(self, person: DirectoryPerson) -> None:
        row = self.conn.execute(
            select(directory_users)
            .where(directory_users.c.user_name == person.user_name)
            .with_for_update()
        ).first()
        values = {**_person_values(person), "sync_source": self.source}
        if row is None:
            insert_user(self.conn, new_id(), values, _emails(person), self.now, BY_SYNC)
        elif _takes_over(row, person.external_id):
            update_user(self.conn, row, values, _emails(person), self.now, f"{BY_SYNC} from=scim")
        else:
            self._left_out(person.user_name, f"the address is {_whose(row)}")

    def update_person(self, person: DirectoryPerson) -> None:
        """The person's new state; a person deleted over SCIM meanwhile is created again
        (as a --full run would). A new address that is taken is not written, the rest
        (a deactivation above all) is."""
        row = self._own(directory_users, person.external_id)
        if row is None:
            self.create_person(person)
            return
        values, emails = _person_values(person), _emails(person)
        taken = self.conn.execute(
            select(directory_users).where(
                directory_users.c.user_name == person.user_name,
                directory_users.c.user_id != row.user_id,
            )
        ).first()
        if taken is not None:
            self._left_out(
                f"{row.user_name}: the new address {person.user_name}",
                f"is {_whose(taken)}; it keeps its old address",
            )
            values["user_name"] = row.user_name
            emails = _stored_emails(self.conn, row.user_id)
        update_user(self.conn, row, values, emails, self.now, BY_SYNC)

    def delete_person(self, person: DirectoryPerson) -> None:
        row = self._own(directory_users, person.external_id)
        if row is not None:  # else deleted over SCIM meanwhile: nothing left to do
            remove_user(self.conn, row, BY_SYNC)

    # groups

    def create_group(self, group: DirectoryGroup) -> None:
        row = self.conn.execute(
            select(directory_groups)
            .where(directory_groups.c.display_name == group.display_name)
            .with_for_update()
        ).first()
        if row is None:
            group_id = new_id()
            self.conn.execute(
                insert(directory_groups).values(
                    group_id=group_id,
                    display_name=group.display_name,
                    external_id=group.external_id,
                    sync_source=self.source,
                    created_at=self.now,
                    modified_at=self.now,
                    version=1,
                )
            )
            self._add_members(group_id, group.members)
            self._group_event("directory-group-created", group_id, BY_SYNC)
        elif _takes_over(row, group.external_id):
            self._change_group(row, external_id=group.external_id, sync_source=self.source)
            self._add_members(row.group_id, group.members)
            self._group_event("directory-group-updated", row.group_id, f"{BY_SYNC} from=scim")
        else:
            self._left_out(f'group "{group.display_name}"', f"the name is {_whose(row)}")

    def update_group(self, change: GroupUpdate) -> None:
        """The directory's changes of name and members (a group deleted over SCIM
        meanwhile is created again; a new name that is taken is not written)."""
        group = change.group
        row = self._own(directory_groups, group.external_id)
        if row is None:
            self.create_group(group)
            return
        name = group.display_name
        taken = self.conn.execute(
            select(directory_groups).where(
                directory_groups.c.display_name == name,
                directory_groups.c.group_id != row.group_id,
            )
        ).first()
        if taken is not None:
            self._left_out(
                f'group "{row.display_name}": the new name "{name}"',
                f"is {_whose(taken)}; it keeps its old name",
            )
            name = row.display_name
        self._change_group(row, display_name=name)
        removed = self._user_ids(change.removed)
        for chunk in _chunks(removed):
            self.conn.execute(
                delete(directory_members).where(
                    directory_members.c.group_id == row.group_id,
                    directory_members.c.user_id.in_(chunk),
                )
            )
        self._add_members(row.group_id, change.added)
        self._group_event("directory-group-updated", row.group_id, BY_SYNC)

    def delete_group(self, group: DirectoryGroup) -> None:
        row = self._own(directory_groups, group.external_id)
        if row is not None:
            self.conn.execute(
                delete(directory_groups).where(directory_groups.c.group_id == row.group_id)
            )
            append_event(
                self.conn, "directory-group-deleted", detail=f"id={row.group_id} {BY_SYNC}"
            )

    # shared

    def _own(self, table: Any, external_id: str) -> Any:
        """The source's row of ``external_id`` in ``table``, locked; None if there is none."""
        return self.conn.execute(
            select(table)
            .where(table.c.sync_source == self.source, table.c.external_id == external_id)
            .with_for_update()
        ).first()

    def _user_ids(self, external_ids: Collection[str]) -> list[str]:
        """The source's users of these external ids (a person left out has none). The
        source's ids are read once, at the first group change: after the people's."""
        if self._users is None:
            query = select(directory_users.c.external_id, directory_users.c.user_id).where(
                directory_users.c.sync_source == self.source
            )
            self._users = {row.external_id: row.user_id for row in self.conn.execute(query)}
        return sorted(u for i in external_ids if (u := self._users.get(i)) is not None)

    def _add_members(self, group_id: str, external_ids: Collection[str]) -> None:
        """Add the people of ``external_ids`` who are not members yet (members SCIM added
        stay: the sync changes only the memberships the directory changed)."""
        present = select(directory_members.c.user_id).where(
            directory_members.c.group_id == group_id
        )
        wanted = set(self._user_ids(external_ids)) - set(self.conn.scalars(present))
        if wanted:
            self.conn.execute(
                insert(directory_members),
                [{"group_id": group_id, "user_id": user_id} for user_id in sorted(wanted)],
            )

    def _change_group(self, row: Any, **values: Any) -> None:
        self.conn.execute(
            update(directory_groups)
            .where(directory_groups.c.group_id == row.group_id)
            .values(modified_at=self.now, version=row.version + 1, **values)
        )

    def _group_event(self, kind: str, group_id: str, note: str) -> None:
        members = self.conn.scalar(
            select(func.count()).where(directory_members.c.group_id == group_id)
        )
        append_event(self.conn, kind, detail=f"id={group_id} members={members} {note}")

    def _left_out(self, what: str, why: str) -> None:
        self.warnings.append(
            f"{what}: {why}; left out of this sync (a --full run tries again once resolved)"
        )


def _person_values(person: DirectoryPerson) -> dict[str, Any]:
    """The columns the sync keeps (SCIM's ``name`` is not the directory's to change)."""
    return {
        "user_name": person.user_name,
        "external_id": person.external_id,
        "display_name": person.display_name,
        "active": person.active,
        "phone": person.phone,
    }


def _emails(person: DirectoryPerson) -> tuple[Email, ...]:
    """The directory's addresses as work addresses, the first (mail) primary."""
    return tuple(Email(value, "work", index == 0) for index, value in enumerate(person.emails))


def _stored_emails(conn: Connection, user_id: str) -> tuple[Email, ...]:
    query = (
        select(directory_emails)
        .where(directory_emails.c.user_id == user_id)
        .order_by(directory_emails.c.position)
    )
    return tuple(Email(r.value, r.type, r.is_primary) for r in conn.execute(query))


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """``items`` in lists of ``size``: bound parameters per statement stay few."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _takes_over(row: Any, external_id: str) -> bool:
    """Whether the sync takes over a row it found by address or name: a SCIM row whose
    externalId is the directory's id (GUIDs compared without regard to case)."""
    return row.sync_source is None and (row.external_id or "").lower() == external_id.lower()


def _whose(row: Any) -> str:
    if row.sync_source is None:
        return f"taken by one provisioned over SCIM (externalId {row.external_id or 'none'})"
    return f"taken by another of the directory's (external id {row.external_id})"


def _keep_cursor(conn: Connection, source: str, cursor: Cursor, now: datetime) -> None:
    values = {"cursor": cursor.text(), "synced_at": now}
    kept = conn.execute(
        update(directory_sync).where(directory_sync.c.source == source).values(**values)
    )
    if kept.rowcount == 0:
        conn.execute(insert(directory_sync).values(source=source, **values))


def _people(conn: Connection, source: str) -> dict[str, DirectoryPerson]:
    emails: dict[str, list[str]] = {}
    for row in conn.execute(
        select(directory_emails.c.user_id, directory_emails.c.value)
        .join(directory_users)
        .where(directory_users.c.sync_source == source)
        .order_by(directory_emails.c.user_id, directory_emails.c.position)
    ):
        emails.setdefault(row.user_id, []).append(row.value)
    return {
        row.external_id: DirectoryPerson(
            row.external_id,
            row.user_name,
            tuple(emails.get(row.user_id, ())),
            row.display_name,
            row.phone,
            row.active is not False,  # None (SCIM left it out, before a take-over): active
        )
        for row in conn.execute(
            select(directory_users).where(directory_users.c.sync_source == source)
        )
    }


def _groups(conn: Connection, source: str) -> dict[str, DirectoryGroup]:
    members: dict[str, set[str]] = {}
    for row in conn.execute(
        select(directory_members.c.group_id, directory_users.c.external_id)
        .join(directory_users)
        .where(directory_users.c.sync_source == source)
    ):
        members.setdefault(row.group_id, set()).add(row.external_id)
    return {
        row.external_id: DirectoryGroup(
            row.external_id, row.display_name, frozenset(members.get(row.group_id, ()))
        )
        for row in conn.execute(
            select(directory_groups).where(directory_groups.c.sync_source == source)
        )
    }
