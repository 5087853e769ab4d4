"""Sealed parts (gateway.envelope.stream): round trips, bounded memory, and tampering.

Every way of changing a sealed part (a flipped bit anywhere, truncation,
extension, reordering, duplication, splicing across parts, envelopes and
keys) must make ``open_part`` raise SealedFormatError, and no plaintext of the
failing chunk may have been released before: the chunks released are exactly
the chunks before the damage. docs/envelope-format.md explains why each
attack fails; tests/test_vectors.py pins the bytes.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import tracemalloc
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.envelope import stream
from gateway.envelope.stream import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    PartHeader,
    SealedFormatError,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ENVELOPE = bytes.fromhex("00112233445566778899aabbccddeeff")
OTHER_ENVELOPE = bytes.fromhex("ffeeddccbbaa99887766554433221100")
PART = 2
SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE


def seal(
    plaintext: bytes | list[bytes],
    *,
    key: bytes = KEY,
    envelope_id: bytes = ENVELOPE,
    part_id: int = PART,
) -> bytes:
    pieces = [plaintext] if isinstance(plaintext, bytes) else plaintext
    return b"".join(stream.seal_part(key, PartHeader(envelope_id, part_id), pieces))


def open_chunks(
    sealed: bytes, *, key: bytes = KEY, envelope_id: bytes = ENVELOPE, part_id: int = PART
) -> Iterator[bytes]:
    return stream.open_part(key, io.BytesIO(sealed), envelope_id=envelope_id, part_id=part_id)


def plaintext_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunk(sealed: bytes, index: int) -> bytes:
    start = HEADER_SIZE + index * SEALED_CHUNK
    return sealed[start : start + SEALED_CHUNK]


# Three chunks: two full, and a last one of 1000 bytes.
PLAINTEXT = plaintext_of(2 * CHUNK_SIZE + 1000)
PLAIN_CHUNKS = [PLAINTEXT[i : i + CHUNK_SIZE] for i in range(0, len(PLAINTEXT), CHUNK_SIZE)]
SEALED = seal(PLAINTEXT)
HEADER, C0, C1, C2 = SEALED[:HEADER_SIZE], chunk(SEALED, 0), chunk(SEALED, 1), chunk(SEALED, 2)


def assert_refused(
    sealed: bytes,
    released_before: int,
    *,
    key: bytes = KEY,
    envelope_id: bytes = ENVELOPE,
    part_id: int = PART,
) -> None:
    """Opening fails, after releasing exactly the first ``released_before`` chunks of PLAINTEXT."""
    released = []
    with pytest.raises(SealedFormatError):
        for piece in open_chunks(sealed, key=key, envelope_id=envelope_id, part_id=part_id):
            released.append(piece)
    assert released == PLAIN_CHUNKS[:released_before]


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1, 3 * CHUNK_SIZE],
)
def test_round_trip(size: int) -> None:
    plaintext = plaintext_of(size, seed=size)
    sealed = seal(plaintext)
    assert len(sealed) == stream.sealed_size(size)
    chunks = list(open_chunks(sealed))
    assert b"".join(chunks) == plaintext
    assert len(chunks) == max(1, -(-size // CHUNK_SIZE))
    assert all(len(piece) == CHUNK_SIZE for piece in chunks[:-1])


def test_empty_part_is_one_empty_last_chunk() -> None:
    sealed = seal(b"")
    assert len(sealed) == HEADER_SIZE + TAG_SIZE
    aead = AESGCM(stream.part_key(KEY, ENVELOPE, PART))
    assert (
        aead.decrypt(stream.chunk_nonce(0, True), sealed[HEADER_SIZE:], sealed[:HEADER_SIZE]) == b""
    )


def test_part_of_whole_chunks_ends_with_a_full_chunk_flagged_last() -> None:
    plaintext = plaintext_of(2 * CHUNK_SIZE)
    sealed = seal(plaintext)
    assert len(sealed) == HEADER_SIZE + 2 * SEALED_CHUNK  # no empty trailing chunk
    aead = AESGCM(stream.part_key(KEY, ENVELOPE, PART))
    last = aead.decrypt(stream.chunk_nonce(1, True), chunk(sealed, 1), sealed[:HEADER_SIZE])
    assert last == plaintext[CHUNK_SIZE:]


def test_header_layout() -> None:
    layout = b"SEALGATE" + bytes([1, 1]) + struct.pack(">I", CHUNK_SIZE)
    expected = layout + ENVELOPE + struct.pack(">I", PART)
    assert PartHeader(ENVELOPE, PART).encode() == expected
    assert SEALED.startswith(expected)
    assert PartHeader.decode(expected) == PartHeader(ENVELOPE, PART)


def test_chunk_nonce_layout() -> None:
    assert stream.chunk_nonce(0, False) == bytes(12)
    assert stream.chunk_nonce(0x01020304, True) == bytes(7) + b"\x01\x02\x03\x04\x01"
    for index in (-1, 2**32):
        with pytest.raises(SealedFormatError):
            stream.chunk_nonce(index, False)


def test_part_key_needs_a_32_byte_key_and_16_byte_envelope_id() -> None:
    with pytest.raises(ValueError):
        stream.part_key(KEY[:31], ENVELOPE, 0)
    with pytest.raises(ValueError):
        stream.part_key(KEY, ENVELOPE + b"\x00", 0)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 3 * CHUNK_SIZE + 100),
    cuts=st.lists(st.integers(0, 3 * CHUNK_SIZE + 100), max_size=12),
    seed=st.integers(0, 2**32),
)
def test_round_trip_any_size_in_any_pieces(size: int, cuts: list[int], seed: int) -> None:
    plaintext = plaintext_of(size, seed)
    bounds = [0, *sorted(min(cut, size) for cut in cuts), size]
    pieces = [plaintext[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]
    sealed = seal(pieces)
    assert sealed == seal(plaintext)  # how the plaintext is cut does not change the part
    assert b"".join(open_chunks(sealed)) == plaintext


# --- memory ------------------------------------------------------------------------------


class _Pipe(io.RawIOBase):
    """A readable stream over an iterator of byte strings, pulled only as it is read."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending = memoryview(piece)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_50_mb_stream_seals_and_opens_in_bounded_memory() -> None:
    total = 50 * 1024 * 1024
    block = plaintext_of(1 << 20)
    sent, received = hashlib.sha256(), hashlib.sha256()
    sizes = random.Random(1)

    def plaintext() -> Iterator[bytes]:
        produced = 0
        while produced < total:
            start = sizes.randrange(len(block) // 2)
            piece = block[start : start + min(sizes.randrange(1, 100_000), total - produced)]
            sent.update(piece)
            produced += len(piece)
            yield piece

    tracemalloc.start()
    try:
        sealed = stream.seal_part(KEY, PartHeader(ENVELOPE, PART), plaintext())
        source = io.BufferedReader(_Pipe(sealed))
        opened = 0
        for piece in stream.open_part(KEY, source, envelope_id=ENVELOPE, part_id=PART):
            received.update(piece)
            opened += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened == total
    assert received.digest() == sent.digest()
    assert peak < 1024 * 1024, f"peak {peak} bytes"


# --- tampering ---------------------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def chunk_holding(offset: int) -> int:
    """How many chunks are released before the damage at byte ``offset`` is found."""
    return 0 if offset < HEADER_SIZE else (offset - HEADER_SIZE) // SEALED_CHUNK


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, len(SEALED) * 8 - 1))
def test_any_flipped_bit_is_refused(bit: int) -> None:
    assert_refused(flip(SEALED, bit), chunk_holding(bit // 8))


def test_every_flipped_header_bit_is_refused_before_any_plaintext() -> None:
    for bit in range(HEADER_SIZE * 8):
        assert_refused(flip(SEALED, bit), 0)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_flipped_tag_bit_is_refused(index: int) -> None:
    tag_end = HEADER_SIZE + min((index + 1) * SEALED_CHUNK, len(SEALED) - HEADER_SIZE)
    for bit in range((tag_end - TAG_SIZE) * 8, tag_end * 8):
        assert_refused(flip(SEALED, bit), index)


@pytest.mark.parametrize(
    "length",
    sorted(
        {
            *range(0, HEADER_SIZE + 2),
            *(
                HEADER_SIZE + boundary * SEALED_CHUNK + delta
                for boundary in (0, 1, 2)
                for delta in (-1, 0, 1, TAG_SIZE - 1, TAG_SIZE, 1000)
            ),
            len(SEALED) - 1,
        }
        - {len(SEALED)}
    ),
)
def test_truncation_is_refused(length: int) -> None:
    # The chunk cut short (or, at a boundary, the one left at the end) fails; those before it pass.
    sealed_chunks = -(-max(0, length - HEADER_SIZE) // SEALED_CHUNK)
    assert_refused(SEALED[:length], max(0, sealed_chunks - 1))


def test_dropping_the_last_chunk_is_refused() -> None:
    assert_refused(HEADER + C0 + C1, 1)


def test_dropping_a_middle_chunk_is_refused() -> None:
    assert_refused(HEADER + C0 + C2, 1)


def test_reordering_is_refused() -> None:
    assert_refused(HEADER + C1 + C0 + C2, 0)
    assert_refused(HEADER + C0 + C2 + C1, 1)


def test_duplicating_a_chunk_is_refused() -> None:
    assert_refused(HEADER + C0 + C0 + C1 + C2, 1)
    assert_refused(HEADER + C0 + C1 + C1 + C2, 2)


def test_extension_is_refused() -> None:
    assert_refused(SEALED + b"\x00", 2)
    assert_refused(SEALED + C2, 2)
    assert_refused(SEALED + seal(b"more")[HEADER_SIZE:], 2)


def test_wrong_key_or_place_is_refused() -> None:
    assert_refused(SEALED, 0, key=OTHER_KEY)
    assert_refused(SEALED, 0, part_id=PART + 1)
    assert_refused(SEALED, 0, envelope_id=OTHER_ENVELOPE)


def test_part_of_another_envelope_with_the_same_key_is_refused() -> None:
    other = seal(PLAINTEXT, envelope_id=OTHER_ENVELOPE)
    assert_refused(other, 0)  # the header names the other envelope
    assert_refused(HEADER + other[HEADER_SIZE:], 0)  # header rewritten: key and AAD differ
    assert_refused(HEADER + C0 + C1 + chunk(other, 2), 2)  # one chunk spliced in


def test_part_under_another_key_is_refused() -> None:
    other = seal(PLAINTEXT, key=OTHER_KEY)
    assert other[:HEADER_SIZE] == HEADER
    assert_refused(other, 0)
    assert_refused(HEADER + C0 + chunk(other, 1) + C2, 1)


def test_part_moved_within_the_envelope_is_refused() -> None:
    other = seal(PLAINTEXT, part_id=PART + 1)
    assert_refused(other, 0)
    assert_refused(HEADER + other[HEADER_SIZE:], 0)
    assert_refused(HEADER + C0 + chunk(other, 1) + C2, 1)


# --- the header ----------------------------------------------------------------------------


def header_with(offset: int, value: bytes) -> bytes:
    return HEADER[:offset] + value + HEADER[offset + len(value) :]


@pytest.mark.parametrize(
    "header",
    [
        header_with(0, b"SEALGATF"),
        header_with(8, b"\x02"),
        header_with(9, b"\x02"),
        header_with(10, struct.pack(">I", 0)),
        header_with(10, struct.pack(">I", 16 * 1024 * 1024 + 1)),
        HEADER[:-1],
        b"",
    ],
    ids=["magic", "version", "suite", "chunk-size-0", "chunk-size-above-16-MiB", "short", "empty"],
)
def test_header_is_refused(header: bytes) -> None:
    with pytest.raises(SealedFormatError):
        PartHeader.decode(header)
    assert_refused(header + SEALED[HEADER_SIZE:], 0)


def test_largest_chunk_size_is_accepted_by_the_header() -> None:
    header = header_with(10, struct.pack(">I", 16 * 1024 * 1024))
    assert PartHeader.decode(header).chunk_size == 16 * 1024 * 1024
