"""The organisation's directory as a SCIM 2.0 service provider (RFC 7643, RFC 7644).

scim2-server speaks the protocol (routes, PATCH, PUT, If-Match, errors,
discovery) over scim2-models' resources; this module is its storage: the
resources it serves, what they map to in the store (gateway.store.directory),
and the SCIM errors the store's refusals become.

What the directory serves is deliberately small, and says so on ``/Schemas``:
a User is its address (``userName``), ``externalId``, ``displayName``,
``name``, ``active``, ``emails``, the groups it is in and, read-only, the mobile
number the directory sync keeps (``phoneNumbers``, type ``mobile``); a Group its
``displayName``, ``externalId`` and user members. Any other attribute is
refused (400), never silently dropped, so an identity provider's mapping that
sends more is seen at once (docs/identity.md lists what to map).

``userName`` must be the person's e-mail address: that is how the gateway knows
them (accounts, sessions, sign-in). Deactivating a user (``active`` false, by PUT
or PATCH) or deleting one ends their account's sessions in the same transaction,
and sign-in refuses an inactive user (:meth:`gateway.store.Store.directory_active`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

from pydantic import EmailStr, Field
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    ETag,
    Filter,
    GroupMembership,
    InvalidValueException,
    Meta,
    Mutability,
    Name,
    NotFoundException,
    NotImplementedException,
    Patch,
    PreconditionFailedException,
    Reference,
    Required,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
    UniquenessException,
)
from scim2_server.storage import AsyncScimStorage, SearchPage

from gateway.identity import scimfilter
from gateway.store import Store, TemporaryStoreError
from gateway.store.directory import (
    Directory,
    DirectoryConflict,
    DirectoryGroup,
    DirectoryMissing,
    DirectoryUser,
    Email,
    GroupFields,
    UnknownMembers,
    UserFields,
    VersionMismatch,
)

MAX_RESULTS = 200  # one page at most (ServiceProviderConfig filter.maxResults)
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")
_MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: a path of 256 octets, less the brackets
_T = TypeVar("_T")


class DirectoryEmail(ComplexAttribute):
    """One of a user's e-mail addresses (the parts of RFC 7643 §4.1.2 the directory keeps)."""

    value: EmailStr | None = None
    type: str | None = None
    primary: bool | None = None


class DirectoryPhone(ComplexAttribute):
    """The user's mobile number (E.164) as the directory sync read it: shown, never written
    over SCIM (RFC 7643 §2.2 readOnly: a client's value is ignored)."""

    value: Annotated[str | None, Mutability.read_only] = None
    type: Annotated[str | None, Mutability.read_only] = None


class User(Resource[Any]):
    """A person of the organisation, known to the gateway by their e-mail address."""

    __schema__ = URN("urn:ietf:params:scim:schemas:core:2.0:User")

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = None
    name: Name | None = None
    display_name: str | None = None
    active: bool | None = None
    emails: list[DirectoryEmail] | None = None
    phone_numbers: Annotated[list[DirectoryPhone] | None, Mutability.read_only] = None
    groups: Annotated[list[GroupMembership] | None, Mutability.read_only] = None


class Member(ComplexAttribute):
    """A member of a group: a user, by id. ``display`` is the user's displayName, which
    the directory keeps with the user (read-only here)."""

    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    ref: Annotated[Reference[User] | None, Mutability.immutable] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])
    display: Annotated[str | None, Mutability.read_only] = None


class Group(Resource[Any]):
    """A group of the organisation's people."""

    __schema__ = URN("urn:ietf:params:scim:schemas:core:2.0:Group")

    display_name: Annotated[str | None, Required.true] = None
    members: list[Member] | None = None


class Unavailable(SCIMException):
    """The database is busy or out of reach: try again (the provider retries)."""

    status = 503
    _default_detail = "The directory is unavailable for the moment; try again later"


def provider() -> ScimProvider:
    """What the service announces on its discovery endpoints (RFC 7644 §4)."""
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The token in the file scim.token_file names (RFC 6750)",
                primary=True,
            )
        ],
    )
    return ScimProvider(models=[User, Group], config=config)


class DirectoryStorage(AsyncScimStorage):
    """scim2-server's storage over the store's directory tables; each call runs the
    blocking store in a worker thread."""

    def __init__(self, store: Store) -> None:
        self.directory = Directory(store)

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        if resource_type.name == "User":
            return user_resource(await _run(self.directory.user, resource_id))
        return group_resource(await _run(self.directory.group, resource_id))

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """One page of users or groups; at the root (both types) the users come first,
        then the groups, and sorting across the two is not offered."""
        offset = search_request.start_index_0 or 0
        count = search_request.count
        limit = MAX_RESULTS if count is None else min(MAX_RESULTS, count)
        among = len(resource_types) > 1
        if among and search_request.sort_by is not None:
            raise NotImplementedException(detail="sorting users and groups together")
        total, found = 0, list[Resource[Any]]()
        for resource_type in resource_types:
            skip, room = max(0, offset - total), limit - len(found)
            page = await self._search(resource_type, search_request, among, skip, room)
            total += page.total or 0
            found += page.resources
        return SearchPage(total, found)

    async def _search(
        self,
        resource_type: ResourceType,
        search_request: SearchRequest[Any],
        among: bool,
        offset: int,
        limit: int,
    ) -> SearchPage:
        users = resource_type.name == "User"
        scope = scimfilter.USERS if users else scimfilter.GROUPS
        scim_filter = search_request.filter
        where = None
        if scim_filter is not None:
            where = scimfilter.where(scope, scim_filter.ast, among=among)
        descending = search_request.sort_order == SearchRequest.SortOrder.descending
        sort_by = str(search_request.sort_by) if search_request.sort_by is not None else None
        order = scimfilter.order(scope, sort_by, descending)
        if users:
            found = await _run(self.directory.find_users, where, order, offset, limit)
            return SearchPage(found.total, [user_resource(u) for u in found.items])
        groups = await _run(self.directory.find_groups, where, order, offset, limit)
        return SearchPage(groups.total, [group_resource(g) for g in groups.items])

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        now = datetime.now(UTC)
        if isinstance(resource, User):
            return user_resource(await _run(self.directory.add_user, user_fields(resource), now))
        fields = group_fields(cast(Group, resource))
        return group_resource(await _run(self.directory.add_group, fields, now))

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        now, version = datetime.now(UTC), _version_number(expected_version)
        resource_id = cast(str, resource.id)
        if isinstance(resource, User):
            fields = user_fields(resource)
            changed = await _run(self.directory.replace_user, resource_id, fields, now, version)
            return user_resource(changed)
        group = group_fields(cast(Group, resource))
        replaced = await _run(self.directory.replace_group, resource_id, group, now, version)
        return group_resource(replaced)

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        version = _version_number(expected_version)
        if resource_type.name == "User":
            await _run(self.directory.delete_user, resource_id, version)
        else:
            await _run(self.directory.delete_group, resource_id, version)


async def _run(call: Callable[..., _T], *args: Any) -> _T:
    """A store call in a worker thread, its refusals as SCIM errors (RFC 7644 §3.12)."""
    try:
        return await asyncio.to_thread(call, *args)
    except DirectoryMissing:
        raise NotFoundException(detail="no such resource") from None
    except DirectoryConflict as error:
        raise UniquenessException(detail=str(error)) from None
    except VersionMismatch:
        raise PreconditionFailedException from None
    except UnknownMembers as error:
        raise InvalidValueException(detail=f"members must be users: {error}") from None
    except TemporaryStoreError:
        raise Unavailable from None


# ETags (RFC 7644 §3.14): weak, the row's version counter.


def etag(version: int) -> str:
    return f'W/"{version}"'


def _version_number(tag: str | None) -> int | None:
    """The version an If-Match names (None: any); -1 for a tag that cannot be one of
    ours, which then matches no row (412)."""
    if tag is None:
        return None
    match = re.fullmatch(r'(?:W/)?"(\d{1,18})"', tag.strip())
    return int(match.group(1)) if match else -1


# Users


def user_fields(user: User) -> UserFields:
    """The store's fields of a user resource; 400 invalidValue for what cannot be kept."""
    address = (user.user_name or "").strip().lower()
    if not _ADDRESS.fullmatch(address) or len(address) > _MAX_ADDRESS:
        raise InvalidValueException(detail="userName must be the person's e-mail address")
    name = user.name.model_dump(exclude_none=True) if user.name is not None else None
    emails = tuple(
        Email(str(e.value), e.type, bool(e.primary)) for e in user.emails or () if e.value
    )
    return UserFields(
        user_name=address,
        external_id=user.external_id,
        display_name=user.display_name,
        name=json.dumps(name, sort_keys=True) if name else None,
        active=user.active,
        emails=emails,
    )


def user_resource(user: DirectoryUser) -> User:
    fields = user.fields
    return User(
        id=user.user_id,
        external_id=fields.external_id,
        user_name=fields.user_name,
        name=Name.model_validate(json.loads(fields.name)) if fields.name else None,
        display_name=fields.display_name,
        active=fields.active,
        emails=[
            DirectoryEmail(value=e.value, type=e.type, primary=e.primary) for e in fields.emails
        ]
        or None,
        phone_numbers=[DirectoryPhone(value=user.phone, type="mobile")] if user.phone else None,
        groups=[
            GroupMembership(
                value=group_id, display=name, type="direct", ref=Reference(f"Groups/{group_id}")
            )
            for group_id, name in user.groups
        ]
        or None,
        meta=_meta("User", user.created_at, user.modified_at, user.version),
    )


# Groups


def group_fields(group: Group) -> GroupFields:
    if not group.display_name:
        raise InvalidValueException(detail="a group needs a displayName")
    members = []
    for member in group.members or ():
        if member.type not in (None, "User") or not member.value:
            raise InvalidValueException(detail="a group's members are users, by id")
        members.append(member.value)
    return GroupFields(group.display_name, group.external_id, tuple(members))


def group_resource(group: DirectoryGroup) -> Group:
    fields = group.fields
    return Group(
        id=group.group_id,
        external_id=fields.external_id,
        display_name=fields.display_name,
        members=[
            Member(value=user_id, display=name, type="User", ref=Reference(f"Users/{user_id}"))
            for user_id, name in zip(fields.members, group.member_names, strict=True)
        ]
        or None,
        meta=_meta("Group", group.created_at, group.modified_at, group.version),
    )


def _meta(kind: str, created: datetime, modified: datetime, version: int) -> Meta:
    return Meta(resource_type=kind, created=created, last_modified=modified, version=etag(version))
