"""Alembic environment for Sealgate: no alembic.ini, no engine of its own.

:meth:`gateway.store.Store.migrate` builds the alembic Config in code and hands
over a connection that already holds the migration lock inside an open
transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so
two processes starting at once migrate one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from gateway.store.schema import metadata

if context.is_offline_mode():
    raise RuntimeError("Sealgate migrations run online only, through Store.migrate()")

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("Sealgate migrations run through Store.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
