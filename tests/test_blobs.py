"""The file blob store: durable writes that never leave partial parts, ids that cannot
escape the root, private modes, idempotent deletes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import BlobMissing, BlobStore, FileBlobStore, StoreError

ENVELOPE = "ab" * 16


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def envelope_dir(blobs: FileBlobStore, envelope_id: str = ENVELOPE) -> Path:
    return blobs.root / envelope_id[:2] / envelope_id


def test_write_and_open_round_trip(blobs: FileBlobStore) -> None:
    store: BlobStore = blobs
    chunks = [b"sealed ", b"", b"bytes" * 10_000]

    assert store.write(ENVELOPE, 1, iter(chunks)) == sum(map(len, chunks))

    with store.open(ENVELOPE, 1) as blob:
        assert blob.read() == b"".join(chunks)
    assert sorted(p.name for p in envelope_dir(blobs).iterdir()) == ["1.sg"]


def test_an_empty_part_is_a_blob_too(blobs: FileBlobStore) -> None:
    assert blobs.write(ENVELOPE, 0, []) == 0
    with blobs.open(ENVELOPE, 0) as blob:
        assert blob.read() == b""


def test_rewriting_a_part_replaces_it(blobs: FileBlobStore) -> None:
    blobs.write(ENVELOPE, 2, [b"first"])
    blobs.write(ENVELOPE, 2, [b"second"])
    with blobs.open(ENVELOPE, 2) as blob:
        assert blob.read() == b"second"


def failing_chunks() -> Iterator[bytes]:
    yield b"half a part"
    raise RuntimeError("the sealing failed")


def test_a_failing_write_leaves_nothing_behind(blobs: FileBlobStore) -> None:
    with pytest.raises(RuntimeError, match="the sealing failed"):
        blobs.write(ENVELOPE, 3, failing_chunks())

    assert list(envelope_dir(blobs).iterdir()) == []
    with pytest.raises(BlobMissing):
        blobs.open(ENVELOPE, 3)


def test_a_failing_rewrite_keeps_the_previous_blob(blobs: FileBlobStore) -> None:
    blobs.write(ENVELOPE, 3, [b"complete"])
    with pytest.raises(RuntimeError):
        blobs.write(ENVELOPE, 3, failing_chunks())

    assert [p.name for p in envelope_dir(blobs).iterdir()] == ["3.sg"]
    with blobs.open(ENVELOPE, 3) as blob:
        assert blob.read() == b"complete"


def test_modes_are_private(blobs: FileBlobStore) -> None:
    blobs.write(ENVELOPE, 1, [b"x"])

    for directory in (blobs.root, blobs.root / ENVELOPE[:2], envelope_dir(blobs)):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((envelope_dir(blobs) / "1.sg").stat().st_mode) == 0o600


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
        blobs.write(envelope_id, 1, [b"x"])
    with pytest.raises(ValueError, match="not an envelope id"):
        blobs.open(envelope_id, 1)
    with pytest.raises(ValueError, match="not an envelope id"):
        blobs.delete_envelope(envelope_id)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("part_id", [-1, True, "1", "../1", 1.0, None])
def test_part_ids_are_non_negative_integers(blobs: FileBlobStore, part_id: object) -> None:
    with pytest.raises(ValueError, match="not a part id"):
        blobs.write(ENVELOPE, part_id, [b"x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a part id"):
        blobs.open(ENVELOPE, part_id)  # type: ignore[arg-type]
    assert not blobs.root.exists()


def test_delete_envelope_is_idempotent(blobs: FileBlobStore) -> None:
    blobs.write(ENVELOPE, 0, [b"manifest"])
    blobs.write(ENVELOPE, 1, [b"original"])

    blobs.delete_envelope(ENVELOPE)
    blobs.delete_envelope(ENVELOPE)
    blobs.delete_envelope("f" * 32)  # never written

    assert not envelope_dir(blobs).exists()
    with pytest.raises(BlobMissing) as missing:
        blobs.open(ENVELOPE, 0)
    assert isinstance(missing.value, StoreError)
    assert f"{ENVELOPE}/0" in str(missing.value)


def test_envelopes_lists_what_is_present(blobs: FileBlobStore) -> None:
    assert list(blobs.envelopes()) == []  # no root yet
    others = ["0" * 32, "ff" + "1" * 30]
    for envelope_id in [ENVELOPE, *others]:
        blobs.write(envelope_id, 0, [b"x"])
    os.utime(envelope_dir(blobs, others[0]), (1_000_000, 1_000_000))
    # Things that are not envelopes are ignored, not swept by mistake.
    (blobs.root / "zz").mkdir()
    (blobs.root / "ab" / "not-an-envelope").mkdir()
    (blobs.root / "00" / ("1" * 32)).mkdir()  # an id under the wrong prefix
    (blobs.root / "stray-file").write_bytes(b"")

    found = dict(blobs.envelopes())

    assert sorted(found) == sorted([ENVELOPE, *others])
    assert found[others[0]] == 1_000_000
    assert all(isinstance(mtime, float) for mtime in found.values())


def test_parts_written_without_durable_names_are_complete_after_sync(
    blobs: FileBlobStore,
) -> None:
    """The sealer writes every part with durable=False, then one sync for the directory."""
    envelope_id = "ab" * 16
    for part in range(3):
        blobs.write(envelope_id, part, [bytes([part]) * 10], durable=False)
    blobs.sync(envelope_id)
    for part in range(3):
        with blobs.open(envelope_id, part) as blob:
            assert blob.read() == bytes([part]) * 10
