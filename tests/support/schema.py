"""Comparing a migrated database with schema.py (alembic's autogenerate comparison)."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.store.schema import metadata


def schema_differences(conn: Connection) -> list[Any]:
    """What differs between the database and schema.py: types, nullability, keys, indexes.

    Alembic cannot reflect an index on an expression (ix_readers_address, on
    lower(address)) and warns; tests/test_migrations.py checks that one by name.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        return list(compare_metadata(MigrationContext.configure(conn), metadata))
