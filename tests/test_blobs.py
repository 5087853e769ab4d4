"""The file blob store: an envelope's parts in one file, written durably and all at once,
never partly; ids that cannot escape the root, private modes, idempotent deletes; and the
envelopes of earlier releases (a file per part) still read, listed and deleted."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from gateway.store import BlobMissing, BlobStore, FileBlobStore, StoreError

ENVELOPE = "ab" * 16


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def prefix(blobs: FileBlobStore, envelope_id: str = ENVELOPE) -> Path:
    return blobs.root / envelope_id[:2]


def envelope_file(blobs: FileBlobStore, envelope_id: str = ENVELOPE) -> Path:
    return prefix(blobs, envelope_id) / f"{envelope_id}.sge"


def write(store: BlobStore, envelope_id: str, parts: dict[int, Iterable[bytes]]) -> None:
    with store.writer(envelope_id) as writer:
        for part_id, chunks in parts.items():
            writer.write(part_id, chunks)
        writer.commit()


def read(store: BlobStore, envelope_id: str, part_id: int) -> bytes:
    with store.open(envelope_id, part_id) as blob:
        return blob.read()


def entries(blobs: FileBlobStore, envelope_id: str = ENVELOPE) -> list[str]:
    return sorted(p.name for p in prefix(blobs, envelope_id).iterdir())


def test_write_and_open_round_trip(blobs: FileBlobStore) -> None:
    store: BlobStore = blobs
    chunks = [b"sealed ", b"", b"bytes" * 100_000]
    with store.writer(ENVELOPE) as writer:
        assert writer.write(1, iter(chunks)) == sum(map(len, chunks))
        assert writer.write(0, [b"manifest"]) == 8
        writer.commit()

    assert read(store, ENVELOPE, 1) == b"".join(chunks)
    assert read(store, ENVELOPE, 0) == b"manifest"
    assert entries(blobs) == [f"{ENVELOPE}.sge"]  # one file for the whole envelope


def test_a_part_reads_in_pieces_and_stops_at_its_end(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {1: [b"a" * 1000], 2: [b"b" * 10], 3: [b"c" * 1000]})
    with blobs.open(ENVELOPE, 2) as blob:
        assert [blob.read(4), blob.read(4), blob.read(4), blob.read(4)] == [
            b"bbbb", b"bbbb", b"bb", b""]  # fmt: skip


def test_an_empty_part_is_a_blob_too(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {0: [], 1: [b"x"]})
    assert read(blobs, ENVELOPE, 0) == b""


def test_a_part_never_written_is_missing(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {0: [b"manifest"]})
    with pytest.raises(BlobMissing, match=f"{ENVELOPE}/3"):
        blobs.open(ENVELOPE, 3)


def test_rewriting_an_envelope_replaces_it(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {2: [b"first"], 3: [b"gone after the rewrite"]})
    write(blobs, ENVELOPE, {2: [b"second"]})
    assert read(blobs, ENVELOPE, 2) == b"second"
    with pytest.raises(BlobMissing):
        blobs.open(ENVELOPE, 3)


def test_nothing_can_be_opened_before_the_commit(blobs: FileBlobStore) -> None:
    with blobs.writer(ENVELOPE) as writer:
        writer.write(1, [b"sealed"])
        with pytest.raises(BlobMissing):
            blobs.open(ENVELOPE, 1)
        writer.commit()
    assert read(blobs, ENVELOPE, 1) == b"sealed"


def failing_chunks() -> Iterator[bytes]:
    yield b"half a part"
    raise RuntimeError("the sealing failed")


def test_a_failing_write_leaves_nothing_behind(blobs: FileBlobStore) -> None:
    with pytest.raises(RuntimeError, match="the sealing failed"):
        write(blobs, ENVELOPE, {1: [b"a whole part"], 3: failing_chunks()})

    assert entries(blobs) == []
    with pytest.raises(BlobMissing):
        blobs.open(ENVELOPE, 1)


def test_a_writer_never_committed_leaves_nothing_behind(blobs: FileBlobStore) -> None:
    with blobs.writer(ENVELOPE) as writer:
        writer.write(1, [b"sealed"])
    assert entries(blobs) == []


def test_a_failing_rewrite_keeps_the_previous_envelope(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {3: [b"complete"]})
    with pytest.raises(RuntimeError):
        write(blobs, ENVELOPE, {3: failing_chunks()})

    assert entries(blobs) == [f"{ENVELOPE}.sge"]
    assert read(blobs, ENVELOPE, 3) == b"complete"


def test_a_failed_rename_keeps_the_previous_envelope(
    blobs: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(blobs, ENVELOPE, {3: [b"complete"]})

    def refuse(source: object, target: object) -> None:
        raise OSError("the rename failed")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="the rename failed"):
        write(blobs, ENVELOPE, {3: [b"newer"]})
    monkeypatch.undo()

    assert entries(blobs) == [f"{ENVELOPE}.sge"]
    assert read(blobs, ENVELOPE, 3) == b"complete"


def test_a_reserved_part_is_written_in_place_from_another_thread(blobs: FileBlobStore) -> None:
    """The sealer reserves the room of a large original and seals it in a second thread
    while the attachments are appended after it."""
    original = [bytes([n]) * 70_000 for n in range(40)]
    size = sum(map(len, original))
    attachments = {n: [bytes([n]) * 300_000, b"end"] for n in range(2, 6)}
    with blobs.writer(ENVELOPE) as writer:
        writer.reserve(1, size)
        sealing = threading.Thread(target=writer.write, args=(1, iter(original)))
        sealing.start()
        for part_id, chunks in attachments.items():
            writer.write(part_id, chunks)
        sealing.join()
        writer.write(0, [b"manifest"])
        writer.commit()

    assert read(blobs, ENVELOPE, 1) == b"".join(original)
    for part_id, chunks in attachments.items():
        assert read(blobs, ENVELOPE, part_id) == b"".join(chunks)
    assert read(blobs, ENVELOPE, 0) == b"manifest"


def test_a_reserved_part_must_fill_its_room_exactly(blobs: FileBlobStore) -> None:
    with blobs.writer(ENVELOPE) as writer:
        writer.reserve(1, 10)
        with pytest.raises(ValueError, match="larger than the 10 bytes"):
            writer.write(1, [b"eleven byte"])
    with blobs.writer(ENVELOPE) as writer:
        writer.reserve(1, 10)
        with pytest.raises(ValueError, match="9 of the 10 bytes"):
            writer.write(1, [b"nine byte"])
    with blobs.writer(ENVELOPE) as writer:
        writer.reserve(1, 10)
        with pytest.raises(ValueError, match="not all written"):
            writer.commit()
    assert entries(blobs) == []


def test_a_part_is_written_once(blobs: FileBlobStore) -> None:
    with blobs.writer(ENVELOPE) as writer:
        writer.write(1, [b"x"])
        with pytest.raises(ValueError, match="part 1 is written twice"):
            writer.write(1, [b"y"])
        with pytest.raises(ValueError, match="part 1 is written twice"):
            writer.reserve(1, 1)


def test_a_committed_writer_writes_no_more(blobs: FileBlobStore) -> None:
    with blobs.writer(ENVELOPE) as writer:
        writer.write(1, [b"x"])
        writer.commit()
        with pytest.raises(ValueError, match="closed"):
            writer.write(2, [b"y"])
    assert read(blobs, ENVELOPE, 1) == b"x"


def test_a_damaged_index_is_an_error_not_a_wrong_part(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {1: [b"x" * 100]})
    data = envelope_file(blobs).read_bytes()
    for damaged in (data[:-1], data[:5], data[:-12] + (99).to_bytes(4, "big") + data[-8:]):
        envelope_file(blobs).write_bytes(damaged)
        with pytest.raises(StoreError, match="damaged"):
            blobs.open(ENVELOPE, 1)
    # An entry that points past the parts (its length grown by one).
    envelope_file(blobs).write_bytes(data[:-13] + bytes([data[-13] + 1]) + data[-12:])
    with pytest.raises(StoreError, match="damaged"):
        blobs.open(ENVELOPE, 1)


def test_modes_are_private(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {1: [b"x"]})

    for directory in (blobs.root, prefix(blobs)):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(envelope_file(blobs).stat().st_mode) == 0o600


BAD_ENVELOPE_IDS = [
    "",
    "..",
    "../../../../etc/passwd",
    "/etc/passwd",
    "ab/../../" + "0" * 23,
    "A" * 32,
    "g" * 32,
    "0" * 31,
    "0" * 33,
    "0" * 32 + "\n",
]


@pytest.mark.parametrize("envelope_id", BAD_ENVELOPE_IDS)
def test_envelope_ids_cannot_escape_the_root(
    blobs: FileBlobStore, tmp_path: Path, envelope_id: str
) -> None:
    with pytest.raises(ValueError, match="not an envelope id"):
        blobs.writer(envelope_id)
    with pytest.raises(ValueError, match="not an envelope id"):
        blobs.open(envelope_id, 1)
    with pytest.raises(ValueError, match="not an envelope id"):
        blobs.delete_envelope(envelope_id)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("part_id", [-1, True, "1", "../1", 1.0, None, 2**32])
def test_part_ids_are_non_negative_integers(blobs: FileBlobStore, part_id: object) -> None:
    with pytest.raises(ValueError, match="not a part id"):
        blobs.open(ENVELOPE, part_id)  # type: ignore[arg-type]
    assert not blobs.root.exists()
    with blobs.writer(ENVELOPE) as writer:
        with pytest.raises(ValueError, match="not a part id"):
            writer.write(part_id, [b"x"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not a part id"):
            writer.reserve(part_id, 1)  # type: ignore[arg-type]
    assert entries(blobs) == []


def test_delete_envelope_is_idempotent(blobs: FileBlobStore) -> None:
    write(blobs, ENVELOPE, {0: [b"manifest"], 1: [b"original"]})

    blobs.delete_envelope(ENVELOPE)
    blobs.delete_envelope(ENVELOPE)
    blobs.delete_envelope("f" * 32)  # never written

    assert entries(blobs) == []
    with pytest.raises(BlobMissing) as missing:
        blobs.open(ENVELOPE, 0)
    assert isinstance(missing.value, StoreError)
    assert f"{ENVELOPE}/0" in str(missing.value)


def test_a_crashed_write_is_listed_and_deleted(blobs: FileBlobStore) -> None:
    """A process killed while writing leaves the temporary file: the sweeper must see it."""
    writer = blobs.writer(ENVELOPE)
    writer.write(1, [b"half an envelope"])
    # no commit, no abort: the process died here
    leftover = prefix(blobs) / f".{ENVELOPE}.tmp"
    assert entries(blobs) == [leftover.name]
    os.utime(leftover, (1_000_000, 1_000_000))

    assert dict(blobs.envelopes()) == {ENVELOPE: 1_000_000}
    blobs.delete_envelope(ENVELOPE)
    assert entries(blobs) == []
    writer.abort()  # its file descriptor, which the dead process would have lost


def test_envelopes_lists_what_is_present(blobs: FileBlobStore) -> None:
    assert list(blobs.envelopes()) == []  # no root yet
    others = ["0" * 32, "ff" + "1" * 30]
    for envelope_id in [ENVELOPE, *others]:
        write(blobs, envelope_id, {0: [b"x"]})
    os.utime(envelope_file(blobs, others[0]), (1_000_000, 1_000_000))
    # Things that are not envelopes are ignored, not swept by mistake.
    (blobs.root / "zz").mkdir()
    (blobs.root / "ab" / "not-an-envelope").mkdir()
    (blobs.root / "ab" / "not-an-envelope.sge").write_bytes(b"")
    (blobs.root / "ab" / ".not-an-envelope.tmp").write_bytes(b"")
    (blobs.root / "00" / ("1" * 32)).mkdir()  # an id under the wrong prefix
    (blobs.root / "00" / f"{'1' * 32}.sge").write_bytes(b"")
    (blobs.root / "stray-file").write_bytes(b"")

    found = dict(blobs.envelopes())

    assert sorted(found) == sorted([ENVELOPE, *others])
    assert found[others[0]] == 1_000_000
    assert all(isinstance(mtime, float) for mtime in found.values())


# --- envelopes of earlier releases: a directory of their own, a file per part ---------------


def legacy_envelope(blobs: FileBlobStore, envelope_id: str, parts: dict[int, bytes]) -> Path:
    """An envelope as releases before the one-file layout wrote it."""
    directory = prefix(blobs, envelope_id) / envelope_id
    directory.mkdir(mode=0o700, parents=True)
    for part_id, data in parts.items():
        (directory / f"{part_id}.sg").write_bytes(data)
    return directory


def test_an_envelope_of_an_earlier_release_is_read(blobs: FileBlobStore) -> None:
    legacy_envelope(blobs, ENVELOPE, {0: b"manifest", 1: b"original"})

    assert read(blobs, ENVELOPE, 0) == b"manifest"
    assert read(blobs, ENVELOPE, 1) == b"original"
    with pytest.raises(BlobMissing, match=f"{ENVELOPE}/2"):
        blobs.open(ENVELOPE, 2)


def test_an_envelope_of_an_earlier_release_is_listed_and_deleted(blobs: FileBlobStore) -> None:
    directory = legacy_envelope(blobs, ENVELOPE, {0: b"manifest", 1: b"original"})
    os.utime(directory, (1_000_000, 1_000_000))
    write(blobs, "0" * 32, {0: [b"x"]})

    found = dict(blobs.envelopes())
    assert found[ENVELOPE] == 1_000_000 and "0" * 32 in found

    blobs.delete_envelope(ENVELOPE)
    blobs.delete_envelope(ENVELOPE)
    assert not directory.exists()
    assert ENVELOPE not in dict(blobs.envelopes())
    with pytest.raises(BlobMissing):
        blobs.open(ENVELOPE, 0)
