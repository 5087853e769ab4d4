"""Errors of the store, split by what the caller should answer.

A :class:`TemporaryStoreError` means "try again later" (database locked,
unreachable, a timeout): the pipeline answers SMTP 451 and the sending MTA
keeps the mail. Any other :class:`StoreError` is a fault that retrying will not
cure by itself (a conflict, a missing blob). Messages name what failed and
never carry secrets: no DSN password, no key material, no SQL parameters.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked; the message says what and why."""


class TemporaryStoreError(StoreError):
    """A transient failure: the database was locked, unreachable or too slow."""


class BlobMissing(StoreError):
    """A blob that should exist is absent (deleted, shredded, or never written)."""


class AccountExists(StoreError):
    """An account for this address exists already."""
