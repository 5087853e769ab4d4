"""Storage of sealed envelopes: metadata in a database, ciphertext in a blob store.

The database (SQLite embedded, PostgreSQL for several nodes) holds envelopes,
their parts and readers with wrapped keys, the append-only audit trail and
accounts, and never message content. The blob store holds the encrypted parts.
Callers use :class:`Store` with a :class:`BlobStore`; everything else here is
the records they exchange and the errors they may see.
"""

from gateway import config
from gateway.store.blobs import BlobStore, FileBlobStore
from gateway.store.database import Store
from gateway.store.errors import AccountExists, BlobMissing, StoreError, TemporaryStoreError
from gateway.store.records import (
    ENDED_STATES,
    EVENT_KINDS,
    LIVE_STATES,
    AccountRecord,
    EnvelopeRecord,
    EventRecord,
    PartRecord,
    ReaderRecord,
)

__all__ = [
    "ENDED_STATES",
    "EVENT_KINDS",
    "LIVE_STATES",
    "AccountExists",
    "AccountRecord",
    "BlobMissing",
    "BlobStore",
    "EnvelopeRecord",
    "EventRecord",
    "FileBlobStore",
    "PartRecord",
    "ReaderRecord",
    "Store",
    "StoreError",
    "TemporaryStoreError",
    "open_store",
]


def open_store(settings: config.Store) -> Store:
    """The store ``settings`` names, migrated to the current schema."""
    store = Store(
        settings.database_url,
        FileBlobStore(settings.blob_root),
        busy_timeout=settings.busy_timeout,
    )
    try:
        store.migrate()
    except StoreError as error:
        store.close()
        raise config.ConfigError("config", [f"store.database: {error}"]) from None
    return store
