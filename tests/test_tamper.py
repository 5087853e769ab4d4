"""Tampering with a sealed envelope: every change fails clearly, none yields partial plaintext.

Two layers, and this file pins both:

- ``opener.read_part`` streams (docs/envelope-format.md §5.6): it yields a chunk's plaintext
  only after that chunk authenticated, and raises :class:`SealedFormatError` at the first chunk
  that does not (or at the header, before any chunk). So a tampered part releases exactly the
  chunks before the tampered one, and those are the genuine plaintext. A caller that streams
  must discard them when a later chunk fails: the part is whole only when the generator ends.
- ``opener.export`` is the all-or-nothing layer: it writes into a scratch directory beside the
  target and renames it into place only when every part opened and matched the manifest.
  After any failure the target does not exist and no ``.sealgate-open-*`` directory is left.

A part's blob is replaced in the envelope's stored blob, its other parts unchanged
(``tests.support.sealing.replace_blob``); the key material in the database is edited with
plain SQL, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gateway.envelope import keys, opener, stream
from gateway.envelope.account import create_account
from gateway.envelope.seal import SealedEnvelope
from gateway.store import AccountRecord, BlobMissing, FileBlobStore, ReaderRecord, Store
from tests.support.sealing import blob_bytes, mail, read, replace_blob, scratch_left, seal

H = stream.HEADER_SIZE  # 34
SEALED = stream.CHUNK_SIZE + stream.TAG_SIZE  # a full sealed chunk, 65,552 bytes
TAG = stream.TAG_SIZE
ATTACHMENT = bytes(range(256)) * 1200  # 300 KiB: four full chunks and one of 45,056 bytes
ATTACHMENT_PART = 2
ATTACHMENT_CHUNKS = 5
ATTACHMENT_BLOB = H + len(ATTACHMENT) + ATTACHMENT_CHUNKS * TAG  # 307,314 bytes
MESSAGE = mail(text="The figures.\n", attachments=[("figures.bin", ATTACHMENT)])
PASSWORD = "correct horse battery staple"

HEADER_REFUSED = "shorter than its header"
ELSEWHERE = "belongs to another envelope or part"


def failed(chunk: int) -> str:
    return rf"chunk {chunk} failed authentication \(tampered, truncated or reordered\)"


def truncated(chunk: int) -> str:
    return rf"sealed part is truncated at chunk {chunk}"


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The store of the blob tampering tests, which do not depend on the database."""
    root = tmp_path_factory.mktemp("tamper")
    shared = Store(f"sqlite:///{root / 'sealgate.db'}", FileBlobStore(root / "blobs"))
    shared.migrate()
    yield shared
    shared.close()


@dataclass
class Envelope:
    """A sealed, committed envelope and what it looked like before anyone touched it."""

    store: Store
    sealed: SealedEnvelope
    chunks: dict[int, list[bytes]]  # each part's plaintext chunks, as read_part yields them
    blobs: dict[int, bytes]  # each part's sealed bytes, as written

    @property
    def envelope_id(self) -> str:
        return self.sealed.envelope_id

    def unlock(self) -> opener.Unlocked:
        return opener.unlock_with_link(self.store, self.sealed.grants[0].link)

    def pieces(self, part: int) -> list[bytes]:
        """The sealed chunks of a part, cut as a v1 reader cuts them (§5.6 step 4)."""
        body = self.blobs[part][H:]
        return [body[start : start + SEALED] for start in range(0, len(body), SEALED)]

    def write(self, part: int, data: bytes) -> None:
        replace_blob(self.store, self.envelope_id, part, data)


def make_envelope(store: Store, raw: bytes = MESSAGE) -> Envelope:
    sealed = seal(store, raw, ("bob@example.net", "carol@example.com"))
    unlocked = opener.unlock_with_link(store, sealed.grants[0].link)
    ids = [part.part_id for part in sealed.record.parts]
    chunks = {part: list(opener.read_part(store, unlocked, part)) for part in ids}
    blobs = {part: blob_bytes(store, sealed.envelope_id, part) for part in ids}
    return Envelope(store, sealed, chunks, blobs)


@pytest.fixture
def envelope(sqlite_store: Store) -> Envelope:
    made = make_envelope(sqlite_store)
    assert part_ids(made) == [0, 1, ATTACHMENT_PART]
    assert [len(c) for c in made.chunks[ATTACHMENT_PART]] == [65536] * 4 + [45056]
    assert len(made.blobs[ATTACHMENT_PART]) == ATTACHMENT_BLOB
    assert len(made.chunks[1]) > 2  # the original message spans several chunks too
    return made


@pytest.fixture
def other(sqlite_store: Store) -> Envelope:
    """A second envelope of the same message: same layout, another K and envelope id."""
    return make_envelope(sqlite_store)


def part_ids(envelope: Envelope) -> list[int]:
    return [part.part_id for part in envelope.sealed.record.parts]


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def assert_refused(envelope: Envelope, part: int, *, chunk: int, match: str, tmp: Path) -> None:
    """The envelope fails as a whole, and the tampered part fails at ``chunk``.

    export: raises, no target directory, no scratch directory left beside it.
    read_part: raises the same error; what it yielded before is exactly the genuine plaintext
    of the chunks before ``chunk`` (0 for a failure at the header: nothing at all).
    """
    unlocked = envelope.unlock()  # tampering with blobs leaves the keys alone
    target = tmp / "export"
    with pytest.raises((stream.SealedFormatError, opener.OpenError), match=match):
        opener.export(envelope.store, unlocked, target)
    assert not target.exists()
    assert scratch_left(tmp) == []

    released: list[bytes] = []
    with pytest.raises(stream.SealedFormatError, match=match):
        for piece in opener.read_part(envelope.store, unlocked, part):
            released.append(piece)
    assert released == envelope.chunks[part][:chunk]


def test_the_untouched_envelope_opens(envelope: Envelope, tmp_path: Path):
    """The control: everything below fails only because of what it changed."""
    written = opener.export(envelope.store, envelope.unlock(), tmp_path / "export")
    assert (tmp_path / "export" / "attachments" / "figures.bin").read_bytes() == ATTACHMENT
    assert (tmp_path / "export" / "message.eml").read_bytes() == MESSAGE
    assert len(written) == 4  # manifest.json, body.txt, message.eml, the attachment


# --- flipped bits ------------------------------------------------------------------------

LAST = H + 4 * SEALED  # where the attachment's last (short) chunk begins
FLIPS = {
    # the header: refused before any chunk (§5.7)
    "magic": (ATTACHMENT_PART, 0, 0, "bad magic"),
    "version": (ATTACHMENT_PART, 8, 0, "unsupported sealed format"),
    "suite": (ATTACHMENT_PART, 9, 0, "unsupported sealed format"),
    "chunk size": (ATTACHMENT_PART, 12, 0, failed(0)),  # 65,792: plausible, but it is the AAD
    "envelope id": (ATTACHMENT_PART, 20, 0, ELSEWHERE),
    "part id": (ATTACHMENT_PART, 33, 0, ELSEWHERE),
    "manifest header": (0, 29, 0, ELSEWHERE),
    "original header": (1, 3, 0, "bad magic"),
    # a chunk's ciphertext: that chunk fails, the ones before it opened
    "first ciphertext byte": (ATTACHMENT_PART, H, 0, failed(0)),
    "middle chunk ciphertext": (ATTACHMENT_PART, H + 2 * SEALED + 1000, 2, failed(2)),
    "last chunk ciphertext": (ATTACHMENT_PART, LAST, 4, failed(4)),
    "manifest ciphertext": (0, H + 10, 0, failed(0)),
    "original ciphertext": (1, H + 2 * SEALED + 7, 2, failed(2)),
    # a chunk's tag
    "first byte of chunk 0's tag": (ATTACHMENT_PART, H + stream.CHUNK_SIZE, 0, failed(0)),
    "last byte of chunk 1's tag": (ATTACHMENT_PART, H + 2 * SEALED - 1, 1, failed(1)),
    "last chunk's tag": (ATTACHMENT_PART, ATTACHMENT_BLOB - 1, 4, failed(4)),
    "manifest tag": (0, -1, 0, failed(0)),
}


@pytest.mark.parametrize(("part", "offset", "chunk", "match"), FLIPS.values(), ids=FLIPS.keys())
def test_a_flipped_bit_fails(
    envelope: Envelope, tmp_path: Path, part: int, offset: int, chunk: int, match: str
):
    envelope.write(part, flip(envelope.blobs[part], offset))
    assert_refused(envelope, part, chunk=chunk, match=match, tmp=tmp_path)


def expected_for_byte(index: int) -> tuple[int, str]:
    """Where a part fails when byte ``index`` of its blob changed (§5.3, §5.7)."""
    if index < 8:
        return 0, "bad magic"
    if index < 10:
        return 0, "unsupported sealed format"
    if index < 14:  # 0 is implausible; any other value is a changed AAD
        return 0, f"implausible chunk size|{failed(0)}"
    if index < H:
        return 0, ELSEWHERE
    chunk = (index - H) // SEALED
    return chunk, failed(chunk)


@pytest.fixture(scope="module")
def shared_envelope(sqlite_store: Store) -> Envelope:
    """One envelope for all examples of the property test; each example restores its blob."""
    return make_envelope(sqlite_store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bit=st.integers(0, ATTACHMENT_BLOB * 8 - 1))
@example(bit=0)
@example(bit=13 * 8 + 7)
@example(bit=ATTACHMENT_BLOB * 8 - 1)
def test_any_single_flipped_bit_anywhere_in_a_part_fails(shared_envelope: Envelope, bit: int):
    index, shift = divmod(bit, 8)
    genuine = shared_envelope.blobs[ATTACHMENT_PART]
    chunk, match = expected_for_byte(index)
    try:
        shared_envelope.write(ATTACHMENT_PART, flip(genuine, index, 1 << shift))
        with tempfile.TemporaryDirectory() as tmp:
            assert_refused(
                shared_envelope, ATTACHMENT_PART, chunk=chunk, match=match, tmp=Path(tmp)
            )
    finally:
        shared_envelope.write(ATTACHMENT_PART, genuine)


# --- truncation, and chunks dropped, repeated, reordered or added --------------------------


def expected_for_length(length: int) -> tuple[int, str]:
    """Where the attachment part fails when cut to ``length`` bytes (§5.6 step 4, §5.7)."""
    if length < H:
        return 0, HEADER_REFUSED
    chunk, rest = divmod(length - H, SEALED)
    if rest == 0:  # at a chunk boundary: the chunk now at the end was not sealed as the last
        return (0, truncated(0)) if chunk == 0 else (chunk - 1, failed(chunk - 1))
    return chunk, truncated(chunk) if rest < TAG else failed(chunk)


CUTS = sorted(
    {0, 1, H - 1}
    | {H + k * SEALED for k in range(ATTACHMENT_CHUNKS)}  # every chunk boundary
    | {H + k * SEALED + d for k in range(ATTACHMENT_CHUNKS) for d in (1, TAG - 1, TAG, 30000)}
    | {H + k * SEALED - 1 for k in range(1, ATTACHMENT_CHUNKS)}
    | {ATTACHMENT_BLOB - TAG, ATTACHMENT_BLOB - 1}
)


@pytest.mark.parametrize("length", CUTS)
def test_truncation_fails(envelope: Envelope, tmp_path: Path, length: int):
    assert length < ATTACHMENT_BLOB
    chunk, match = expected_for_length(length)
    envelope.write(ATTACHMENT_PART, envelope.blobs[ATTACHMENT_PART][:length])
    assert_refused(envelope, ATTACHMENT_PART, chunk=chunk, match=match, tmp=tmp_path)


Pieces = list[bytes]
# A reader cuts the blob into pieces of 65,552 bytes from the front (§5.6), whatever the writer
# meant: once the short last chunk is not at the end, what follows it is cut differently.
SPLICES: dict[str, tuple[Callable[[Pieces, Pieces, Pieces], Pieces], int, str]] = {
    # (mine, the original part's, another envelope's) -> the new chunk list
    "drop the last chunk": (lambda m, o, t: m[:-1], 3, failed(3)),
    "drop a middle chunk": (lambda m, o, t: m[:2] + m[3:], 2, failed(2)),
    "drop the first chunk": (lambda m, o, t: m[1:], 0, failed(0)),
    "duplicate a chunk": (lambda m, o, t: m[:2] + m[1:], 2, failed(2)),
    "duplicate the last chunk": (lambda m, o, t: [*m, m[-1]], 4, failed(4)),
    "swap two chunks": (lambda m, o, t: [m[0], m[2], m[1], *m[3:]], 1, failed(1)),
    "swap the last two chunks": (lambda m, o, t: [*m[:3], m[4], m[3]], 3, failed(3)),
    "append a chunk of the original part": (lambda m, o, t: [*m, o[0]], 4, failed(4)),
    "append a chunk of another envelope": (lambda m, o, t: [*m, t[0]], 4, failed(4)),
    "append a few bytes": (lambda m, o, t: [*m, b"\x00" * 10], 4, failed(4)),
    "replace a chunk by the original's": (lambda m, o, t: [m[0], o[1], *m[2:]], 1, failed(1)),
    "replace a chunk by another envelope's": (lambda m, o, t: [*m[:2], t[2], *m[3:]], 2, failed(2)),
    # The attacker keeps every length right: a full foreign chunk in the last place.
    "replace the last chunk with a full one": (lambda m, o, t: [*m[:4], t[0]], 4, failed(4)),
}


@pytest.mark.parametrize(("splice", "chunk", "match"), SPLICES.values(), ids=SPLICES.keys())
def test_spliced_chunks_fail(
    envelope: Envelope,
    other: Envelope,
    tmp_path: Path,
    splice: Callable[[Pieces, Pieces, Pieces], Pieces],
    chunk: int,
    match: str,
):
    mine = envelope.pieces(ATTACHMENT_PART)
    assert len(mine) == ATTACHMENT_CHUNKS
    pieces = splice(mine, envelope.pieces(1), other.pieces(ATTACHMENT_PART))
    header = envelope.blobs[ATTACHMENT_PART][:H]
    envelope.write(ATTACHMENT_PART, header + b"".join(pieces))
    assert_refused(envelope, ATTACHMENT_PART, chunk=chunk, match=match, tmp=tmp_path)


# --- whole parts moved ----------------------------------------------------------------------


def with_place(blob: bytes, envelope_id: str, part: int) -> bytes:
    """``blob`` with its header rewritten to claim another place (its chunks unchanged)."""
    header = stream.PartHeader(bytes.fromhex(envelope_id), part).encode()
    return header + blob[H:]


MOVES = {
    # target part <- (source: "other" envelope or "same", source part, rewrite header?)
    "attachment of another envelope": (ATTACHMENT_PART, "other", ATTACHMENT_PART, False, ELSEWHERE),
    "attachment of another envelope, header rewritten": (
        ATTACHMENT_PART, "other", ATTACHMENT_PART, True, failed(0)),
    "another part of this envelope": (ATTACHMENT_PART, "same", 1, False, ELSEWHERE),
    "another part of this envelope, header rewritten": (ATTACHMENT_PART, "same", 1, True, failed(0)),
    "manifest of another envelope": (0, "other", 0, False, ELSEWHERE),
    "manifest of another envelope, header rewritten": (0, "other", 0, True, failed(0)),
    "original of another envelope": (1, "other", 1, False, ELSEWHERE),
}  # fmt: skip


@pytest.mark.parametrize(
    ("part", "source", "source_part", "rewrite", "match"), MOVES.values(), ids=MOVES.keys()
)
def test_a_part_moved_into_place_fails(
    envelope: Envelope,
    other: Envelope,
    tmp_path: Path,
    part: int,
    source: str,
    source_part: int,
    rewrite: bool,
    match: str,
):
    donor = other if source == "other" else envelope
    blob = blob_bytes(donor.store, donor.envelope_id, source_part)  # copied, as an attacker would
    if rewrite:
        blob = with_place(blob, envelope.envelope_id, part)
    envelope.write(part, blob)
    assert_refused(envelope, part, chunk=0, match=match, tmp=tmp_path)


# --- a manifest sealed with the right K but the wrong content (a holder of K) -------------


def reseal_manifest(envelope: Envelope, change: Callable[[dict], None]) -> None:
    unlocked = envelope.unlock()
    manifest = opener.read_manifest(envelope.store, unlocked)
    change(manifest)
    header = stream.PartHeader(bytes.fromhex(envelope.envelope_id), 0)
    data = json.dumps(manifest).encode()
    envelope.write(0, b"".join(stream.seal_part(unlocked.content_key, header, [data])))


def test_a_manifest_naming_another_envelope_fails(
    envelope: Envelope, other: Envelope, tmp_path: Path
):
    reseal_manifest(envelope, lambda m: m.update(envelope_id=other.envelope_id))
    with pytest.raises(opener.OpenError, match="the manifest belongs to another envelope"):
        opener.read_manifest(envelope.store, envelope.unlock())
    with pytest.raises(opener.OpenError, match="the manifest belongs to another envelope"):
        opener.export(envelope.store, envelope.unlock(), tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_of_an_unknown_format_fails(envelope: Envelope, tmp_path: Path):
    reseal_manifest(envelope, lambda m: m.update(format=2))
    with pytest.raises(opener.OpenError, match="unsupported manifest format 2"):
        opener.export(envelope.store, envelope.unlock(), tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_an_attachment_that_does_not_match_the_manifest_fails(envelope: Envelope, tmp_path: Path):
    def change(manifest: dict) -> None:
        manifest["attachments"][0]["sha256"] = "0" * 64

    reseal_manifest(envelope, change)
    with pytest.raises(opener.OpenError, match="part 2 does not match its SHA-256"):
        opener.export(envelope.store, envelope.unlock(), tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


# --- the key material in the database (both backends) ------------------------------------


def update_reader(store: Store, reader_id: str, /, **values: bytes | str | None) -> None:
    """Set columns of one reader row, values as bound parameters."""
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    with store.engine.begin() as conn:
        changed = conn.execute(
            text(f"UPDATE readers SET {assignments} WHERE reader_id = :where_reader_id"),
            {**values, "where_reader_id": reader_id},
        )
        assert changed.rowcount == 1


def small_envelope(store: Store) -> SealedEnvelope:
    return seal(store, mail(text="Short.\n"), ("bob@example.net", "carol@example.com"))


def reader_of(store: Store, sealed: SealedEnvelope, number: int) -> ReaderRecord:
    record = store.get(sealed.envelope_id)
    assert record is not None
    reader = record.readers[number]
    assert reader.reader_id == sealed.grants[number].reader_id
    return reader


def reader_of_link(store: Store, link: keys.Link) -> ReaderRecord:
    found = store.reader_by_link(link.id_hash)
    assert found is not None
    return found[1]


def test_a_changed_wrapped_key_fails(store: Store):
    """A guest's wrapped K (format v2): version byte, nonce, ciphertext and tag all count."""
    sealed = small_envelope(store)
    reader = reader_of(store, sealed, 0)
    wrapped = reader.wrapped_key
    assert wrapped is not None and len(wrapped) == keys.GUEST_WRAPPED_SIZE
    assert reader.encrypted_private_key is None and reader.public_key is None  # no key pair
    damaged = "the wrapped content key is damaged or of an unknown version"
    does_not_open = "the wrapped content key does not open: wrong link or tampering"
    cases = [
        (flip(wrapped, 0, 0x03), damaged),  # version 1
        (wrapped[:-1], damaged),
        (wrapped + b"\x00", damaged),
        (flip(wrapped, 1), does_not_open),  # the nonce
        (flip(wrapped, 20, 0x80), does_not_open),  # K's ciphertext
        (flip(wrapped, len(wrapped) - 1), does_not_open),  # the tag
    ]
    for changed, message in cases:
        update_reader(store, reader.reader_id, wrapped_key=changed)
        with pytest.raises(opener.OpenError, match=message):
            opener.unlock_with_link(store, sealed.grants[0].link)
    update_reader(store, reader.reader_id, wrapped_key=wrapped)
    opener.unlock_with_link(store, sealed.grants[0].link)  # restored: it opens again


def test_wrong_and_foreign_links_fail(store: Store):
    sealed = small_envelope(store)
    another = small_envelope(store)
    link = sealed.grants[0].link
    with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
        opener.unlock_with_link(store, keys.Link(link.link_id, os.urandom(32)))
    with pytest.raises(opener.OpenError, match="no envelope for this link"):
        opener.unlock_with_link(store, keys.Link(os.urandom(16), link.secret))
    with pytest.raises(opener.OpenError, match="this link belongs to another envelope"):
        opener.unlock_with_link(store, another.grants[0].link, sealed.envelope_id)
    with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
        opener.unlock_with_link(store, keys.Link(another.grants[0].link.link_id, link.secret))


def test_wrapped_keys_are_bound_to_their_reader_and_envelope(store: Store):
    """The envelope id and the reader id are the AAD of a guest's wrapped K."""
    sealed = small_envelope(store)
    another = small_envelope(store)
    bob, carol = reader_of(store, sealed, 0), reader_of(store, sealed, 1)
    links = [grant.link for grant in sealed.grants]

    def neither_opens() -> None:
        for link in links:
            with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
                opener.unlock_with_link(store, link)

    # The wrapped keys swapped: each is under the other link's wrapping key.
    update_reader(store, bob.reader_id, wrapped_key=carol.wrapped_key)
    update_reader(store, carol.reader_id, wrapped_key=bob.wrapped_key)
    neither_opens()
    update_reader(store, bob.reader_id, wrapped_key=bob.wrapped_key)
    update_reader(store, carol.reader_id, wrapped_key=carol.wrapped_key)

    # The reader ids swapped: each row keeps its link and its wrapped K, only the reader
    # id in the AAD is wrong, and that alone makes it fail.
    def swap_ids() -> None:  # through a spare id: reader_id is the primary key
        spare = "f" * 32
        update_reader(store, bob.reader_id, reader_id=spare)
        update_reader(store, carol.reader_id, reader_id=bob.reader_id)
        update_reader(store, spare, reader_id=carol.reader_id)

    swap_ids()
    assert reader_of_link(store, links[0]).reader_id == carol.reader_id
    neither_opens()
    swap_ids()

    # Bob's reader moved into another envelope: the envelope id in the AAD differs.
    update_reader(store, bob.reader_id, envelope_id=another.envelope_id)
    with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
        opener.unlock_with_link(store, links[0])
    update_reader(store, bob.reader_id, envelope_id=sealed.envelope_id)

    for link in links:  # and everything restored opens again
        opener.unlock_with_link(store, link)


@pytest.fixture(scope="module")
def account() -> AccountRecord:
    return create_account("alice@example.org", PASSWORD)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_tampered_account_keys_fail(store: Store, account: AccountRecord):
    store.add_account(account)
    sealed = seal(store, mail(), ("bob@example.net",), account=account)
    (guest, own) = store.get(sealed.envelope_id).readers
    assert own.kind == "account" and own.wrapped_key is not None

    update_reader(store, own.reader_id, wrapped_key=flip(own.wrapped_key, 7))
    with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
        opener.unlock_with_password(store, sealed.envelope_id, account.address, PASSWORD)
    update_reader(store, own.reader_id, wrapped_key=guest.wrapped_key)  # K wrapped for bob
    with pytest.raises(opener.OpenError, match="the wrapped content key does not open"):
        opener.unlock_with_password(store, sealed.envelope_id, account.address, PASSWORD)
    update_reader(store, own.reader_id, wrapped_key=own.wrapped_key)

    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET encrypted_private_key = :blob WHERE address = :address"),
            {"blob": flip(account.encrypted_private_key, 40), "address": account.address},
        )
    with pytest.raises(opener.OpenError, match="the private key does not open"):
        opener.unlock_with_password(store, sealed.envelope_id, account.address, PASSWORD)


# --- revocation -----------------------------------------------------------------------------


def test_a_revoked_envelope_does_not_open_and_its_blobs_are_gone(store: Store, tmp_path: Path):
    revoked = make_envelope(store)
    held = revoked.unlock()  # a reader who opened it before: holds K
    assert store.shred(revoked.envelope_id, "revoked", detail="test")

    for grant in revoked.sealed.grants:
        with pytest.raises(
            opener.OpenError, match="the envelope was revoked; its keys are deleted"
        ):
            opener.unlock_with_link(store, grant.link)
    assert isinstance(store.blobs, FileBlobStore)
    assert not list(store.blobs.root.rglob(f"*{revoked.envelope_id}*"))
    assert revoked.envelope_id not in dict(store.blobs.envelopes())
    record = store.get(revoked.envelope_id)
    assert record is not None and record.state == "revoked"
    assert all(r.wrapped_key is None and r.encrypted_private_key is None for r in record.readers)

    # Even K, held from before, opens nothing now: the ciphertext is gone.
    with pytest.raises(BlobMissing, match="is missing"):
        read(store, held, ATTACHMENT_PART)
    out = tmp_path / "out"
    with pytest.raises(BlobMissing, match="is missing"):
        opener.export(store, held, out / "export")
    assert list(out.iterdir()) == []  # neither the target nor a scratch directory
