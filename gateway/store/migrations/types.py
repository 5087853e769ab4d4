"""Column types for the migrations: frozen copies, never the live ones.

A migration describes the database as it was when the migration was written,
so it must not import :mod:`gateway.store.schema`: a later change to a live
type would silently change what an old migration creates (or break it), and
databases migrated before and after that change would differ.

This module is frozen like the migrations themselves (tests/data/
migration-digests.txt holds its digest): never edit what is here. If a later
migration needs a type that differs, add a new class with a new name (for
example ``UTCDateTimeV2``) below, and a new digest line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps as 0001 and 0002 store them: ``timestamp with time zone`` on
    PostgreSQL, integer microseconds since the epoch (``BIGINT``) on SQLite.

    A copy of ``gateway.store.schema.UTCDateTime`` as it was at revision 0002.
    The DDL comes from :meth:`load_dialect_impl`; the value conversions are kept
    as well so that a data migration reads and writes what the application did.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: use a timezone-aware one")
        if dialect.name == "sqlite":
            return (value - _EPOCH) // timedelta(microseconds=1)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _EPOCH + timedelta(microseconds=int(value))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
