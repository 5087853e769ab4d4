"""Sealing messages for the envelope tests: seal and commit in one call, find a part's blob."""

from __future__ import annotations

import email.policy
import hashlib
import os
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

from gateway.envelope import opener
from gateway.envelope.seal import SealedEnvelope, Sealer, SealRequest
from gateway.store import AccountRecord, Store
from tests.support.mimegen import set_bodies

SENDER = "alice@example.org"


def seal(
    store: Store,
    raw: bytes,
    recipients: tuple[str, ...] = ("bob@example.net",),
    *,
    account: AccountRecord | None = None,
) -> SealedEnvelope:
    """Seal ``raw`` for ``recipients`` (and the sender's ``account``) and commit it."""
    request = SealRequest(
        raw=raw,
        sender=SENDER,
        queue_id="Q1",
        recipients=recipients,
        idempotency_key=os.urandom(32).hex(),
        sender_account=account,
    )
    sealed = Sealer(store.blobs).seal(request)
    store.commit_envelope(sealed.record)
    return sealed


def blob_bytes(store: Store, envelope_id: str, part_id: int) -> bytes:
    """A part's sealed bytes, as stored."""
    with store.blobs.open(envelope_id, part_id) as blob:
        return blob.read()


def replace_blob(store: Store, envelope_id: str, part_id: int, data: bytes) -> None:
    """Store ``data`` as the part's sealed bytes, the envelope's other parts unchanged:
    what someone who can write the blob directory could do."""
    record = store.get(envelope_id)
    assert record is not None
    parts = {p.part_id: blob_bytes(store, envelope_id, p.part_id) for p in record.parts}
    parts[part_id] = data
    with store.blobs.writer(envelope_id) as writer:
        for number, sealed in parts.items():
            writer.write(number, [sealed])
        writer.commit()


def read(store: Store, unlocked: opener.Unlocked, part_id: int) -> bytes:
    return b"".join(opener.read_part(store, unlocked, part_id))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scratch_left(directory: Path) -> list[Path]:
    """Temporary directories of an export that were not cleaned up."""
    return sorted(directory.glob(".sealgate-open-*"))


def mail(
    *,
    subject: str = "Quarterly figures",
    text: str | None = "Hello Bob,\nthe figures are attached.\n",
    html: str | None = None,
    attachments: Iterable[tuple[str, bytes]] = (),
) -> bytes:
    """A message from Alice to Bob with the given bodies and application/octet-stream files."""
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg["Message-ID"] = "<sealing-test@example.org>"
    set_bodies(msg, text, html)
    for filename, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)
