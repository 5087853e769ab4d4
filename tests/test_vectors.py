"""gateway.envelope against the format v1 and v2 test vectors in tests/vectors/.

The vectors come from tests/vectors/generate.py, an implementation of
docs/envelope-format.md independent of gateway.envelope. Here the gateway code
must reproduce every positive vector (deterministic outputs byte for byte;
RSA-OAEP, being randomised, by unwrapping) and refuse every negative one at the
stage the vector names. The last test regenerates the vectors and compares
them byte for byte with the committed files, so the specification's
implementation, the vectors and the gateway code cannot drift apart.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.envelope import keys, stream
from gateway.envelope.seal import Sealer, SealRequest
from gateway.store import BlobStore
from tests.vectors import generate

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="ascii"))
    return document


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def names(cases: Iterable[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def seal(content_key: bytes, envelope_id: bytes, part_id: int, pieces: Iterable[bytes]) -> bytes:
    header = stream.PartHeader(envelope_id, part_id)
    return b"".join(stream.seal_part(content_key, header, pieces))


def open_part(content_key: bytes, blob: bytes, envelope_id: bytes, part_id: int) -> bytes:
    source = io.BytesIO(blob)
    return b"".join(stream.open_part(content_key, source, envelope_id=envelope_id, part_id=part_id))


def odd_pieces(data: bytes) -> list[bytes]:
    """``data`` cut at sizes that never line up with the chunk size."""
    cuts = [0]
    while cuts[-1] < len(data):
        cuts.append(min(len(data), cuts[-1] + 1 + (cuts[-1] * 7919) % 40_000))
    return [data[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RSA = load("rsa-keys.json")
PART_KEYS = load("part-key.json")
PARTS = load("parts.json")
GUEST = load("guest-kek.json")
ACCOUNT = load("account.json")
ENVELOPE = load("envelope.json")
GUEST_WRAP = load("guest-wrap-v2.json")
ENVELOPE_V2 = load("envelope-v2.json")
INVALID = load("invalid.json")


# --- positive vectors --------------------------------------------------------------


def test_hkdf_empty_salt_equals_hashlen_zero_bytes() -> None:
    """The specification's claim that WebCrypto's empty salt is RFC 5869's default salt."""

    def derive(salt: bytes | None) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt=salt, info=b"info").derive(b"key material")

    assert derive(b"") == derive(None) == derive(bytes(32))


@pytest.mark.parametrize("case", PART_KEYS["cases"])
def test_part_key(case: dict[str, Any]) -> None:
    derived = stream.part_key(h(case["content_key"]), h(case["envelope_id"]), case["part_id"])
    assert derived.hex() == case["part_key"]


@pytest.mark.parametrize("case", PARTS["cases"], ids=names(PARTS["cases"]))
def test_sealed_part(case: dict[str, Any]) -> None:
    content_key, envelope_id = h(case["content_key"]), h(case["envelope_id"])
    plaintext = generate.pattern(case["plaintext_size"])
    assert sha256(plaintext) == case["plaintext_sha256"]

    sealed = seal(content_key, envelope_id, case["part_id"], odd_pieces(plaintext))

    assert len(sealed) == case["sealed_size"] == stream.sealed_size(len(plaintext))
    assert sha256(sealed) == case["sealed_sha256"]
    assert sealed[: stream.HEADER_SIZE].hex() == case["header"]
    if "sealed" in case:
        assert sealed.hex() == case["sealed"]
    offset = stream.HEADER_SIZE
    for chunk in case["chunks"]:
        last = chunk["index"] == len(case["chunks"]) - 1
        assert stream.chunk_nonce(chunk["index"], last).hex() == chunk["nonce"]
        sealed_chunk = sealed[offset : offset + chunk["sealed_size"]]
        assert sha256(sealed_chunk) == chunk["sealed_sha256"]
        assert sealed_chunk[-stream.TAG_SIZE :].hex() == chunk["tag"]
        if "sealed" in chunk:
            assert sealed_chunk.hex() == chunk["sealed"]
        offset += chunk["sealed_size"]
    assert offset == len(sealed)
    assert open_part(content_key, sealed, envelope_id, case["part_id"]) == plaintext


@pytest.mark.parametrize("entry", RSA["keys"], ids=[str(entry["bits"]) for entry in RSA["keys"]])
def test_rsa_test_keys_unwrap_the_content_key(entry: dict[str, Any]) -> None:
    private_der, public_der = h(entry["private_key_pkcs8"]), h(entry["public_key_spki"])
    content_key = h(entry["content_key"])
    assert keys.unwrap_content_key(private_der, h(entry["wrapped_content_key"])) == content_key
    rewrapped = keys.wrap_content_key(public_der, content_key)
    assert keys.unwrap_content_key(private_der, rewrapped) == content_key


@pytest.mark.parametrize("case", GUEST["cases"], ids=lambda case: case["link_id_b64url"])
def test_guest_link(case: dict[str, Any]) -> None:
    link = keys.Link(h(case["link_id"]), h(case["secret"]))
    assert link.url(GUEST["portal"]) == case["url"]
    assert keys.Link.parse(case["url"]) == link
    assert link.id_hash.hex() == case["link_id_hash"]
    assert link.kek().hex() == case["kek"]


def test_guest_private_key_and_wrapped_key() -> None:
    vector = GUEST["private_key"]
    kek, owner, pkcs8 = h(vector["kek"]), h(vector["owner"]), h(vector["private_key_pkcs8"])
    blob = keys.encrypt_private_key(kek, pkcs8, owner, nonce=h(vector["nonce"]))
    assert blob.hex() == vector["encrypted_private_key"]
    assert keys.decrypt_private_key(kek, blob, owner) == pkcs8
    wrapped = GUEST["wrapped_content_key"]
    unwrapped = keys.unwrap_content_key(
        h(wrapped["private_key_pkcs8"]), h(wrapped["wrapped_content_key"])
    )
    assert unwrapped.hex() == wrapped["content_key"]


@pytest.mark.parametrize("case", ACCOUNT["cases"], ids=names(ACCOUNT["cases"]))
def test_account_keys(case: dict[str, Any]) -> None:
    assert case["password"].encode("utf-8").hex() == case["password_utf8"]
    derived = keys.account_keys(case["password"], h(case["salt"]), case["iterations"])
    assert derived.kek.hex() == case["kek"]
    assert derived.login_secret.hex() == case["login_secret"]


def test_account_nfc_and_nfd_passwords_are_one_password() -> None:
    nfc, nfd = (next(c for c in ACCOUNT["cases"] if c["name"] == name) for name in ("nfc", "nfd"))
    assert nfc["password_utf8"] != nfd["password_utf8"]
    assert (nfc["master"], nfc["kek"]) == (nfd["master"], nfd["kek"])


def test_account_private_key() -> None:
    vector = ACCOUNT["private_key"]
    owner = vector["address_as_entered"].lower().encode("utf-8")
    assert owner.hex() == vector["owner"]
    kek, pkcs8 = h(vector["kek"]), h(vector["private_key_pkcs8"])
    blob = keys.encrypt_private_key(kek, pkcs8, owner, nonce=h(vector["nonce"]))
    assert blob.hex() == vector["encrypted_private_key"]
    assert keys.decrypt_private_key(kek, blob, owner) == pkcs8


@pytest.mark.parametrize("case", GUEST_WRAP["cases"], ids=lambda case: case["url"][-8:])
def test_guest_wrap_v2(case: dict[str, Any]) -> None:
    link = keys.Link.parse(case["url"])
    assert (link.link_id.hex(), link.secret.hex()) == (case["link_id"], case["secret"])
    assert link.wrapping_key().hex() == case["wrapping_key"]
    envelope_id, reader_id = h(case["envelope_id"]), h(case["reader_id"])
    wrapped = keys.wrap_for_link(
        link, h(case["content_key"]), envelope_id, reader_id, nonce=h(case["nonce"])
    )
    assert wrapped.hex() == case["wrapped_content_key"]
    assert len(wrapped) == keys.GUEST_WRAPPED_SIZE
    assert keys.unwrap_for_link(link, wrapped, envelope_id, reader_id).hex() == case["content_key"]


def unlock(link_url: str, server: dict[str, Any]) -> bytes:
    """What the browser does with a link and the reader record the portal serves: K.

    A v2 guest's record has no encrypted private key; a v1 guest's has one.
    """
    link = keys.Link.parse(link_url)
    wrapped = h(server["wrapped_content_key"])
    if "encrypted_private_key" not in server:
        return keys.unwrap_for_link(link, wrapped, h(server["envelope_id"]), h(server["reader_id"]))
    private_der = keys.decrypt_private_key(
        link.kek(), h(server["encrypted_private_key"]), h(server["reader_id"])
    )
    return keys.unwrap_content_key(private_der, wrapped)


@pytest.mark.parametrize("vector", [ENVELOPE, ENVELOPE_V2], ids=["v1", "v2"])
def test_whole_envelope_opens_from_the_link_alone(vector: dict[str, Any]) -> None:
    server, expected = vector["server"], vector["expected"]
    link = keys.Link.parse(vector["link_url"])
    assert link.id_hash.hex() == server["link_id_hash"]
    if "kek" in expected:
        assert link.kek().hex() == expected["kek"]
    else:
        assert link.wrapping_key().hex() == expected["wrapping_key"]
    content_key = unlock(vector["link_url"], server)
    assert content_key.hex() == expected["content_key"]

    envelope_id = h(server["envelope_id"])
    opened = {
        part["part_id"]: open_part(content_key, h(part["sealed"]), envelope_id, part["part_id"])
        for part in vector["parts"]
    }
    manifest = json.loads(opened[0])
    assert manifest == expected["manifest"]
    assert manifest["envelope_id"] == server["envelope_id"]
    for entry in [manifest["original"], *manifest["attachments"]]:
        assert len(opened[entry["part"]]) == entry["size"]
        assert sha256(opened[entry["part"]]) == entry["sha256"]
    for part, sealed in zip(expected["parts"], vector["parts"], strict=True):
        assert opened[part["part_id"]].hex() == part["plaintext"]
        resealed = seal(content_key, envelope_id, part["part_id"], [h(part["plaintext"])])
        assert resealed.hex() == sealed["sealed"]


class _MemoryBlobs:
    """The BlobStore method sealing uses, in memory: a writer that keeps each part."""

    def __init__(self) -> None:
        self.blobs: dict[int, bytes] = {}

    @contextmanager
    def writer(self, envelope_id: str) -> Iterator[SimpleNamespace]:
        def write(part_id: int, chunks: Iterable[bytes]) -> int:
            self.blobs[part_id] = b"".join(chunks)
            return len(self.blobs[part_id])

        yield SimpleNamespace(write=write, commit=lambda: None)


def test_sealer_makes_the_envelope_the_vector_describes() -> None:
    """seal.py assembles parts, ids and manifest as the specification and the vector say."""
    expected = ENVELOPE["expected"]
    original = h(expected["parts"][1]["plaintext"])
    blobs = _MemoryBlobs()
    sealer = Sealer(cast(BlobStore, blobs))
    request = SealRequest(original, "alice@example.org", "Q1", ("bob@example.net",), "key")
    sealed = sealer.seal(request)

    (reader,), (grant,) = sealed.record.readers, sealed.grants
    assert reader.link_id_hash == grant.link.id_hash
    assert reader.encrypted_private_key is None and reader.public_key is None  # format v2
    server = {
        "envelope_id": sealed.envelope_id,
        "reader_id": reader.reader_id,
        "wrapped_content_key": (reader.wrapped_key or b"").hex(),
    }
    content_key = unlock(grant.link.url(generate.PORTAL), server)
    envelope_id = h(sealed.envelope_id)
    assert [(part.part_id, part.kind) for part in sealed.record.parts] == [
        (part["part_id"], part["kind"]) for part in expected["parts"]
    ]
    opened = {
        part_id: open_part(content_key, blob, envelope_id, part_id)
        for part_id, blob in blobs.blobs.items()
    }
    assert json.loads(opened[0]) == {**expected["manifest"], "envelope_id": sealed.envelope_id}
    for part in expected["parts"][1:]:
        assert opened[part["part_id"]].hex() == part["plaintext"]


# --- negative vectors --------------------------------------------------------------


def assemble(segments: list[dict[str, Any]]) -> bytes:
    bases = INVALID["bases"]
    return b"".join(
        h(segment["hex"])
        if "hex" in segment
        else h(bases[segment["base"]]["sealed"])[segment["start"] : segment["end"]]
        for segment in segments
    )


@pytest.mark.parametrize("name", list(INVALID["bases"]))
def test_invalid_bases_are_valid(name: str) -> None:
    base = INVALID["bases"][name]
    plaintext = open_part(
        h(base["content_key"]), h(base["sealed"]), h(base["envelope_id"]), base["part_id"]
    )
    assert len(plaintext) == base["plaintext_size"]
    assert sha256(plaintext) == base["plaintext_sha256"]


@pytest.mark.parametrize("case", INVALID["parts"], ids=names(INVALID["parts"]))
def test_invalid_part_is_refused_at_its_stage(case: dict[str, Any]) -> None:
    where = case["open_as"]
    chunks = stream.open_part(
        h(where["content_key"]),
        io.BytesIO(assemble(case["blob"])),
        envelope_id=h(where["envelope_id"]),
        part_id=where["part_id"],
    )
    released: list[bytes] = []
    with pytest.raises(stream.SealedFormatError) as failure:
        for chunk in chunks:
            released.append(chunk)

    failing_chunk = re.search(r"chunk (\d+)", str(failure.value))
    if case["expected"]["stage"] == "header":
        assert failing_chunk is None
        assert released == []
    else:
        assert failing_chunk is not None
        assert int(failing_chunk.group(1)) == case["expected"]["chunk"]
        assert len(released) == case["expected"]["chunk"]
        main = generate.pattern(INVALID["bases"]["main"]["plaintext_size"])
        assert b"".join(released) == main[: len(released) * stream.CHUNK_SIZE]


@pytest.mark.parametrize("case", INVALID["unlocking"], ids=names(INVALID["unlocking"]))
def test_invalid_unlocking_is_refused_at_its_stage(case: dict[str, Any]) -> None:
    inputs = {"link_url": ENVELOPE["link_url"], **ENVELOPE["server"], **case["change"]}
    link = keys.Link.parse(inputs["link_url"])
    blob, owner = h(inputs["encrypted_private_key"]), h(inputs["reader_id"])
    if case["expected"]["stage"] == "private-key":
        with pytest.raises(keys.UnlockError):
            keys.decrypt_private_key(link.kek(), blob, owner)
    else:
        private_der = keys.decrypt_private_key(link.kek(), blob, owner)
        with pytest.raises(keys.UnlockError):
            keys.unwrap_content_key(private_der, h(inputs["wrapped_content_key"]))


@pytest.mark.parametrize("case", INVALID["unlocking_v2"], ids=names(INVALID["unlocking_v2"]))
def test_invalid_v2_unlocking_is_refused(case: dict[str, Any]) -> None:
    inputs = {"link_url": ENVELOPE_V2["link_url"], **ENVELOPE_V2["server"], **case["change"]}
    assert case["expected"]["stage"] == "unwrap"
    with pytest.raises(keys.UnlockError):
        unlock(inputs["link_url"], inputs)


@pytest.mark.parametrize("case", INVALID["links"], ids=names(INVALID["links"]))
def test_invalid_link_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        keys.Link.parse(case["url"])


# --- the vectors are what generate.py makes ----------------------------------------


def test_regenerating_the_vectors_reproduces_the_committed_files(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert {path.name for path in written} == {path.name for path in VECTORS.glob("*.json")}
    for path in written:
        assert path.read_bytes() == (VECTORS / path.name).read_bytes(), path.name
