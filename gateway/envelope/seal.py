"""Sealing one message into an envelope: content model, encrypted parts, readers.

    raw message -> content model (manifest + attachments + original .eml)
                -> each part sealed under its own key from K (gateway.envelope.stream)
                -> K wrapped for every reader (gateway.envelope.keys): under the
                   link's wrapping key for a guest, RSA-OAEP for an account
                -> the envelope's blob written durably, then returned for one database commit

Part ids are fixed: 0 the manifest, 1 the original message, 2.. the
attachments in the order the manifest lists them. The manifest is sealed last
because it carries each attachment's size and SHA-256, which are known only
after streaming it.

Nothing here generates a key pair: a guest costs an HKDF and one AES-GCM
call, an account one RSA-OAEP encryption. This module knows nothing of SMTP or
the database schema beyond the records it hands back; it runs in a worker
thread (blocking I/O and CPU work).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.envelope import keys, stream
from gateway.mail import message
from gateway.mail.content import Content, extract, with_subject
from gateway.store import AccountRecord, BlobStore, EnvelopeRecord, PartRecord, ReaderRecord

MANIFEST_PART = 0
ORIGINAL_PART = 1
FIRST_ATTACHMENT_PART = 2
_SLICE = stream.CHUNK_SIZE
_OVERLAP_FROM = 4 << 20  # bytes: a larger message's original is sealed in a second thread


@dataclass(frozen=True)
class Grant:
    """What the notifier needs for one guest reader; held in memory only.

    The link secret in ``link`` exists nowhere else: once the notification is
    sent and this object is gone, only the recipient can open the envelope.
    """

    address: str
    reader_id: str
    link: keys.Link
    account: bool = False  # sealed to the recipient's account: the link only points to it


@dataclass(frozen=True)
class SealedEnvelope:
    record: EnvelopeRecord
    grants: tuple[Grant, ...]

    @property
    def envelope_id(self) -> str:
        return self.record.envelope_id


@dataclass(frozen=True)
class ReaderAccess:
    """How a guest reader proves who they are (kept in the reader record for the portal)."""

    methods: str = "email"  # comma-separated: "email,sms,access-code"
    access_code_hash: bytes | None = None
    phone: str | None = None


@dataclass(frozen=True)
class SealRequest:
    raw: bytes = field(repr=False)  # the message as received
    sender: str
    queue_id: str
    recipients: tuple[str, ...]  # guest readers, one link each
    idempotency_key: str
    sender_account: AccountRecord | None = None
    # Recipients' accounts by lower-cased address: K is wrapped to these instead of a link.
    recipient_accounts: Mapping[str, AccountRecord] = field(default_factory=dict)
    retention: timedelta = timedelta(days=30)
    decisions: Mapping[str, str] = field(default_factory=dict)  # address -> decision record
    access: Mapping[str, ReaderAccess] = field(default_factory=dict)  # address -> factors
    message_id: str | None = None  # the original's, for threading secure replies
    sender_name: str | None = None  # the original's From display name, cleaned
    # (kind, detail) for the audit trail, committed with the envelope (the sender's expiry).
    events: tuple[tuple[str, str], ...] = ()
    # The Subject field what is sealed has instead of raw's (protection tags removed), put
    # in place while sealing: a copy of a large message would double the memory it takes.
    subject_field: bytes | None = field(default=None, repr=False)


class _Measured:
    """Passes plaintext pieces through while counting bytes and hashing them."""

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self._pieces = pieces
        self.size = 0
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes | memoryview]:
        for piece in self._pieces:
            self.size += len(piece)
            self._hash.update(piece)
            yield piece

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class Sealer:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def seal(self, request: SealRequest) -> SealedEnvelope:
        """Write every sealed part durably and return what the database must record."""
        content_key = keys.random_bytes(keys.KEY_SIZE)
        envelope_bytes = keys.random_bytes(keys.ID_SIZE)
        envelope_id = envelope_bytes.hex()
        readers, grants = _readers(request, content_key, envelope_bytes)
        sealed_message = _as_sealed(request)
        parts = self._write_parts(envelope_bytes, content_key, request, sealed_message)
        now = datetime.now(UTC)
        record = EnvelopeRecord(
            envelope_id=envelope_id,
            created_at=now,
            expires_at=now + request.retention,
            state="sealed",
            sender=request.sender,
            queue_id=request.queue_id,
            idempotency_key=request.idempotency_key,
            original_size=sum(len(piece) for piece in sealed_message),
            sealed_size=sum(part.sealed_size for part in parts),
            message_id=request.message_id,
            sender_name=request.sender_name,
            parts=tuple(parts),
            readers=tuple(readers),
        )
        return SealedEnvelope(record, tuple(grants))

    def _write_parts(
        self,
        envelope: bytes,
        content_key: bytes,
        request: SealRequest,
        sealed_message: list[bytes | memoryview],
    ) -> list[PartRecord]:
        """Seal the original, each attachment, then the manifest that lists them, into
        the envelope's blob (durable when this returns).

        A large message's original is sealed in a second thread while this one
        decodes and seals the attachments: hashing, AES-GCM, file writes and
        fsync release the GIL for large buffers, so on two cores they overlap.
        Its sealed size is known from its length, so its room in the blob is
        reserved first. ``sealed_message`` is the original as sealed, in pieces.
        """
        size = sum(len(piece) for piece in sealed_message)
        envelope_id = envelope.hex()
        parts: list[PartRecord] = []
        with self.blobs.writer(envelope_id) as blob:

            def write(part_id: int, kind: str, pieces: Iterable[bytes | memoryview]) -> _Measured:
                measured = _Measured(pieces)
                header = stream.PartHeader(envelope, part_id)
                written = blob.write(part_id, stream.seal_part(content_key, header, measured))
                parts.append(PartRecord(part_id, kind, measured.size, written))
                return measured

            def sealed_original() -> _Measured:
                return write(ORIGINAL_PART, "original", _slices(sealed_message))

            if size < _OVERLAP_FROM:
                original = sealed_original()
                content = _content(request)
                listed = _write_attachments(content, write)
            else:
                blob.reserve(ORIGINAL_PART, stream.sealed_size(size))
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sealgate-seal") as pool:
                    sealing = pool.submit(sealed_original)
                    content = _content(request)
                    listed = _write_attachments(content, write)
                    original = sealing.result()
            write(MANIFEST_PART, "manifest", [_manifest(envelope_id, content, listed, original)])
            blob.commit()
        return sorted(parts, key=lambda part: part.part_id)


def _write_attachments(
    content: Content, write: Callable[[int, str, Iterable[bytes | memoryview]], _Measured]
) -> list[dict[str, object]]:
    """Seal each attachment as its own part; the manifest's entries for them."""
    listed: list[dict[str, object]] = []
    for offset, attachment in enumerate(content.attachments):
        part_id = FIRST_ATTACHMENT_PART + offset
        measured = write(part_id, "attachment", attachment.chunks(_SLICE))
        listed.append(
            {
                "part": part_id,
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "disposition": attachment.disposition,
                "content_id": attachment.content_id,
                "size": measured.size,
                "sha256": measured.sha256,
            }
        )
    return listed


def _readers(
    request: SealRequest, content_key: bytes, envelope: bytes
) -> tuple[list[ReaderRecord], list[Grant]]:
    """A reader with a fresh link per recipient, and the sender's account.

    A recipient with an account gets K wrapped to the account's key, and a link that
    only points to the message (it opens after the account's sign-in, whose second
    factor stands in for any the rule asks for), unless the rule demands an SMS to a
    number the sender gave: then the recipient stays a format v2 guest.
    """
    readers: list[ReaderRecord] = []
    grants: list[Grant] = []
    for address in request.recipients:
        link = keys.Link.new()
        reader_id = keys.random_bytes(keys.ID_SIZE)
        access = request.access.get(address, ReaderAccess())
        account = request.recipient_accounts.get(address.lower())
        if account is not None and not _sms_demanded(access):
            wrapped = keys.wrap_content_key(account.public_key, content_key)
            kind = "account"
        else:
            wrapped = keys.wrap_for_link(link, content_key, envelope, reader_id)
            kind, account = "guest", None
        readers.append(
            ReaderRecord(
                reader_id=reader_id.hex(),
                kind=kind,
                address=address,
                wrapped_key=wrapped,
                encrypted_private_key=None,
                public_key=None,
                link_id_hash=link.id_hash,
                methods=access.methods,
                access_code_hash=access.access_code_hash,
                phone=access.phone,
            )
        )
        grants.append(Grant(address, reader_id.hex(), link, account=account is not None))
    account = request.sender_account
    if account is not None:
        readers.append(
            ReaderRecord(
                reader_id=keys.random_bytes(keys.ID_SIZE).hex(),
                kind="account",
                address=account.address,
                wrapped_key=keys.wrap_content_key(account.public_key, content_key),
                encrypted_private_key=None,
                public_key=None,
                link_id_hash=None,
            )
        )
    return readers, grants


def _sms_demanded(access: ReaderAccess) -> bool:
    """Whether the rule asks for an SMS to a number the sender gave, and nothing else."""
    return bool(access.phone) and access.methods.split(",") == ["sms"]


def idempotency_key(secret: bytes, sender: str, recipients: Iterable[str], data: bytes) -> str:
    """HMAC-SHA256 over the envelope and the message: a retry gets the same key.

    Keyed with a secret kept outside the database, so that whoever holds the
    database cannot confirm a guess of a message's content from its key.
    """
    digest = hmac.new(secret, digestmod=hashlib.sha256)
    for item in (sender, *sorted(recipients)):  # the envelope exactly as the MTA retries it
        encoded = item.encode("utf-8", "surrogateescape")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    digest.update(data)
    return digest.hexdigest()


def _as_sealed(request: SealRequest) -> list[bytes | memoryview]:
    """The original message as it is sealed, in pieces (no copy of its body)."""
    if request.subject_field is None:
        return [request.raw]
    return message.replaced_field(request.raw, "subject", request.subject_field)


def _content(request: SealRequest) -> Content:
    """The content model of the message as it is sealed."""
    content = extract(request.raw)  # the body is the same; only the subject may differ
    if request.subject_field is None:
        return content
    return with_subject(content, request.subject_field)


def _slices(pieces: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """The pieces cut into chunks of exactly ``_SLICE`` bytes (the last may be shorter):
    views where a chunk lies within one piece, so that sealing reads the message without
    copying it; only a chunk across two pieces is joined."""
    pending = bytearray()  # the start of a chunk that continues in the next piece
    for piece in pieces:
        view = memoryview(piece)
        if pending:
            taken = _SLICE - len(pending)
            pending += view[:taken]
            view = view[taken:]
            if len(pending) < _SLICE:
                continue
            yield bytes(pending)
            pending.clear()
        whole = len(view) - len(view) % _SLICE
        for start in range(0, whole, _SLICE):
            yield view[start : start + _SLICE]
        pending += view[whole:]
    if pending:
        yield bytes(pending)


def _manifest(
    envelope_id: str, content: Content, attachments: list[dict[str, object]], original: _Measured
) -> bytes:
    document = {
        "format": stream.VERSION,
        "envelope_id": envelope_id,
        "headers": content.headers.as_dict(),
        "text": content.text,
        "html": content.html,
        "attachments": attachments,
        "original": {
            "part": ORIGINAL_PART,
            "filename": "message.eml",
            "content_type": "message/rfc822",
            "size": original.size,
            "sha256": original.sha256,
        },
        "problems": content.problems,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
