"""Where the encrypted parts of envelopes live: the blob store.

The database holds metadata; the ciphertext of each part is one blob. The
:class:`BlobStore` protocol is deliberately small (write a part, open a part,
delete an envelope, list envelopes) so that an S3-compatible backend can stand
beside :class:`FileBlobStore` later without the callers changing.

The contract every backend keeps:

- ``write`` returns only once the blob's content is durable, and never leaves a
  partial blob under its final name: a reader sees the whole part or nothing.
  Its name is durable on return too, unless the caller passes
  ``durable=False`` to write several parts and then makes all their names
  durable at once with ``sync`` (one directory fsync instead of one per part).
- ``delete_envelope`` is idempotent: deleting what is gone is not an error.
- ``envelopes`` reports when each envelope's blobs last changed, so that the
  sweeper can tell a crash leftover from a sealing still in progress.

:class:`FileBlobStore` lays blobs out as ``root/<2 hex>/<envelope_id>/<part>.sg``.
Ids are validated before they become path components, so no id can reach
outside the root.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway.store.errors import BlobMissing

_ENVELOPE_ID = re.compile(r"[0-9a-f]{32}")
_SUFFIX = ".sg"
_DIR_MODE = 0o700


class BlobStore(Protocol):
    """Storage for the sealed parts of envelopes."""

    def write(
        self, envelope_id: str, part_id: int, chunks: Iterable[bytes], *, durable: bool = True
    ) -> int:
        """Stream ``chunks`` into the part's blob; durable on return; the bytes written.

        If ``chunks`` raises, nothing is left behind and the exception propagates.
        """
        ...

    def sync(self, envelope_id: str) -> None:
        """Make the names of the envelope's blobs written with ``durable=False`` durable."""
        ...

    def open(self, envelope_id: str, part_id: int) -> BinaryIO:
        """The part's blob for reading; :class:`BlobMissing` if it is absent."""
        ...

    def delete_envelope(self, envelope_id: str) -> None:
        """Delete every blob of the envelope; nothing happens if there is none."""
        ...

    def envelopes(self) -> Iterator[tuple[str, float]]:
        """``(envelope_id, mtime)`` of every envelope that has blobs (mtime: POSIX seconds)."""
        ...


def check_envelope_id(envelope_id: str) -> str:
    """The id if it is 32 lower-case hex characters; ValueError otherwise."""
    if not isinstance(envelope_id, str) or not _ENVELOPE_ID.fullmatch(envelope_id):
        raise ValueError(f"not an envelope id: {envelope_id!r}")
    return envelope_id


def _check_part_id(part_id: int) -> int:
    if type(part_id) is not int or part_id < 0:
        raise ValueError(f"not a part id: {part_id!r}")
    return part_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """Blobs as files under ``root``, written with temporary name, fsync, rename, fsync."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._prefixes_ready = False

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def write(
        self, envelope_id: str, part_id: int, chunks: Iterable[bytes], *, durable: bool = True
    ) -> int:
        directory = self._directory(envelope_id)
        final = directory / f"{_check_part_id(part_id)}{_SUFFIX}"
        self._make_directory(directory)
        fd, temporary = tempfile.mkstemp(prefix=f".{part_id}.tmp-", dir=directory)
        written = 0
        try:
            with os.fdopen(fd, "wb") as file:
                for chunk in chunks:
                    written += file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(directory)
        return written

    def sync(self, envelope_id: str) -> None:
        _fsync_dir(self._directory(envelope_id))

    def open(self, envelope_id: str, part_id: int) -> BinaryIO:
        path = self._directory(envelope_id) / f"{_check_part_id(part_id)}{_SUFFIX}"
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {envelope_id}/{part_id} is missing") from None

    def delete_envelope(self, envelope_id: str) -> None:
        directory = self._directory(envelope_id)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            # An envelope directory holds only files; a concurrent delete may win the race.
            Path(entry.path).unlink(missing_ok=True)
        try:
            directory.rmdir()
        except FileNotFoundError:
            return
        _fsync_dir(directory.parent)

    def envelopes(self) -> Iterator[tuple[str, float]]:
        for prefix in _subdirectories(self.root):
            for entry in _subdirectories(Path(prefix.path)):
                if _ENVELOPE_ID.fullmatch(entry.name) and entry.name[:2] == prefix.name:
                    try:
                        yield entry.name, entry.stat().st_mtime
                    except FileNotFoundError:
                        continue  # deleted while we looked

    def _directory(self, envelope_id: str) -> Path:
        check_envelope_id(envelope_id)
        return self.root / envelope_id[:2] / envelope_id

    def _make_directory(self, directory: Path) -> None:
        """Create the envelope directory, made durable in its (durable) prefix directory."""
        if directory.is_dir():
            return
        if not self._prefixes_ready:
            self._make_prefixes()
        with contextlib.suppress(FileExistsError):  # another writer was quicker
            directory.mkdir(mode=_DIR_MODE)
        _fsync_dir(directory.parent)

    def _make_prefixes(self) -> None:
        """Create the root and all 256 prefix directories once, durably.

        Made on demand, a prefix directory created by a concurrent writer could
        be seen here before that writer made its entry durable; created all at
        once, before any blob, every prefix is durable before it is used.
        """
        created = not self.root.is_dir()
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        if created:
            _fsync_dir(self.root.parent)
        missing = [self.root / f"{n:02x}" for n in range(256)]
        missing = [path for path in missing if not path.is_dir()]
        for path in missing:
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=_DIR_MODE)
        if missing:
            _fsync_dir(self.root)
        self._prefixes_ready = True


def _subdirectories(path: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield entry
