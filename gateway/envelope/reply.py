"""Secure replies: a recipient's answer, sealed in the browser to the gateway's reply key.

    reply blob  = "SGREPLY1" || reply id (16) || uint16be(len(wrapped K)) || wrapped K
                  || sealed part
    wrapped K   = RSA-OAEP-SHA256(reply public key, K), K = 32 random bytes
    sealed part = format v1 (docs/envelope-format.md §5) with envelope id = reply id, part id 0
    plaintext   = UTF-8 JSON {"format": 1, "in_reply_to", "subject", "text", "attachments": [...]}

The portal only stores and forwards the blob; the gateway opens it with the
private reply key and mails the content to the original sender. The reader's
browser does the sealing (sealed.js ``sealReply``), so everything in a blob is
untrusted input: :meth:`ReplyKey.open` checks sizes before any cryptography,
refuses anything malformed with :class:`ReplyError`, and cleans the names and
types that end up in mail headers. docs/envelope-format.md "Secure replies" is
the byte-level description.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.envelope import keys, stream
from gateway.mail.content import clean_filename

MAGIC = b"SGREPLY1"
FORMAT = 1
REPLY_ID_SIZE = 16
MIN_RSA_BITS = 2048
MAX_SUBJECT = 500
_PREFIX = struct.Struct(">8s16sH")  # magic, reply id, length of the wrapped K
_PART_ID = 0
_FALLBACK_FILENAME = "attachment"
_FALLBACK_TYPE = "application/octet-stream"
_ENVELOPE_ID = re.compile(r"[0-9a-f]{32}")
_MIME_NAME = r"[A-Za-z0-9!#$&^_.+-]{1,63}"  # RFC 6838 restricted-name, roughly
_CONTENT_TYPE = re.compile(rf"{_MIME_NAME}/{_MIME_NAME}")
_TEXT_DROPPED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab, LF, CR


class ReplyError(Exception):
    """A reply blob is malformed, too big, or does not open with this key.

    The message says what is wrong with the blob, never what it contains.
    """


@dataclass(frozen=True)
class ReplyAttachment:
    filename: str  # sanitised: no path separators or control characters, at most 200 characters
    content_type: str  # "type/subtype", lower-case; application/octet-stream if it was not one
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ReplyContent:
    in_reply_to: str  # the envelope id (hex) the reader answered; the caller checks it
    subject: str = field(repr=False)
    text: str = field(repr=False)
    attachments: tuple[ReplyAttachment, ...] = ()


class ReplyKey:
    """The gateway's RSA key pair for secure replies; the public half goes to browsers."""

    __slots__ = ("_private_der", "_wrapped_size", "public_der")

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the reply key must have at least {MIN_RSA_BITS} bits")
        self._private_der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._wrapped_size = (private_key.key_size + 7) // 8
        self.public_der: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"ReplyKey(bits={self._wrapped_size * 8})"

    @classmethod
    def from_pem(cls, data: bytes) -> ReplyKey:
        """An unencrypted PEM private key; ValueError unless it is RSA of at least 2048 bits."""
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not an unencrypted PEM private key") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("the reply key is not an RSA key")
        return cls(private_key)

    @classmethod
    def load_or_create(cls, path: Path, bits: int = 3072) -> ReplyKey:
        """Load the key at ``path``, or make one there (PEM PKCS#8, mode 0600).

        A new key is written to a temporary file and linked into place, which
        fails if another process got there first: then that process's key is
        loaded, so concurrent starts agree on one key and a reader never sees
        a half-written file.
        """
        if path.exists():
            return cls.from_pem(path.read_bytes())
        if bits not in keys.RSA_SIZES:
            raise ValueError(f"RSA key size must be one of {keys.RSA_SIZES}")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
        except FileExistsError:
            return cls.from_pem(path.read_bytes())
        finally:
            temporary.unlink(missing_ok=True)
        return cls(private_key)

    def open(self, blob: bytes, *, max_plaintext: int) -> ReplyContent:
        """The content of a reply blob; ReplyError on anything wrong.

        ``max_plaintext`` bounds the JSON document (attachments are base64 in
        it, so about 4/3 of their size); a larger blob is refused before any
        decryption.
        """
        reply_id, wrapped, sealed = self._split(blob, max_plaintext)
        try:
            content_key = keys.unwrap_content_key(self._private_der, wrapped)
        except keys.UnlockError:
            raise ReplyError("the reply's key does not open with this reply key") from None
        plaintext = _open_sealed(content_key, reply_id, sealed, max_plaintext)
        return _parse(plaintext)

    def open_link(self, sealed: bytes) -> keys.Link:
        """A held recipient's link (:func:`seal_link`); ReplyError if it does not open."""
        private_key = serialization.load_der_private_key(self._private_der, password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        try:
            plain = private_key.decrypt(sealed, keys.oaep())
        except ValueError:
            raise ReplyError("the held link does not open with this reply key") from None
        if len(plain) != keys.ID_SIZE + keys.KEY_SIZE:
            raise ReplyError("the held link has the wrong length")
        return keys.Link(plain[: keys.ID_SIZE], plain[keys.ID_SIZE :])

    def _split(self, blob: bytes, max_plaintext: int) -> tuple[bytes, bytes, bytes]:
        """Reply id, wrapped K and sealed part, after every check that needs no key."""
        if len(blob) < _PREFIX.size:
            raise ReplyError("the reply is shorter than its header")
        magic, reply_id, wrapped_size = _PREFIX.unpack_from(blob)
        if magic != MAGIC:
            raise ReplyError("not a secure reply (bad magic)")
        if wrapped_size != self._wrapped_size:
            raise ReplyError("the reply's wrapped key has the wrong length for this reply key")
        start = _PREFIX.size + wrapped_size
        wrapped, sealed = blob[_PREFIX.size : start], blob[start:]
        if len(sealed) < stream.HEADER_SIZE + stream.TAG_SIZE:
            raise ReplyError("the reply is truncated")
        if len(sealed) > stream.sealed_size(max_plaintext):
            raise ReplyError("the reply is too big")
        try:
            header = stream.PartHeader.decode(sealed[: stream.HEADER_SIZE])
        except stream.SealedFormatError as error:
            raise ReplyError(f"the reply's sealed part is not format v1: {error}") from None
        if header.chunk_size != stream.CHUNK_SIZE:
            raise ReplyError("the reply's sealed part has an unexpected chunk size")
        if header.envelope_id != reply_id or header.part_id != _PART_ID:
            raise ReplyError("the reply's sealed part belongs to another reply")
        return reply_id, wrapped, sealed


def seal_link(public_der: bytes, link: keys.Link) -> bytes:
    """A held recipient's link (id and secret), kept until the sender releases or cancels:
    RSA-OAEP-SHA256 to the reply key. Whoever holds the reply key and the database can
    open a held envelope until then; the sealed link is deleted once the sender decides."""
    public_key = serialization.load_der_public_key(public_der)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the reply key is not an RSA key")
    return public_key.encrypt(link.link_id + link.secret, keys.oaep())


def seal_reply(public_der: bytes, content: ReplyContent) -> bytes:
    """The Python twin of sealed.js ``sealReply`` (tests, command line)."""
    content_key = keys.random_bytes(keys.KEY_SIZE)
    reply_id = keys.random_bytes(REPLY_ID_SIZE)
    wrapped = keys.wrap_content_key(public_der, content_key)
    document = {
        "format": FORMAT,
        "in_reply_to": content.in_reply_to,
        "subject": content.subject,
        "text": content.text,
        "attachments": [
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "data": base64.b64encode(attachment.data).decode("ascii"),
            }
            for attachment in content.attachments
        ],
    }
    plaintext = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    header = stream.PartHeader(reply_id, _PART_ID)
    sealed = b"".join(stream.seal_part(content_key, header, [plaintext]))
    return _PREFIX.pack(MAGIC, reply_id, len(wrapped)) + wrapped + sealed


# --- opening ---------------------------------------------------------------------


def _open_sealed(content_key: bytes, reply_id: bytes, sealed: bytes, max_plaintext: int) -> bytes:
    plaintext = bytearray()
    try:
        for chunk in stream.open_part(
            content_key, io.BytesIO(sealed), envelope_id=reply_id, part_id=_PART_ID
        ):
            plaintext += chunk
            if len(plaintext) > max_plaintext:
                raise ReplyError("the reply is too big")
    except stream.SealedFormatError as error:
        raise ReplyError(f"the reply does not authenticate: {error}") from None
    return bytes(plaintext)


def _parse(plaintext: bytes) -> ReplyContent:
    try:
        document = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReplyError("the reply is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise ReplyError("the reply is not a JSON object")
    version = document.get("format")
    if type(version) is not int or version != FORMAT:
        raise ReplyError("the reply is not format 1")
    in_reply_to = _string(document, "in_reply_to")
    if not _ENVELOPE_ID.fullmatch(in_reply_to):
        raise ReplyError("the reply's in_reply_to is not an envelope id")
    attachments = document.get("attachments")
    if not isinstance(attachments, list):
        raise ReplyError("the reply's attachments are not a list")
    return ReplyContent(
        in_reply_to=in_reply_to,
        subject=_clean_subject(_string(document, "subject")),
        text=_clean_text(_string(document, "text")),
        attachments=tuple(_attachment(entry, index) for index, entry in enumerate(attachments)),
    )


def _attachment(entry: Any, index: int) -> ReplyAttachment:
    if not isinstance(entry, dict):
        raise ReplyError(f"reply attachment {index} is not a JSON object")
    try:
        data = base64.b64decode(_string(entry, "data", index), validate=True)
    except (binascii.Error, ValueError):
        raise ReplyError(f"reply attachment {index} is not valid base64") from None
    filename = clean_filename(_string(entry, "filename", index)) or _FALLBACK_FILENAME
    content_type = _string(entry, "content_type", index).strip().lower()
    if not _CONTENT_TYPE.fullmatch(content_type):
        content_type = _FALLBACK_TYPE
    return ReplyAttachment(filename=filename, content_type=content_type, data=data)


def _string(document: dict[str, Any], key: str, index: int | None = None) -> str:
    """``document[key]`` if it is a string of Unicode scalar values (no lone surrogates)."""
    value = document.get(key)
    where = "the reply's" if index is None else f"reply attachment {index}'s"
    if not isinstance(value, str):
        raise ReplyError(f"{where} {key} is missing or not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ReplyError(f"{where} {key} is not valid Unicode") from None
    return value


def _clean_subject(subject: str) -> str:
    """One line for a Subject header: controls (CR, LF included) become spaces."""
    spaced = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in subject)
    return " ".join(spaced.split())[:MAX_SUBJECT]


def _clean_text(text: str) -> str:
    """Line ends as "\\n", and no control characters but tab and newline."""
    return _TEXT_DROPPED.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
