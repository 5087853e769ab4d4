"""The organisation's directory: its people and groups as the identity provider keeps them.

Rows are written by SCIM provisioning (gateway.identity.directory) and by the
directory sync (gateway.store.directorysync, through the functions below that
work inside a caller's transaction), and read by sign-in
(:meth:`gateway.store.Store.directory_active`). What this module promises,
whatever the caller:

- A person's address (``user_name``) is kept lower-cased and is unique.
- Every change raises the row's ``version`` by one, in the same statement that
  checks the version the caller expects (optimistic concurrency: ETags and
  If-Match), so two writers cannot both win.
- A person who becomes inactive, is renamed, or is deleted is signed out of
  their account everywhere in the same transaction (gateway.store.sessions),
  and the audit trail records it (``directory-user-*`` events: the address and
  ids, never the values of other attributes; the sync's say ``by=sync``).
- Deleting a person or a group takes their addresses and memberships with it
  (ON DELETE CASCADE); the events stay.

Searches take a WHERE clause built from the tables of gateway.store.schema (the
SCIM filter translation lives in gateway.identity.scimfilter), so values reach
the database only as bound parameters.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import UnaryExpression

from gateway.store.database import Store, append_event
from gateway.store.errors import StoreError
from gateway.store.schema import (
    directory_emails,
    directory_groups,
    directory_members,
    directory_users,
)
from gateway.store.sessions import delete_account_sessions


class DirectoryMissing(StoreError):
    """No user or group has that id."""


class DirectoryConflict(StoreError):
    """A unique value (a user's address, a group's name) is taken by another."""


class VersionMismatch(StoreError):
    """The row changed since the version the caller read (If-Match)."""


class UnknownMembers(StoreError):
    """A group names members that are not users of the directory."""

    def __init__(self, user_ids: Iterable[str]) -> None:
        self.user_ids = sorted(user_ids)
        super().__init__(f"unknown members: {', '.join(self.user_ids)}")


@dataclass(frozen=True)
class Email:
    value: str
    type: str | None
    primary: bool


@dataclass(frozen=True)
class UserFields:
    """What the identity provider says about a person."""

    user_name: str  # the address; kept lower-cased
    external_id: str | None
    display_name: str | None
    name: str | None  # the SCIM "name" as JSON text, opaque here
    active: bool | None  # None: not stated, which is not a deactivation
    emails: tuple[Email, ...] = ()


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    fields: UserFields
    created_at: datetime
    modified_at: datetime
    version: int
    groups: tuple[tuple[str, str], ...] = ()  # (group id, display name), by name
    phone: str | None = None  # mobile, E.164, as the directory sync found it (for SMS codes)


@dataclass(frozen=True)
class GroupFields:
    display_name: str
    external_id: str | None
    members: tuple[str, ...] = ()  # user ids


@dataclass(frozen=True)
class DirectoryGroup:
    group_id: str
    fields: GroupFields
    created_at: datetime
    modified_at: datetime
    version: int
    member_names: tuple[str | None, ...] = ()  # each member's display name, as members


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    total: int  # every match, not only this page
    items: list[T]


def new_id() -> str:
    return os.urandom(16).hex()


class Directory:
    """Users and groups of the directory; every method is one transaction (blocking)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # users

    def add_user(self, fields: UserFields, now: datetime) -> DirectoryUser:
        """A new user (:class:`DirectoryConflict` if the address is taken)."""
        user_id, fields = new_id(), _normal(fields)
        with self.store.transaction("adding a directory user", write=True) as conn:
            _check_free_address(conn, fields.user_name, None)
            try:
                insert_user(conn, user_id, user_values(fields), fields.emails, now)
            except sa_exc.IntegrityError:  # taken meanwhile by another request
                raise DirectoryConflict(f"{fields.user_name} is taken") from None
            return _users(conn, [user_id])[0]

    def user(self, user_id: str) -> DirectoryUser:
        with self.store.transaction("reading a directory user", write=False) as conn:
            found = _users(conn, [user_id])
        if not found:
            raise DirectoryMissing(f"no user {user_id}")
        return found[0]

    def replace_user(
        self, user_id: str, fields: UserFields, now: datetime, expected_version: int | None
    ) -> DirectoryUser:
        """The user's new state. A user who becomes inactive, or whose address changes, is
        signed out everywhere (the old address and, inactive, the new one)."""
        fields = _normal(fields)
        with self.store.transaction("replacing a directory user", write=True) as conn:
            old = _locked(
                conn, directory_users, directory_users.c.user_id, user_id, expected_version
            )
            _check_free_address(conn, fields.user_name, user_id)
            update_user(conn, old, user_values(fields), fields.emails, now)
            return _users(conn, [user_id])[0]

    def delete_user(self, user_id: str, expected_version: int | None) -> None:
        """Remove the user and their memberships; their account is signed out everywhere.
        The audit trail keeps what happened (the events are never deleted)."""
        with self.store.transaction("deleting a directory user", write=True) as conn:
            old = _locked(
                conn, directory_users, directory_users.c.user_id, user_id, expected_version
            )
            remove_user(conn, old)

    def find_users(
        self,
        where: ColumnElement[bool] | None,
        order: Sequence[UnaryExpression[Any]],
        offset: int,
        limit: int | None,
    ) -> Page[DirectoryUser]:
        """The users ``where`` selects: how many in all, and the page from ``offset``."""
        with self.store.transaction("searching directory users", write=False) as conn:
            total, ids = _page(conn, directory_users.c.user_id, where, order, offset, limit)
            return Page(total, _users(conn, ids))

    # groups

    def add_group(self, fields: GroupFields, now: datetime) -> DirectoryGroup:
        group_id = new_id()
        with self.store.transaction("adding a directory group", write=True) as conn:
            _check_free_group_name(conn, fields.display_name, None)
            try:
                conn.execute(
                    insert(directory_groups).values(
                        group_id=group_id,
                        display_name=fields.display_name,
                        external_id=fields.external_id,
                        created_at=now,
                        modified_at=now,
                        version=1,
                    )
                )
            except sa_exc.IntegrityError:
                raise DirectoryConflict(f"group {fields.display_name!r} exists") from None
            _write_members(conn, group_id, fields.members)
            append_event(
                conn,
                "directory-group-created",
                detail=f"id={group_id} members={len(set(fields.members))}",
            )
            return _groups(conn, [group_id])[0]

    def group(self, group_id: str) -> DirectoryGroup:
        with self.store.transaction("reading a directory group", write=False) as conn:
            found = _groups(conn, [group_id])
        if not found:
            raise DirectoryMissing(f"no group {group_id}")
        return found[0]

    def replace_group(
        self, group_id: str, fields: GroupFields, now: datetime, expected_version: int | None
    ) -> DirectoryGroup:
        with self.store.transaction("replacing a directory group", write=True) as conn:
            old = _locked(
                conn, directory_groups, directory_groups.c.group_id, group_id, expected_version
            )
            _check_free_group_name(conn, fields.display_name, group_id)
            conn.execute(
                update(directory_groups)
                .where(directory_groups.c.group_id == group_id)
                .values(
                    display_name=fields.display_name,
                    external_id=fields.external_id,
                    modified_at=now,
                    version=old.version + 1,
                )
            )
            conn.execute(delete(directory_members).where(directory_members.c.group_id == group_id))
            _write_members(conn, group_id, fields.members)
            append_event(
                conn,
                "directory-group-updated",
                detail=f"id={group_id} members={len(set(fields.members))}",
            )
            return _groups(conn, [group_id])[0]

    def delete_group(self, group_id: str, expected_version: int | None) -> None:
        with self.store.transaction("deleting a directory group", write=True) as conn:
            _locked(conn, directory_groups, directory_groups.c.group_id, group_id, expected_version)
            conn.execute(delete(directory_groups).where(directory_groups.c.group_id == group_id))
            append_event(conn, "directory-group-deleted", detail=f"id={group_id}")

    def find_groups(
        self,
        where: ColumnElement[bool] | None,
        order: Sequence[UnaryExpression[Any]],
        offset: int,
        limit: int | None,
    ) -> Page[DirectoryGroup]:
        with self.store.transaction("searching directory groups", write=False) as conn:
            total, ids = _page(conn, directory_groups.c.group_id, where, order, offset, limit)
            return Page(total, _groups(conn, ids))


def _normal(fields: UserFields) -> UserFields:
    return replace(fields, user_name=fields.user_name.lower())


def user_values(fields: UserFields) -> dict[str, Any]:
    """The columns of ``directory_users`` that SCIM writes (not ``phone``, not ``sync_source``)."""
    return {
        "user_name": fields.user_name,
        "external_id": fields.external_id,
        "display_name": fields.display_name,
        "name": fields.name,
        "active": fields.active,
    }


# Writes inside the caller's transaction, shared by SCIM (Directory) and the directory sync.


def insert_user(
    conn: Connection,
    user_id: str,
    values: Mapping[str, Any],
    emails: Sequence[Email],
    now: datetime,
    note: str = "",
) -> None:
    """A new user of ``values`` (columns, the address lower-cased) with ``emails``, and the
    ``directory-user-created`` event (``note`` appended to its detail). The caller checked
    that the address is free; a race still ends in IntegrityError."""
    conn.execute(
        insert(directory_users).values(
            user_id=user_id, created_at=now, modified_at=now, version=1, **values
        )
    )
    write_emails(conn, user_id, emails)
    active = str(values.get("active")).lower()
    append_event(
        conn,
        "directory-user-created",
        address=values["user_name"],
        detail=_noted(f"id={user_id} active={active}", note),
    )


def update_user(
    conn: Connection,
    old: Any,
    values: Mapping[str, Any],
    emails: Sequence[Email],
    now: datetime,
    note: str = "",
) -> None:
    """The user of row ``old`` (read with the lock of :func:`_locked` or ``FOR UPDATE``)
    with the columns of ``values`` changed and ``emails`` as their addresses: a new
    version, the sessions the change takes away ended, the change recorded."""
    conn.execute(
        update(directory_users)
        .where(directory_users.c.user_id == old.user_id)
        .values(modified_at=now, version=old.version + 1, **values)
    )
    conn.execute(delete(directory_emails).where(directory_emails.c.user_id == old.user_id))
    write_emails(conn, old.user_id, emails)
    _record_change(conn, old, values, note)


def remove_user(conn: Connection, old: Any, note: str = "") -> None:
    """Delete the user of row ``old`` with their memberships (each group a new version),
    end their account's sessions, and record it; the events stay."""
    groups = select(directory_members.c.group_id).where(directory_members.c.user_id == old.user_id)
    _touch_groups(conn, groups.scalar_subquery())
    conn.execute(delete(directory_users).where(directory_users.c.user_id == old.user_id))
    ended = delete_account_sessions(conn, old.user_name)
    append_event(
        conn,
        "directory-user-deleted",
        address=old.user_name,
        detail=_noted(f"id={old.user_id} sessions={ended}", note),
    )


def write_emails(conn: Connection, user_id: str, emails: Sequence[Email]) -> None:
    if emails:
        conn.execute(
            insert(directory_emails),
            [
                {
                    "user_id": user_id,
                    "position": position,
                    "value": email.value,
                    "type": email.type,
                    "is_primary": email.primary,
                }
                for position, email in enumerate(emails)
            ],
        )


def _write_members(conn: Connection, group_id: str, members: Sequence[str]) -> None:
    wanted = sorted(set(members))
    if not wanted:
        return
    known = set(
        conn.scalars(select(directory_users.c.user_id).where(directory_users.c.user_id.in_(wanted)))
    )
    if unknown := set(wanted) - known:
        raise UnknownMembers(unknown)
    conn.execute(insert(directory_members), [{"group_id": group_id, "user_id": u} for u in wanted])


def _check_free_address(conn: Connection, address: str, owner: str | None) -> None:
    taken = conn.scalar(
        select(directory_users.c.user_id).where(directory_users.c.user_name == address)
    )
    if taken is not None and taken != owner:
        raise DirectoryConflict(f"{address} is taken")


def _check_free_group_name(conn: Connection, name: str, owner: str | None) -> None:
    taken = conn.scalar(
        select(directory_groups.c.group_id).where(directory_groups.c.display_name == name)
    )
    if taken is not None and taken != owner:
        raise DirectoryConflict(f"group {name!r} exists")


def _locked(
    conn: Connection, table: Any, key: Any, value: str, expected_version: int | None
) -> Any:
    """The row about to change, locked for this transaction (PostgreSQL: FOR UPDATE;
    SQLite serialises write transactions already); DirectoryMissing or VersionMismatch."""
    row = conn.execute(select(table).where(key == value).with_for_update()).first()
    if row is None:
        raise DirectoryMissing(f"no {table.name} row {value}")
    if expected_version is not None and row.version != expected_version:
        raise VersionMismatch(f"{value} is at version {row.version}")
    return row


# The columns the audit trail names when they change, by their SCIM attribute names.
_AUDITED = (
    ("user_name", "userName"),
    ("external_id", "externalId"),
    ("display_name", "displayName"),
    ("name", "name"),
    ("active", "active"),
    ("phone", "phoneNumbers"),
)


def _record_change(conn: Connection, old: Any, values: Mapping[str, Any], note: str) -> None:
    """End the sessions a change takes away, and record it in the audit trail (which
    attributes changed, never their values)."""
    user_name = values.get("user_name", old.user_name)
    active = values.get("active", old.active)
    ended = 0
    if old.user_name != user_name:
        ended += delete_account_sessions(conn, old.user_name)
    if active is False:
        ended += delete_account_sessions(conn, user_name)
    changed = [
        name
        for column, name in _AUDITED
        if column in values and values[column] != getattr(old, column)
    ]
    detail = f"id={old.user_id} changed={','.join(changed) or 'emails'} sessions={ended}"
    deactivated = old.active is not False and active is False
    kind = "directory-user-deactivated" if deactivated else "directory-user-updated"
    append_event(conn, kind, address=user_name, detail=_noted(detail, note))


def _noted(detail: str, note: str) -> str:
    return f"{detail} {note}" if note else detail


def _touch_groups(conn: Connection, group_ids: Any) -> None:
    """A group whose members change is a new version of the group (its ETag changes)."""
    conn.execute(
        update(directory_groups)
        .where(directory_groups.c.group_id.in_(group_ids))
        .values(version=directory_groups.c.version + 1)
    )


def _page(
    conn: Connection,
    key: Any,
    where: ColumnElement[bool] | None,
    order: Sequence[UnaryExpression[Any]],
    offset: int,
    limit: int | None,
) -> tuple[int, list[str]]:
    """How many rows ``where`` selects, and the ids of the page (ties broken by id)."""
    counting = select(func.count()).select_from(key.table)
    query = select(key).order_by(*order, key).offset(offset)
    if where is not None:
        counting, query = counting.where(where), query.where(where)
    if limit is not None:
        query = query.limit(limit)
    total = conn.scalar(counting) or 0
    ids = list(conn.scalars(query)) if limit != 0 else []
    return total, ids


def _users(conn: Connection, ids: list[str]) -> list[DirectoryUser]:
    """The users of ``ids`` with their addresses and groups, in the order of ``ids``."""
    if not ids:
        return []
    rows = {
        r.user_id: r
        for r in conn.execute(select(directory_users).where(directory_users.c.user_id.in_(ids)))
    }
    emails: dict[str, list[Email]] = {}
    for r in conn.execute(
        select(directory_emails)
        .where(directory_emails.c.user_id.in_(ids))
        .order_by(directory_emails.c.user_id, directory_emails.c.position)
    ):
        emails.setdefault(r.user_id, []).append(Email(r.value, r.type, r.is_primary))
    groups: dict[str, list[tuple[str, str]]] = {}
    for r in conn.execute(
        select(
            directory_members.c.user_id,
            directory_groups.c.group_id,
            directory_groups.c.display_name,
        )
        .join(directory_groups)
        .where(directory_members.c.user_id.in_(ids))
        .order_by(directory_groups.c.display_name)
    ):
        groups.setdefault(r.user_id, []).append((r.group_id, r.display_name))
    return [
        DirectoryUser(
            user_id,
            UserFields(
                row.user_name,
                row.external_id,
                row.display_name,
                row.name,
                row.active if row.active is None else bool(row.active),
                tuple(emails.get(user_id, ())),
            ),
            row.created_at,
            row.modified_at,
            row.version,
            tuple(groups.get(user_id, ())),
            row.phone,
        )
        for user_id in ids
        if (row := rows.get(user_id)) is not None
    ]


def _groups(conn: Connection, ids: list[str]) -> list[DirectoryGroup]:
    """The groups of ``ids`` with their members (by user id), in the order of ``ids``."""
    if not ids:
        return []
    rows = {
        r.group_id: r
        for r in conn.execute(select(directory_groups).where(directory_groups.c.group_id.in_(ids)))
    }
    members: dict[str, list[tuple[str, str | None]]] = {}
    for r in conn.execute(
        select(
            directory_members.c.group_id, directory_users.c.user_id, directory_users.c.display_name
        )
        .join(directory_users)
        .where(directory_members.c.group_id.in_(ids))
        .order_by(directory_members.c.group_id, directory_users.c.user_id)
    ):
        members.setdefault(r.group_id, []).append((r.user_id, r.display_name))
    return [
        DirectoryGroup(
            group_id,
            GroupFields(
                row.display_name, row.external_id, tuple(m for m, _ in members.get(group_id, ()))
            ),
            row.created_at,
            row.modified_at,
            row.version,
            tuple(n for _, n in members.get(group_id, ())),
        )
        for group_id in ids
        if (row := rows.get(group_id)) is not None
    ]
