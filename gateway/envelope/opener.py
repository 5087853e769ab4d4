"""Opening an envelope with what a reader holds: a link, or an account password.

This is the Python twin of what the recipient's browser does with WebCrypto
(same primitives, same order): find the reader by the link id's hash, derive
the wrapping key from the secret in the link's fragment, unwrap K, open the
parts. A format v1 guest (a key pair of its own) goes through one more step:
the secret's KEK opens the reader's private key, which unwraps K. ``sealgate envelope open``
and the tests use it; the server itself never can, lacking the secret.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.envelope import keys, stream
from gateway.envelope.seal import MANIFEST_PART
from gateway.store import LIVE_STATES, EnvelopeRecord, ReaderRecord, Store

_NAME_BYTES = 240  # of the 255 a Linux file name may have, leaving room for " (NN)"


class OpenError(Exception):
    """The envelope cannot be opened with what was given; the message says why."""


@dataclass(frozen=True)
class Unlocked:
    envelope: EnvelopeRecord
    reader: ReaderRecord
    content_key: bytes = field(repr=False)


def unlock_with_link(store: Store, link: keys.Link, envelope_id: str | None = None) -> Unlocked:
    found = store.reader_by_link(link.id_hash)
    if found is None:
        raise OpenError("no envelope for this link (wrong link, or removed after expiry)")
    envelope, reader = found
    if envelope_id is not None and envelope.envelope_id != envelope_id:
        raise OpenError("this link belongs to another envelope")
    _require_live(envelope)
    if reader.wrapped_key is None:
        raise OpenError("the reader's keys were deleted")
    try:
        content_key = guest_content_key(envelope, reader, link)
    except keys.UnlockError as error:
        raise OpenError(str(error)) from None
    return Unlocked(envelope, reader, content_key)


def guest_content_key(envelope: EnvelopeRecord, reader: ReaderRecord, link: keys.Link) -> bytes:
    """K for a guest reader: format v2 directly, v1 through the reader's own key pair."""
    assert reader.wrapped_key is not None
    reader_id = bytes.fromhex(reader.reader_id)
    if reader.encrypted_private_key is None:
        return keys.unwrap_for_link(
            link, reader.wrapped_key, bytes.fromhex(envelope.envelope_id), reader_id
        )
    private_der = keys.decrypt_private_key(link.kek(), reader.encrypted_private_key, reader_id)
    return keys.unwrap_content_key(private_der, reader.wrapped_key)


def unlock_with_password(store: Store, envelope_id: str, address: str, password: str) -> Unlocked:
    account = store.get_account(address)
    envelope = store.get(envelope_id)
    if account is None or envelope is None:
        raise OpenError("no such envelope or account")
    derived = keys.account_keys(password, account.kdf_salt, account.kdf_iterations)
    try:
        PasswordHasher().verify(account.login_verifier, derived.login_secret)
    except (VerificationError, InvalidHashError):
        raise OpenError("wrong password") from None
    _require_live(envelope)
    reader = next(
        (r for r in envelope.readers if r.kind == "account" and r.address == account.address),
        None,
    )
    if reader is None or reader.wrapped_key is None:
        raise OpenError(f"{account.address} is not a reader of this envelope")
    owner = account.address.encode("utf-8")
    try:
        private_der = keys.decrypt_private_key(derived.kek, account.encrypted_private_key, owner)
        content_key = keys.unwrap_content_key(private_der, reader.wrapped_key)
    except keys.UnlockError as error:
        raise OpenError(str(error)) from None
    return Unlocked(envelope, reader, content_key)


def _require_live(envelope: EnvelopeRecord) -> None:
    if envelope.state not in LIVE_STATES:
        raise OpenError(f"the envelope was {envelope.state}; its keys are deleted")
    if not envelope.is_live():
        raise OpenError("the envelope expired; its keys are deleted at the next sweep")


def read_part(store: Store, unlocked: Unlocked, part_id: int) -> Iterator[bytes]:
    """Plaintext chunks of one part; raises stream.SealedFormatError on tampering."""
    envelope_bytes = bytes.fromhex(unlocked.envelope.envelope_id)
    with store.blobs.open(unlocked.envelope.envelope_id, part_id) as source:
        yield from stream.open_part(
            unlocked.content_key, source, envelope_id=envelope_bytes, part_id=part_id
        )


def read_manifest(store: Store, unlocked: Unlocked) -> dict[str, Any]:
    data = b"".join(read_part(store, unlocked, MANIFEST_PART))
    manifest: dict[str, Any] = json.loads(data)
    if manifest.get("format") != stream.VERSION:
        raise OpenError(f"unsupported manifest format {manifest.get('format')!r}")
    if manifest.get("envelope_id") != unlocked.envelope.envelope_id:
        raise OpenError("the manifest belongs to another envelope")
    return manifest


def export(store: Store, unlocked: Unlocked, target: Path) -> list[Path]:
    """Write manifest.json, body.txt, body.html, message.eml and attachments/ to ``target``.

    All or nothing: everything is written and checked (each attachment's
    SHA-256 against the manifest) in a temporary directory beside ``target``,
    which is renamed into place only when the whole envelope opened.
    """
    if target.exists():
        raise OpenError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".sealgate-open-", dir=target.parent))
    try:
        manifest = read_manifest(store, unlocked)
        (scratch / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        if manifest.get("text") is not None:
            (scratch / "body.txt").write_text(manifest["text"], encoding="utf-8")
        if manifest.get("html") is not None:
            (scratch / "body.html").write_text(manifest["html"], encoding="utf-8")
        _write_part(store, unlocked, manifest["original"], scratch / "message.eml")
        names: set[str] = set()
        for entry in manifest["attachments"]:
            name = _unique(_safe_name(entry["filename"]), names)
            _write_part(store, unlocked, entry, scratch / "attachments" / name)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return sorted(path for path in target.rglob("*") if path.is_file())


def _write_part(store: Store, unlocked: Unlocked, entry: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as output:
        for chunk in read_part(store, unlocked, int(entry["part"])):
            digest.update(chunk)
            output.write(chunk)
    if digest.hexdigest() != entry["sha256"]:
        raise OpenError(f"part {entry['part']} does not match its SHA-256 in the manifest")


def _safe_name(name: str) -> str:
    """A file name that stays in its directory and fits the file system's 255 bytes,
    with room for the " (2)" that :func:`_unique` may add."""
    name = unicodedata.normalize("NFC", name).replace("/", "_").replace("\\", "_")
    name = "".join(ch for ch in name if ch.isprintable()).strip(". ")
    stem, dot, suffix = name.rpartition(".")
    if not (dot and stem and len(suffix.encode()) <= 16):
        stem, suffix = name, ""
    budget = _NAME_BYTES - len(suffix.encode()) - (1 if suffix else 0)
    if len(stem.encode()) > budget:
        stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(". ")
    if not stem:
        return "attachment"
    return f"{stem}.{suffix}" if suffix else stem


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    stem, dot, suffix = name.rpartition(".")
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem} ({number}).{suffix}" if dot and stem else f"{name} ({number})"
    taken.add(candidate.lower())
    return candidate
