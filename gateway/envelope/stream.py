"""Sealed parts: AES-256-GCM in fixed-size chunks with a STREAM nonce (format v1).

Each part of an envelope (manifest, original message, attachment) is sealed
separately under its own key, derived from the envelope's content key K with
HKDF-SHA256 over the envelope id and part id. The plaintext is cut into
64 KiB chunks; chunk i is encrypted with the nonce

    7 zero bytes || i as uint32 big-endian || 0x01 if last chunk else 0x00

and the part header as associated data. This is the STREAM construction
(Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and
its Nonce-Reuse Misuse-Resistance", 2015): dropping chunks at the end,
reordering or duplicating chunks, or splicing chunks of another part or
envelope all fail authentication. The zero prefix is safe because every part
key is used for exactly one part.

64 KiB keeps the GCM tag overhead at 0.02 %, lets a browser decrypt a chunk per
WebCrypto call (WebCrypto has no streaming AES-GCM) and bounds memory to a
few chunks on both sides. docs/envelope-format.md is the byte-level
specification; tests/vectors/ holds test vectors.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SEALGATE"
VERSION = 1
SUITE = 1  # AES-256-GCM chunks, keys from HKDF-SHA256
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
_HEADER = struct.Struct(">8sBBI16sI")
HEADER_SIZE = _HEADER.size  # 34 bytes
_PART_INFO = b"sealgate v1 part key"
_MAX_CHUNKS = 2**32


class SealedFormatError(Exception):
    """The sealed data is not what format v1 says, or it failed authentication.

    Raised before any plaintext of the failing chunk is released; callers that
    stream must discard what they produced so far (see :func:`open_part`).
    """


@dataclass(frozen=True)
class PartHeader:
    envelope_id: bytes  # 16 bytes
    part_id: int
    chunk_size: int = CHUNK_SIZE

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, SUITE, self.chunk_size, self.envelope_id, self.part_id)

    @classmethod
    def decode(cls, data: bytes) -> PartHeader:
        if len(data) != HEADER_SIZE:
            raise SealedFormatError("sealed part is shorter than its header")
        magic, version, suite, chunk_size, envelope_id, part_id = _HEADER.unpack(data)
        if magic != MAGIC:
            raise SealedFormatError("not a Sealgate sealed part (bad magic)")
        if version != VERSION or suite != SUITE:
            raise SealedFormatError(f"unsupported sealed format {version}.{suite}")
        if not 1 <= chunk_size <= 16 * 1024 * 1024:
            raise SealedFormatError(f"implausible chunk size {chunk_size}")
        return cls(envelope_id, part_id, chunk_size)


def part_key(content_key: bytes, envelope_id: bytes, part_id: int) -> bytes:
    """HKDF-SHA256(K, salt = empty, info = label || envelope id || part id)."""
    if len(content_key) != 32 or len(envelope_id) != 16:
        raise ValueError("content key must be 32 bytes and envelope id 16 bytes")
    info = _PART_INFO + envelope_id + struct.pack(">I", part_id)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(content_key)


def chunk_nonce(index: int, last: bool) -> bytes:
    if not 0 <= index < _MAX_CHUNKS:
        raise SealedFormatError("part has too many chunks")
    return bytes(7) + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def _rechunk(pieces: Iterable[bytes | memoryview], size: int) -> Iterator[bytes | memoryview]:
    """Cut arbitrary pieces into chunks of exactly ``size`` bytes (the last may be short).

    A piece that is a whole chunk where one is due passes through uncopied.
    """
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) == size:
            yield piece
            continue
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    yield bytes(buffer)


def seal_part(
    content_key: bytes,
    header: PartHeader,
    plaintext: Iterable[bytes | memoryview],
) -> Iterator[bytes]:
    """Yield the sealed part: the header, then one ciphertext per chunk.

    ``plaintext`` may come in pieces of any size; memory stays at about two
    chunks. An empty plaintext still yields one (empty, last) chunk, so that
    every sealed part ends with an authenticated last-chunk marker.
    """
    aad = header.encode()
    aead = AESGCM(part_key(content_key, header.envelope_id, header.part_id))
    yield aad
    chunks = _rechunk(plaintext, header.chunk_size)
    current = next(chunks)
    index = 0
    for following in chunks:
        if not following:
            break  # the plaintext ended on a chunk boundary: ``current`` is the last
        yield aead.encrypt(chunk_nonce(index, False), current, aad)
        current, index = following, index + 1
    yield aead.encrypt(chunk_nonce(index, True), current, aad)


def open_part(
    content_key: bytes,
    source: BinaryIO,
    *,
    envelope_id: bytes,
    part_id: int,
) -> Iterator[bytes]:
    """Yield the plaintext chunks of a sealed part read from ``source``.

    The expected envelope and part id come from the caller (the store), not
    from the data, so a part moved to another place fails. A chunk is yielded
    only after it authenticated, but a part is whole only when the generator
    finishes without :class:`SealedFormatError`.
    """
    aad = _read(source, HEADER_SIZE)
    header = PartHeader.decode(aad)
    if not hmac.compare_digest(header.envelope_id, envelope_id) or header.part_id != part_id:
        raise SealedFormatError("sealed part belongs to another envelope or part")
    aead = AESGCM(part_key(content_key, envelope_id, part_id))
    sealed_size = header.chunk_size + TAG_SIZE
    current = _read(source, sealed_size)
    index = 0
    while True:
        following = _read(source, sealed_size)
        last = not following
        if len(current) < TAG_SIZE or (not last and len(current) != sealed_size):
            raise SealedFormatError(f"sealed part is truncated at chunk {index}")
        try:
            yield aead.decrypt(chunk_nonce(index, last), current, aad)
        except InvalidTag:
            raise SealedFormatError(
                f"chunk {index} failed authentication (tampered, truncated or reordered)"
            ) from None
        if last:
            return
        current, index = following, index + 1


def _read(source: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end: a stream may return short reads mid-blob."""
    data = source.read(size)
    while 0 < len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def sealed_size(plaintext_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Bytes of a sealed part holding ``plaintext_size`` bytes."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * TAG_SIZE
