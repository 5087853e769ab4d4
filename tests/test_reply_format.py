"""gateway.envelope.reply: the secure reply blob, sealed and opened in Python.

The browser's side (sealed.js ``sealReply``) is checked against ReplyKey.open in
tests/test_browser_crypto.py; here every refusal is pinned, with blobs built
byte by byte where the Python twin would never write them.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.envelope import keys, stream
from gateway.envelope.reply import (
    MAGIC,
    ReplyAttachment,
    ReplyContent,
    ReplyError,
    ReplyKey,
    seal_reply,
)

SECRET_WORDS = "geheime-inhoud-7731"  # content that must never appear in an error message
ENVELOPE_ID = "0123456789abcdef0123456789abcdef"
LIMIT = 1024 * 1024


def pem_of(private_key: Any) -> bytes:
    data: bytes = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return data


@pytest.fixture(scope="module")
def key() -> ReplyKey:
    return ReplyKey.from_pem(pem_of(rsa.generate_private_key(public_exponent=65537, key_size=2048)))


@pytest.fixture(scope="module")
def other_key() -> ReplyKey:
    return ReplyKey.from_pem(pem_of(rsa.generate_private_key(public_exponent=65537, key_size=2048)))


def content(**changes: Any) -> ReplyContent:
    fields: dict[str, Any] = {
        "in_reply_to": ENVELOPE_ID,
        "subject": "Re: Quartalszahlen f\u00fcr Q2",
        "text": f"Danke, {SECRET_WORDS}.\n\U0001f510 Zweite Zeile\n",
        "attachments": (
            ReplyAttachment("antwort.pdf", "application/pdf", b"%PDF-1.7 " + os.urandom(150_000)),
            ReplyAttachment("leer.txt", "text/plain", b""),
        ),
    }
    fields.update(changes)
    return ReplyContent(**fields)


def seal_raw(
    public_der: bytes,
    plaintext: bytes,
    *,
    reply_id: bytes | None = None,
    chunk_size: int = stream.CHUNK_SIZE,
) -> bytes:
    """A reply blob around any plaintext (the Python twin only writes valid documents)."""
    content_key, reply_id = os.urandom(32), reply_id or os.urandom(16)
    wrapped = keys.wrap_content_key(public_der, content_key)
    header = stream.PartHeader(reply_id, 0, chunk_size)
    sealed = b"".join(stream.seal_part(content_key, header, [plaintext]))
    return MAGIC + reply_id + struct.pack(">H", len(wrapped)) + wrapped + sealed


def seal_document(public_der: bytes, document: Any) -> bytes:
    return seal_raw(public_der, json.dumps(document).encode())


def document(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "format": 1,
        "in_reply_to": ENVELOPE_ID,
        "subject": "s",
        "text": SECRET_WORDS,
        "attachments": [
            {
                "filename": "a.txt",
                "content_type": "text/plain",
                "data": base64.b64encode(b"x").decode(),
            }
        ],
    }
    value.update(changes)
    return value


def refused(key: ReplyKey, blob: bytes, match: str | None = None, limit: int = LIMIT) -> ReplyError:
    with pytest.raises(ReplyError, match=match) as caught:
        key.open(blob, max_plaintext=limit)
    assert SECRET_WORDS not in str(caught.value)
    return caught.value


# --- round trip -----------------------------------------------------------------------


def test_round_trip(key: ReplyKey) -> None:
    original = content()
    blob = seal_reply(key.public_der, original)
    assert blob[:8] == MAGIC
    assert key.open(blob, max_plaintext=LIMIT) == original


def test_round_trip_of_an_empty_reply(key: ReplyKey) -> None:
    original = content(subject="", text="", attachments=())
    assert key.open(seal_reply(key.public_der, original), max_plaintext=LIMIT) == original


def test_layout(key: ReplyKey) -> None:
    blob = seal_reply(key.public_der, content(attachments=()))
    (wrapped_size,) = struct.unpack(">H", blob[24:26])
    assert wrapped_size == 256
    header = stream.PartHeader.decode(blob[26 + 256 : 26 + 256 + stream.HEADER_SIZE])
    assert header == stream.PartHeader(blob[8:24], 0, stream.CHUNK_SIZE)


def test_each_reply_has_its_own_id_and_key(key: ReplyKey) -> None:
    first, second = (seal_reply(key.public_der, content(attachments=())) for _ in range(2))
    assert first[8:24] != second[8:24]
    assert first[26:282] != second[26:282]


def test_the_size_limit_is_the_plaintext(key: ReplyKey) -> None:
    plaintext = json.dumps(document()).encode()
    blob = seal_raw(key.public_der, plaintext)
    assert key.open(blob, max_plaintext=len(plaintext)).text == SECRET_WORDS
    refused(key, blob, "too big", limit=len(plaintext) - 1)


def test_reprs_hold_no_content_or_key(key: ReplyKey) -> None:
    text = repr(content()) + repr(key)
    assert SECRET_WORDS not in text and "PDF" not in text and "Quartal" not in text
    assert "PRIVATE" not in repr(key) and repr(key) == "ReplyKey(bits=2048)"


# --- the key file -----------------------------------------------------------------------


def test_load_or_create_makes_a_private_file_and_reloads_it(tmp_path: Path) -> None:
    path = tmp_path / "reply-key.pem"
    created = ReplyKey.load_or_create(path, bits=2048)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in tmp_path.iterdir()] == ["reply-key.pem"]  # no temporary left
    reloaded = ReplyKey.load_or_create(path, bits=2048)
    assert reloaded.public_der == created.public_der
    blob = seal_reply(created.public_der, content(attachments=()))
    assert reloaded.open(blob, max_plaintext=LIMIT).text == content().text


def test_load_or_create_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "reply-key.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError):
        ReplyKey.load_or_create(path)
    assert b"not a key" in path.read_bytes()  # never overwritten


def test_load_or_create_refuses_an_unknown_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ReplyKey.load_or_create(tmp_path / "k.pem", bits=1024)
    assert not (tmp_path / "k.pem").exists()


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="garbage"),
        pytest.param(pem_of(ec.generate_private_key(ec.SECP256R1())), id="ec-key"),
        pytest.param(
            pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024)), id="rsa-1024"
        ),
        pytest.param(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"password"),
            ),
            id="encrypted",
        ),
    ],
)
def test_from_pem_refuses(pem: bytes) -> None:
    with pytest.raises(ValueError):
        ReplyKey.from_pem(pem)


# --- what is refused --------------------------------------------------------------------


def test_refuses_bad_magic(key: ReplyKey) -> None:
    blob = seal_reply(key.public_der, content())
    refused(key, b"SGREPLY2" + blob[8:], "magic")
    refused(key, stream.MAGIC + blob[8:], "magic")


@pytest.mark.parametrize("size", [0, 1, 8, 25])
def test_refuses_short_blobs(key: ReplyKey, size: int) -> None:
    blob = seal_reply(key.public_der, content())
    refused(key, blob[:size], "shorter")


@pytest.mark.parametrize("cut", [26, 26 + 255, 26 + 256, 26 + 256 + 33, 26 + 256 + 49])
def test_refuses_truncated_blobs(key: ReplyKey, cut: int) -> None:
    blob = seal_reply(key.public_der, content(attachments=()))
    refused(key, blob[:cut])


@pytest.mark.parametrize("wrapped_size", [0, 255, 257, 384, 512, 65535])
def test_refuses_a_wrong_wrapped_length(key: ReplyKey, wrapped_size: int) -> None:
    blob = seal_reply(key.public_der, content())
    refused(key, blob[:24] + struct.pack(">H", wrapped_size) + blob[26:], "wrong length")


def test_refuses_another_key(key: ReplyKey, other_key: ReplyKey) -> None:
    refused(other_key, seal_reply(key.public_der, content()), "does not open")


def test_refuses_a_larger_key_size(key: ReplyKey) -> None:
    """A reply sealed to a 3072-bit key has a 384-byte wrapped K: refused by its length."""
    big = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public = big.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    refused(key, seal_reply(public, content()), "wrong length")


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (8, "another reply"),  # reply id: the part's header no longer names it
        (23, "another reply"),
        (26, "does not open"),  # wrapped K
        (26 + 255, "does not open"),
        (26 + 256, "bad magic"),  # part header
        (26 + 256 + 10, "chunk size"),
        (26 + 256 + 14, "another reply"),
        (26 + 256 + 33, "another reply"),
        (26 + 256 + 34, "chunk 0 failed"),
        (26 + 256 + 34 + 65552, "chunk 1 failed"),
        (-17, "chunk 3 failed"),  # the last chunk's last ciphertext byte
        (-1, "chunk 3 failed"),  # its tag
    ],
)
def test_refuses_a_flipped_bit(key: ReplyKey, where: int, reason: str) -> None:
    blob = bytearray(seal_reply(key.public_der, content()))
    assert len(blob) > 26 + 256 + 34 + 3 * 65552  # four chunks
    blob[where] ^= 0x10
    refused(key, bytes(blob), reason)


def test_refuses_appended_bytes(key: ReplyKey) -> None:
    refused(key, seal_reply(key.public_der, content()) + b"\x00", "authenticate")


def test_refuses_another_chunk_size(key: ReplyKey) -> None:
    blob = seal_raw(key.public_der, json.dumps(document()).encode(), chunk_size=1024)
    refused(key, blob, "chunk size")


def test_refuses_a_part_sealed_for_another_id(key: ReplyKey) -> None:
    blob = seal_raw(key.public_der, json.dumps(document()).encode(), reply_id=bytes(16))
    refused(key, blob[:8] + os.urandom(16) + blob[24:], "another reply")


def test_refuses_too_big_before_unwrapping(key: ReplyKey, other_key: ReplyKey) -> None:
    blob = seal_reply(key.public_der, content())
    refused(other_key, blob, "too big", limit=1000)  # the wrong key is never tried


def _bad_documents() -> list[Any]:
    data = base64.b64encode(b"x").decode()

    def attachment(**changes: Any) -> dict[str, Any]:
        return {"filename": "a", "content_type": "text/plain", "data": data, **changes}

    return [
        pytest.param([], id="array"),
        pytest.param("text", id="string"),
        pytest.param(None, id="null"),
        pytest.param(document(format=2), id="format-2"),
        pytest.param(document(format="1"), id="format-string"),
        pytest.param(document(format=True), id="format-true"),
        pytest.param(document(format=1.0), id="format-float"),
        pytest.param({k: v for k, v in document().items() if k != "format"}, id="no-format"),
        pytest.param(
            {k: v for k, v in document().items() if k != "in_reply_to"}, id="no-in-reply-to"
        ),
        pytest.param(document(in_reply_to=ENVELOPE_ID.upper()), id="in-reply-to-upper"),
        pytest.param(document(in_reply_to=ENVELOPE_ID[:-1]), id="in-reply-to-short"),
        pytest.param(document(in_reply_to=ENVELOPE_ID + "\n"), id="in-reply-to-newline"),
        pytest.param(document(subject=None), id="subject-null"),
        pytest.param(document(subject=1), id="subject-number"),
        pytest.param({k: v for k, v in document().items() if k != "text"}, id="no-text"),
        pytest.param(document(text=["a"]), id="text-list"),
        pytest.param(document(text="\ud800"), id="text-lone-surrogate"),
        pytest.param(document(attachments=None), id="attachments-null"),
        pytest.param(document(attachments={}), id="attachments-object"),
        pytest.param(document(attachments=["a"]), id="attachment-string"),
        pytest.param(document(attachments=[attachment(data=None)]), id="data-null"),
        pytest.param(document(attachments=[attachment(data="eA")]), id="data-unpadded"),
        pytest.param(document(attachments=[attachment(data="e A==")]), id="data-space"),
        pytest.param(document(attachments=[attachment(data="eA-_")]), id="data-urlsafe"),
        pytest.param(document(attachments=[attachment(filename=None)]), id="filename-null"),
        pytest.param(document(attachments=[attachment(content_type=7)]), id="content-type-number"),
    ]


@pytest.mark.parametrize("value", _bad_documents())
def test_refuses_a_wrong_json_shape(key: ReplyKey, value: Any) -> None:
    refused(key, seal_document(key.public_der, value))


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"{", id="not-json"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
        pytest.param(b'{"format": 1' + b"1" * 5000 + b"}", id="huge-number"),
    ],
)
def test_refuses_a_plaintext_that_is_not_json(key: ReplyKey, plaintext: bytes) -> None:
    refused(key, seal_raw(key.public_der, plaintext))


# --- what is cleaned --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "check"),
    [
        ("../../etc/passwd", lambda name: name == "_.._etc_passwd"),
        ("..\\..\\boot.ini", lambda name: name == "_.._boot.ini"),
        ("/absolute", lambda name: name == "_absolute"),
        ("a\x00b\r\nc\x7f.txt", lambda name: name == "abc.txt"),
        ("invoice\u202egpj.exe", lambda name: name == "invoicegpj.exe"),
        ("", lambda name: name == "attachment"),
        ("..", lambda name: name == "attachment"),
        (" . ", lambda name: name == "attachment"),
        ("\u00e9t\u00e9 \U0001f510.pdf", lambda name: name == "\u00e9t\u00e9 \U0001f510.pdf"),
        ("x" * 500 + ".pdf", lambda name: len(name) == 200 and name.endswith(".pdf")),
        ("y" * 500, lambda name: name == "y" * 200),
    ],
)
def test_hostile_filenames_are_sanitised(
    key: ReplyKey, filename: str, check: Callable[[str], bool]
) -> None:
    attachment = ReplyAttachment(filename, "text/plain", b"data")
    opened = key.open(
        seal_reply(key.public_der, content(attachments=(attachment,))), max_plaintext=LIMIT
    )
    name = opened.attachments[0].filename
    assert check(name), name
    assert "/" not in name and "\\" not in name and len(name) <= 200
    assert all(ch.isprintable() or ch == " " for ch in name)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("application/PDF", "application/pdf"),
        (" text/plain ", "text/plain"),
        ("image/svg+xml", "image/svg+xml"),
        ("text/plain; charset=utf-8", "application/octet-stream"),
        ("text/html\r\nBcc: victim@example.org", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("nonsense", "application/octet-stream"),
        ("a/" + "b" * 100, "application/octet-stream"),
    ],
)
def test_content_types_are_checked(key: ReplyKey, given: str, kept: str) -> None:
    attachment = ReplyAttachment("a.bin", given, b"data")
    opened = key.open(
        seal_reply(key.public_der, content(attachments=(attachment,))), max_plaintext=LIMIT
    )
    assert opened.attachments[0].content_type == kept


def test_subject_is_one_line_and_text_has_no_stray_controls(key: ReplyKey) -> None:
    sent = content(
        subject="Re: hi\r\nBcc: victim@example.org\t\x00 " + "z" * 1000,
        text="one\r\ntwo\rthree\x00\x1b[31m\tfour\n",
        attachments=(),
    )
    opened = key.open(seal_reply(key.public_der, sent), max_plaintext=LIMIT)
    assert opened.subject.startswith("Re: hi Bcc: victim@example.org z")
    assert len(opened.subject) == 500 and "\r" not in opened.subject and "\n" not in opened.subject
    assert opened.text == "one\ntwo\nthree[31m\tfour\n"
