"""Storage of sealed envelopes: metadata in a database, ciphertext in a blob store.

The database (SQLite embedded, PostgreSQL for several nodes) holds envelopes,
their parts and readers with wrapped keys, the append-only audit trail and
accounts, and never message content. The blob store holds the encrypted parts.
Callers use :class:`Store` with a :class:`BlobStore`; everything else here is
the records they exchange and the errors they may see.
"""

from gateway.store.blobs import BlobStore, FileBlobStore
from gateway.store.database import Store
from gateway.store.errors import BlobMissing, StoreError, TemporaryStoreError
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
]
