"""Alembic migrations of the store's schema, run by :meth:`gateway.store.Store.migrate`."""
