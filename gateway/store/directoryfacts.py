"""What the policy may ask the organisation's directory about the people of one message:
the sender's groups, and recipients' mobile numbers for SMS codes.

Both read what SCIM or the directory sync keep (gateway.store.directory). A person
the directory deactivated has no groups here and no number: their mail is decided as
anyone's outside the directory.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_, select

from gateway.store.database import Store
from gateway.store.schema import directory_groups, directory_members, directory_users

_ACTIVE = or_(directory_users.c.active.is_(None), directory_users.c.active.is_(True))


class DirectoryFacts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def groups_of(self, address: str) -> frozenset[str]:
        """The names of the directory groups ``address`` belongs to, lower-cased."""
        query = (
            select(func.lower(directory_groups.c.display_name))
            .join(directory_members, directory_members.c.group_id == directory_groups.c.group_id)
            .join(directory_users, directory_users.c.user_id == directory_members.c.user_id)
            .where(directory_users.c.user_name == address.lower(), _ACTIVE)
        )
        with self.store.transaction("reading a sender's directory groups", write=False) as conn:
            return frozenset(conn.scalars(query))

    def phones_of(self, addresses: Iterable[str]) -> dict[str, str]:
        """The directory's mobile number of each of ``addresses`` that has one, by address
        as given."""
        wanted = {address.lower(): address for address in addresses}
        if not wanted:
            return {}
        query = select(directory_users.c.user_name, directory_users.c.phone).where(
            directory_users.c.user_name.in_(sorted(wanted)),
            directory_users.c.phone.is_not(None),
            _ACTIVE,
        )
        with self.store.transaction("reading recipients' numbers", write=False) as conn:
            return {wanted[name]: phone for name, phone in conn.execute(query)}
