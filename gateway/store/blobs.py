"""Where the encrypted parts of envelopes live: the blob store.

The database holds metadata; the ciphertext of an envelope's parts is its
blob. The :class:`BlobStore` protocol is deliberately small (write an envelope's
parts, open a part, delete an envelope, list envelopes) so that an
S3-compatible backend can stand beside :class:`FileBlobStore` later without the
callers changing.

The contract every backend keeps:

- An envelope's parts are written through one :class:`BlobWriter`; nothing of
  them can be opened until :meth:`BlobWriter.commit` returns, and then all of
  them are durable, names included. A writer that fails or is aborted leaves
  nothing behind (an envelope written before stays as it was).
- ``delete_envelope`` is idempotent: deleting what is gone is not an error.
- ``envelopes`` reports when each envelope's blobs last changed, so that the
  sweeper can tell a crash leftover from a sealing still in progress.

:class:`FileBlobStore` keeps one file per envelope, ``root/<2 hex>/<envelope
id>.sge``: the sealed parts back to back, then an index of where each one
lies (``_TRAILER``). One file per envelope is one inode, one file fsync and one
directory fsync: with a file per part in a directory of its own, an envelope
cost four inodes and five fsyncs, and making inodes is the dearest thing a
protected message did in the kernel (bench/README.md). Envelopes stored by
earlier releases, one file per part in ``root/<2 hex>/<envelope id>/<part>.sg``,
are read, listed and deleted as before, never written. Ids are validated
before they become path components, so no id can reach outside the root.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from gateway.store.errors import BlobMissing, StoreError

_ENVELOPE_ID = re.compile(r"[0-9a-f]{32}")
_SUFFIX = ".sge"  # an envelope's file
_TEMPORARY = ".tmp"  # ".<envelope id>.tmp" while it is written
_LEGACY_SUFFIX = ".sg"  # a part's file in an envelope directory (earlier releases)
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# The end of an envelope's file: the number of index entries and a magic; before it the
# index, one entry a part (part id, offset, length; big-endian).
_TRAILER = struct.Struct(">I8s")
_ENTRY = struct.Struct(">IQQ")
_MAGIC = b"SGPARTS1"
_FLUSH_AT = 256 * 1024  # bytes gathered before a write: a small envelope is one write


class BlobWriter(Protocol):
    """The parts of one envelope on their way into the store.

    Parts are laid out in the order they are written. A part whose sealed size
    is known beforehand may be :meth:`reserve`-d and then written from another
    thread while the others are written; the others are written one at a time.
    As a context manager, a writer that was not committed is aborted on exit.
    """

    def reserve(self, part_id: int, size: int) -> None:
        """Set room aside for a part of exactly ``size`` bytes, written later."""
        ...

    def write(self, part_id: int, chunks: Iterable[bytes | memoryview]) -> int:
        """Stream ``chunks`` into the part; the bytes written. If ``chunks`` raises,
        the exception propagates and the writer can only be aborted."""
        ...

    def commit(self) -> None:
        """Make every part durable and visible, all at once."""
        ...

    def abort(self) -> None:
        """Leave nothing behind; nothing happens after a commit."""
        ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(self, *exc_info: object) -> None: ...


class BlobStore(Protocol):
    """Storage for the sealed parts of envelopes."""

    def writer(self, envelope_id: str) -> BlobWriter:
        """A writer of the envelope's parts; committing it replaces what the envelope had."""
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
    if type(part_id) is not int or part_id < 0 or part_id > 0xFFFFFFFF:
        raise ValueError(f"not a part id: {part_id!r}")
    return part_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """Blobs as files under ``root``, one an envelope: temporary name, fsync, rename, fsync."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._prefixes_ready = False

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def writer(self, envelope_id: str) -> BlobWriter:
        directory = self._prefix(envelope_id)
        if not self._prefixes_ready:
            self._make_prefixes()
        return _FileWriter(directory, envelope_id)

    def open(self, envelope_id: str, part_id: int) -> BinaryIO:
        _check_part_id(part_id)
        prefix = self._prefix(envelope_id)
        try:
            fd = os.open(prefix / f"{envelope_id}{_SUFFIX}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self._open_legacy(prefix / envelope_id, envelope_id, part_id)
        try:
            offset, length = _locate(fd, envelope_id, part_id)
        except BaseException:
            os.close(fd)
            raise
        return cast(BinaryIO, _PartReader(fd, offset, length))

    def delete_envelope(self, envelope_id: str) -> None:
        prefix = self._prefix(envelope_id)
        removed = False
        for name in (f"{envelope_id}{_SUFFIX}", f".{envelope_id}{_TEMPORARY}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prefix / name)
                removed = True
        removed = _delete_legacy(prefix / envelope_id) or removed
        if removed:
            _fsync_dir(prefix)

    def envelopes(self) -> Iterator[tuple[str, float]]:
        for prefix in _subdirectories(self.root):
            found: dict[str, float] = {}
            for entry in _entries(Path(prefix.path)):
                envelope_id = _envelope_of(entry)
                if envelope_id is None or envelope_id[:2] != prefix.name:
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue  # deleted while we looked
                found[envelope_id] = max(mtime, found.get(envelope_id, mtime))
            yield from found.items()

    def _prefix(self, envelope_id: str) -> Path:
        check_envelope_id(envelope_id)
        return self.root / envelope_id[:2]

    def _open_legacy(self, directory: Path, envelope_id: str, part_id: int) -> BinaryIO:
        try:
            return (directory / f"{part_id}{_LEGACY_SUFFIX}").open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {envelope_id}/{part_id} is missing") from None

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


class _FileWriter:
    """One envelope's file, written under ``.<id>.tmp`` and renamed when committed.

    Appended parts are gathered into writes of up to ``_FLUSH_AT`` bytes (a small
    envelope is one write); a reserved part is written in place with ``pwrite``,
    from any thread.
    """

    def __init__(self, directory: Path, envelope_id: str) -> None:
        self._directory = directory
        self._envelope_id = envelope_id
        self._final = directory / f"{envelope_id}{_SUFFIX}"
        self._temporary = directory / f".{envelope_id}{_TEMPORARY}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd: int | None = os.open(self._temporary, flags, _FILE_MODE)
        self._lock = threading.Lock()  # guards the layout: _end, _appending, _reserved, _index
        self._end = 0  # where the next part begins
        self._appending = False  # a part is being appended: _end is not known yet
        self._reserved: dict[int, tuple[int, int]] = {}  # part id -> (offset, size)
        self._index: dict[int, tuple[int, int]] = {}  # part id -> (offset, length), written
        self._pending = bytearray()  # appended bytes not written yet, which begin at _at
        self._at = 0

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def reserve(self, part_id: int, size: int) -> None:
        with self._lock:
            self._claim(part_id)
            self._reserved[part_id] = (self._end, size)
            self._end += size

    def write(self, part_id: int, chunks: Iterable[bytes | memoryview]) -> int:
        with self._lock:
            room = self._reserved.pop(part_id, None)
            if room is None:
                self._claim(part_id)
                self._appending = True
                offset = self._end
        if room is not None:
            return self._write_reserved(part_id, room, chunks)
        written = self._append(offset, chunks)
        with self._lock:
            self._index[part_id] = (offset, written)
            self._end = offset + written
            self._appending = False
        return written

    def commit(self) -> None:
        fd = self._open_fd()
        if self._reserved or self._appending:
            raise ValueError(f"the parts of envelope {self._envelope_id} are not all written")
        index = b"".join(
            _ENTRY.pack(part_id, offset, length)
            for part_id, (offset, length) in sorted(self._index.items())
        )
        self._append(self._end, [index, _TRAILER.pack(len(self._index), _MAGIC)])
        self._flush()
        os.fsync(fd)
        os.close(fd)
        self._fd = None
        try:
            os.replace(self._temporary, self._final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)
            raise  # what the envelope had before stays
        try:
            _fsync_dir(self._directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._final)  # not durable: the caller commits nothing over it
            raise

    def abort(self) -> None:
        if self._fd is None:
            return  # committed, or aborted already
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temporary)

    def _claim(self, part_id: int) -> None:
        """Check that ``part_id`` may be laid out now (the caller holds the lock)."""
        _check_part_id(part_id)
        self._open_fd()
        if self._appending:
            raise ValueError("another part is being appended: parts of unknown size go one by one")
        if part_id in self._index or part_id in self._reserved:
            raise ValueError(f"part {part_id} is written twice")

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"the writer of envelope {self._envelope_id} is closed")
        return self._fd

    def _append(self, offset: int, chunks: Iterable[bytes | memoryview]) -> int:
        """Bytes from ``offset`` on, gathered with those pending when they follow them."""
        if self._at + len(self._pending) != offset:  # a reserved part lies between
            self._flush()
            self._at = offset
        written = 0
        for chunk in chunks:
            self._pending += chunk
            written += len(chunk)
            if len(self._pending) >= _FLUSH_AT:
                self._flush()
        return written

    def _flush(self) -> None:
        if self._pending:
            _pwrite_all(self._open_fd(), self._pending, self._at)
            self._at += len(self._pending)
            self._pending.clear()

    def _write_reserved(
        self, part_id: int, room: tuple[int, int], chunks: Iterable[bytes | memoryview]
    ) -> int:
        offset, size = room
        written = 0
        for chunk in chunks:
            if written + len(chunk) > size:
                raise ValueError(f"part {part_id} is larger than the {size} bytes reserved")
            _pwrite_all(self._open_fd(), chunk, offset + written)
            written += len(chunk)
        if written != size:
            raise ValueError(f"part {part_id} has {written} of the {size} bytes reserved")
        with self._lock:
            self._index[part_id] = (offset, size)
        return written


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _locate(fd: int, envelope_id: str, part_id: int) -> tuple[int, int]:
    """Where the part lies in an envelope's file, from its index."""
    size = os.fstat(fd).st_size
    damaged = StoreError(f"the blob file of envelope {envelope_id} is damaged")
    if size < _TRAILER.size:
        raise damaged
    count, magic = _TRAILER.unpack(os.pread(fd, _TRAILER.size, size - _TRAILER.size))
    index_at = size - _TRAILER.size - count * _ENTRY.size
    if magic != _MAGIC or index_at < 0:
        raise damaged
    for number, offset, length in _ENTRY.iter_unpack(os.pread(fd, count * _ENTRY.size, index_at)):
        if number == part_id:
            if offset + length > index_at:
                raise damaged
            return offset, length
    raise BlobMissing(f"blob {envelope_id}/{part_id} is missing")


class _PartReader(io.RawIOBase):
    """One part of an envelope's file, read like a file of its own; closes the file."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self._fd = fd
        self._position = offset
        self._end = offset + length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        data = os.pread(self._fd, wanted, self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _delete_legacy(directory: Path) -> bool:
    """Delete an envelope directory of an earlier release; whether there was one."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return False
    for entry in entries:
        # An envelope directory holds only files; a concurrent delete may win the race.
        Path(entry.path).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        directory.rmdir()
    return True


def _envelope_of(entry: os.DirEntry[str]) -> str | None:
    """The envelope an entry of a prefix directory belongs to: its file, the file being
    written, or an envelope directory of an earlier release."""
    name = entry.name
    if entry.is_dir(follow_symlinks=False):
        return name if _ENVELOPE_ID.fullmatch(name) else None
    if name.endswith(_SUFFIX):
        candidate = name[: -len(_SUFFIX)]
    elif name.startswith(".") and name.endswith(_TEMPORARY):
        candidate = name[1 : -len(_TEMPORARY)]
    else:
        return None
    return candidate if _ENVELOPE_ID.fullmatch(candidate) else None


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _subdirectories(path: Path) -> Iterator[os.DirEntry[str]]:
    for entry in _entries(path):
        if entry.is_dir(follow_symlinks=False):
            yield entry
