"""SCIM filters (RFC 7644 §3.4.2.2) and sort orders (§3.4.2.3) as SQL over the directory.

scim2-models parses a filter into a tree and checks its attributes against the
resource's schema; this module turns the tree into one SQLAlchemy WHERE clause
on the tables of gateway.store.schema. Values only ever become bound
parameters: nothing of the filter's text is pasted into SQL.

Semantics kept on SQLite and PostgreSQL alike:

- Attribute names are case-insensitive; a name may carry its schema's URN.
- Attributes that are not case-exact (userName, displayName, emails) compare
  case-insensitively; ids and externalId compare exactly. ``co``, ``sw`` and
  ``ew`` use string positions, not LIKE, so no character of the value is a
  wildcard and the case rules are the same on both databases.
- Logic is two-valued: a comparison with a missing (NULL) value is false, so
  ``not (displayName eq "x")`` matches a user without a displayName, and
  ``ne`` matches missing values.
- Multi-valued attributes (a user's ``emails`` and ``groups``, a group's
  ``members``) match when one of their values does, including a value filter
  such as ``emails[type eq "work" and value ew "@example.org"]`` (EXISTS).
- What the directory does not store in columns (``name``) cannot be filtered:
  400 invalidFilter, never a silent mismatch.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from scim2_models import InvalidFilterException, InvalidValueException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    exists,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.functions import GenericFunction

from gateway.store.schema import (
    directory_emails,
    directory_groups,
    directory_members,
    directory_users,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


class _position(GenericFunction[int]):
    """Where a string first occurs in another (1-based, 0: nowhere): ``strpos`` on
    PostgreSQL, ``instr`` on SQLite."""

    type = Integer()
    inherit_cache = True


@compiles(_position)
def _strpos(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _instr(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@dataclass(frozen=True)
class _Attr:
    """A single-valued attribute kept in a column."""

    column: ColumnElement[Any]
    kind: str  # "exact" | "lower" (stored lower-cased) | "caseless" | "bool" | "datetime"
    nullable: bool = True


@dataclass(frozen=True)
class _Multi:
    """A multi-valued attribute kept in another table: ``rows`` selects one owner's
    values (correlated), ``attrs`` are their sub-attributes, ``default`` the one a bare
    comparison (``emails eq "x"``) means."""

    rows: Callable[[], Select[Any]]
    attrs: Mapping[str, _Attr]
    default: str = "value"


@dataclass(frozen=True)
class _Scope:
    schema: str
    attrs: Mapping[str, _Attr]
    multi: Mapping[str, _Multi] = field(default_factory=dict)
    unfilterable: frozenset[str] = frozenset()


def _user_emails() -> Select[Any]:
    return select(directory_emails.c.user_id).where(
        directory_emails.c.user_id == directory_users.c.user_id
    )


def _user_groups() -> Select[Any]:
    return (
        select(directory_members.c.group_id)
        .join(directory_groups)
        .where(directory_members.c.user_id == directory_users.c.user_id)
    )


def _group_members() -> Select[Any]:
    return (
        select(directory_members.c.user_id)
        .join(directory_users)
        .where(directory_members.c.group_id == directory_groups.c.group_id)
    )


USERS = _Scope(
    USER_SCHEMA,
    {
        "id": _Attr(directory_users.c.user_id, "exact", nullable=False),
        "username": _Attr(directory_users.c.user_name, "lower", nullable=False),
        "externalid": _Attr(directory_users.c.external_id, "exact"),
        "displayname": _Attr(directory_users.c.display_name, "caseless"),
        "active": _Attr(directory_users.c.active, "bool", nullable=False),
        "meta.created": _Attr(directory_users.c.created_at, "datetime", nullable=False),
        "meta.lastmodified": _Attr(directory_users.c.modified_at, "datetime", nullable=False),
    },
    {
        "emails": _Multi(
            _user_emails,
            {
                "value": _Attr(directory_emails.c.value, "caseless", nullable=False),
                "type": _Attr(directory_emails.c.type, "caseless"),
                "primary": _Attr(directory_emails.c.is_primary, "bool", nullable=False),
            },
        ),
        "groups": _Multi(
            _user_groups,
            {
                "value": _Attr(directory_members.c.group_id, "exact", nullable=False),
                "display": _Attr(directory_groups.c.display_name, "caseless", nullable=False),
            },
        ),
    },
    frozenset({"name"}),
)

GROUPS = _Scope(
    GROUP_SCHEMA,
    {
        "id": _Attr(directory_groups.c.group_id, "exact", nullable=False),
        "displayname": _Attr(directory_groups.c.display_name, "caseless", nullable=False),
        "externalid": _Attr(directory_groups.c.external_id, "exact"),
        "meta.created": _Attr(directory_groups.c.created_at, "datetime", nullable=False),
        "meta.lastmodified": _Attr(directory_groups.c.modified_at, "datetime", nullable=False),
    },
    {
        "members": _Multi(
            _group_members,
            {
                "value": _Attr(directory_members.c.user_id, "exact", nullable=False),
                "display": _Attr(directory_users.c.display_name, "caseless"),
            },
        ),
    },
)


def where(scope: _Scope, node: FilterNode, *, among: bool = False) -> ColumnElement[bool]:
    """The WHERE clause of a parsed filter; InvalidFilterException for what cannot be.
    ``among``: the search spans several resource types, and an attribute another type
    declares matches none of this one's resources (RFC 7644 §3.4.2.1)."""
    return _Translator(scope, among).visit(node)


def order(scope: _Scope, sort_by: str | None, descending: bool) -> list[UnaryExpression[Any]]:
    """ORDER BY for ``sortBy`` (missing values last, as RFC 7644 §3.4.2.3 says for
    ascending order); empty without one. InvalidValueException for an attribute the
    directory cannot sort by (a multi-valued one, or ``name``)."""
    if sort_by is None:
        return []
    attr = scope.attrs.get(_key(scope, _parse_path(sort_by)))
    if attr is None:
        raise InvalidValueException(detail=f"cannot sort by {sort_by}")
    column = _folded(attr)
    direction = column.desc() if descending else column.asc()
    missing_last = attr.column.is_(None).asc()
    return [missing_last, direction]


def _parse_path(text: str) -> AttrPath:
    uri, _, rest = text.rpartition(":") if text.lower().startswith("urn:") else ("", "", text)
    attr, _, sub = rest.partition(".")
    try:
        return AttrPath(attr, sub or None, uri or None)
    except ValueError as error:
        raise InvalidValueException(detail=str(error)) from None


def _key(scope: _Scope, path: AttrPath) -> str:
    if path.uri is not None and path.uri.lower() != scope.schema.lower():
        raise InvalidFilterException(detail=f"{path} is not an attribute of {scope.schema}")
    name = path.attr.lower()
    return f"{name}.{path.sub_attr.lower()}" if path.sub_attr else name


def _folded(attr: _Attr) -> ColumnElement[Any]:
    return func.lower(attr.column) if attr.kind == "caseless" else attr.column


class _Translator:
    def __init__(self, scope: _Scope, among: bool = False) -> None:
        self.scope = scope
        self.among = among

    def visit(self, node: FilterNode) -> ColumnElement[bool]:
        foreign = isinstance(node, ValuePath | Present | Comparison) and self._foreign(
            node.attr_path
        )
        if self.among and foreign:
            return false()
        if isinstance(node, LogicalExpr):
            terms = [self.visit(term) for term in node.terms]
            return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)
        if isinstance(node, Not):
            return not_(self.visit(node.expr))
        if isinstance(node, ValuePath):
            multi, _ = self._multi(node.attr_path, value_path=True)
            inner = _Translator(_Scope(self.scope.schema, multi.attrs))
            return exists(multi.rows().where(inner.visit(node.val_filter)))
        if isinstance(node, Present | Comparison):
            return self._attribute(node)
        raise InvalidFilterException(detail=f"unsupported filter: {node}")

    def _attribute(self, node: Present | Comparison) -> ColumnElement[bool]:
        path = node.attr_path
        key = _key(self.scope, path)
        if path.attr.lower() in self.scope.multi:
            multi, sub = self._multi(path, value_path=False)
            if isinstance(node, Present) and sub is None:
                return exists(multi.rows())
            return exists(multi.rows().where(_test(multi.attrs[sub or multi.default], node)))
        attr = self.scope.attrs.get(key)
        if attr is None:
            detail = (
                f"{path} cannot be filtered here"
                if path.attr.lower() in self.scope.unfilterable or key in self.scope.unfilterable
                else f"unknown attribute {path}"
            )
            raise InvalidFilterException(detail=detail)
        return _test(attr, node)

    def _foreign(self, path: AttrPath) -> bool:
        """Whether the attribute is not one of this resource type's."""
        if path.uri is not None and path.uri.lower() != self.scope.schema.lower():
            return True
        name = path.attr.lower()
        declared = {key.split(".")[0] for key in self.scope.attrs}
        return name not in declared | set(self.scope.multi) | self.scope.unfilterable

    def _multi(self, path: AttrPath, *, value_path: bool) -> tuple[_Multi, str | None]:
        _key(self.scope, path)  # the URN, if any, is the resource's
        multi = self.scope.multi.get(path.attr.lower())
        if multi is None:
            raise InvalidFilterException(detail=f"{path} is not a multi-valued attribute")
        sub = path.sub_attr.lower() if path.sub_attr else None
        if sub is not None and (value_path or sub not in multi.attrs):
            raise InvalidFilterException(detail=f"unknown attribute {path}")
        return multi, sub


def _test(attr: _Attr, node: Present | Comparison) -> ColumnElement[bool]:
    """One comparison or presence test, definite (never NULL)."""
    column = attr.column
    if isinstance(node, Present):
        if attr.kind in ("exact", "lower", "caseless"):
            return and_(column.is_not(None), column != "")
        return column.is_not(None)
    value = _value(attr, node)
    if value is None:  # "eq null": absent (RFC 7644 §3.4.2.2 leaves null to the provider)
        if node.op == CompareOperator.eq:
            return column.is_(None)
        if node.op == CompareOperator.ne:
            return column.is_not(None)
        raise InvalidFilterException(detail=f"{node.op.value} needs a value")
    test = _compare(_folded(attr), node.op, value)
    if node.op == CompareOperator.ne:
        return or_(column.is_(None), test) if attr.nullable else test
    return and_(column.is_not(None), test) if attr.nullable else test


_PLAIN = {
    CompareOperator.eq: operator.eq,
    CompareOperator.ne: operator.ne,
    CompareOperator.gt: operator.gt,
    CompareOperator.ge: operator.ge,
    CompareOperator.lt: operator.lt,
    CompareOperator.le: operator.le,
}


def _compare(column: ColumnElement[Any], op: CompareOperator, value: Any) -> ColumnElement[bool]:
    if op in _PLAIN:
        return cast("ColumnElement[bool]", _PLAIN[op](column, value))
    if op == CompareOperator.co:
        return _position(column, value) > 0
    if op == CompareOperator.sw:
        return cast("ColumnElement[bool]", func.substr(column, 1, len(value)) == value)
    if op == CompareOperator.ew:
        end = func.substr(column, func.length(column) - len(value) + 1)
        return cast("ColumnElement[bool]", end == value)
    raise InvalidFilterException(detail=f"unknown operator {op}")


def _value(attr: _Attr, node: Comparison) -> Any:
    """The comparison's value, of the attribute's type; InvalidFilterException if not."""
    value, op = node.value, node.op
    if value is None:
        return None
    if attr.kind == "bool":
        if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
            raise InvalidFilterException(detail=f"{node.attr_path} is true or false")
        return value
    if not isinstance(value, str):
        raise InvalidFilterException(detail=f"{node.attr_path} compares with a string")
    if attr.kind == "datetime":
        if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
            raise InvalidFilterException(detail=f"{op.value} does not apply to a date")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFilterException(detail=f"{value!r} is not a date-time") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return value.lower() if attr.kind in ("lower", "caseless") else value
