"""Round trips through the sealed envelope: what a reader opens is exactly what was sealed.

Sealed with :class:`Sealer`, committed to the store, opened with the reader's link (or the
account password) through :mod:`gateway.envelope.opener`:

- the manifest carries what :func:`extract` makes of the raw message (headers, text, the
  sanitised HTML, attachment descriptions, problems), and each attachment part holds the
  attachment's bytes, with the manifest's size and SHA-256 matching them;
- the original part is the raw message, byte for byte;
- every reader's link opens its own reader record, none opens another reader's or another
  envelope's, and the sender's account opens with its password;
- ``export`` writes exactly the envelope's files into the target directory and never outside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.envelope import keys, opener, stream
from gateway.envelope import seal as seal_module
from gateway.envelope.account import create_account
from gateway.envelope.seal import SealedEnvelope, Sealer, SealRequest
from gateway.mail import outgoing
from gateway.mail.content import extract
from gateway.store import AccountRecord, FileBlobStore, Store
from tests.support.mimegen import Generated, generated_messages
from tests.support.sealing import (
    blob_bytes,
    mail,
    read,
    replace_blob,
    scratch_left,
    seal,
    sha256,
)

MAIL = Path(__file__).parent / "fixtures" / "mail"
FIXTURES = sorted(path.name for path in MAIL.glob("*.eml"))
# The fixtures extract() reports problems for; every other one must have none.
MALFORMED = {
    "charset_unknown.eml",
    "empty.eml",
    "garbage_headers.eml",
    "latin1_declared_utf8.eml",
    "no_boundary_param.eml",
    "no_charset_latin1.eml",
    "unterminated_boundary.eml",
}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One SQLite store for a module's property tests (hypothesis runs many examples in one
    test, so a function-scoped store would be shared by them anyway)."""
    root = tmp_path_factory.mktemp("roundtrip")
    shared = Store(f"sqlite:///{root / 'sealgate.db'}", FileBlobStore(root / "blobs"))
    shared.migrate()
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def account() -> AccountRecord:
    """The sender's account; made once, PBKDF2 with 600,000 iterations is slow on purpose."""
    return create_account("Alice@Example.org", PASSWORD, iterations=600_000)


@dataclass
class Opened:
    unlocked: opener.Unlocked
    manifest: dict[str, Any]
    attachments: list[bytes]


def open_and_check(store: Store, sealed: SealedEnvelope, raw: bytes) -> Opened:
    """Open ``sealed`` with its first link; check it against ``extract(raw)`` and the record."""
    unlocked = opener.unlock_with_link(store, sealed.grants[0].link)
    manifest = opener.read_manifest(store, unlocked)
    content = extract(raw)

    assert manifest["format"] == stream.VERSION
    assert manifest["envelope_id"] == sealed.envelope_id
    assert manifest["headers"] == content.headers.as_dict()
    assert manifest["text"] == content.text
    assert manifest["html"] == content.html  # extract() returns the sanitised HTML
    assert manifest["problems"] == content.problems

    assert manifest["original"] == {
        "part": 1,
        "filename": "message.eml",
        "content_type": "message/rfc822",
        "size": len(raw),
        "sha256": sha256(raw),
    }
    assert read(store, unlocked, manifest["original"]["part"]) == raw

    entries = manifest["attachments"]
    assert [entry["part"] for entry in entries] == list(range(2, 2 + len(content.attachments)))
    opened = []
    for entry, source in zip(entries, content.attachments, strict=True):
        data = read(store, unlocked, entry["part"])
        assert data == b"".join(source.chunks())
        assert (entry["size"], entry["sha256"]) == (len(data), sha256(data))
        described = (entry["filename"], entry["content_type"])
        assert described == (source.filename, source.content_type)
        assert (entry["disposition"], entry["content_id"]) == (
            source.disposition,
            source.content_id,
        )
        opened.append(data)

    # The database describes the blobs that were written, and they have the format's size.
    stored = store.get(sealed.envelope_id)
    assert stored is not None
    assert stored.parts == sealed.record.parts
    assert [(p.part_id, p.kind) for p in stored.parts] == [(0, "manifest"), (1, "original")] + [
        (entry["part"], "attachment") for entry in entries
    ]
    plaintext_sizes = {
        0: len(read(store, unlocked, 0)),
        1: len(raw),
        **{entry["part"]: entry["size"] for entry in entries},
    }
    for part in stored.parts:
        assert part.plaintext_size == plaintext_sizes[part.part_id]
        assert part.sealed_size == stream.sealed_size(part.plaintext_size)
        assert len(blob_bytes(store, sealed.envelope_id, part.part_id)) == part.sealed_size
    assert stored.original_size == len(raw)
    assert stored.sealed_size == sum(part.sealed_size for part in stored.parts)
    return Opened(unlocked, manifest, opened)


# --- the awkward real-world fixtures, on both backends ----------------------------------


def test_the_fixture_list_is_complete():
    assert len(FIXTURES) >= 20
    assert set(FIXTURES) >= MALFORMED


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_round_trip(name: str, store: Store):
    raw = (MAIL / name).read_bytes()
    sealed = seal(store, raw)
    opened = open_and_check(store, sealed, raw)
    assert bool(opened.manifest["problems"]) == (name in MALFORMED), opened.manifest["problems"]


# --- generated MIME ------------------------------------------------------------------------

ASCII_WORD = st.text(st.characters(min_codepoint=0x30, max_codepoint=0x7A, categories=["L", "N"]),
                     min_size=1, max_size=8)  # fmt: skip
NON_ASCII_WORD = st.text(
    st.characters(min_codepoint=0x80, categories=["L", "N", "So"]), min_size=1, max_size=8
)
WORD = ASCII_WORD | NON_ASCII_WORD
# At least one non-ASCII word, so that every name needs RFC 2231 (or RFC 2047) encoding.
FILENAME = st.builds(
    lambda words, special, extension: "-".join([*words, special]) + extension,
    st.lists(WORD, max_size=3),
    NON_ASCII_WORD,
    st.sampled_from([".pdf", ".bin", ".tar.gz", ".дата", ""]),
)
HTML = st.lists(
    st.sampled_from(["<p>", "</p>", "<b>fett</b>", '<img src="https://t.example/x">',
                     "<script>alert(1)</script>", '<a href="https://example.org">lien</a>',
                     "<table><tr><td>ячейка</td></tr></table>", "&amp;", "<br>", "<p>Grüße"])
    | WORD,
    max_size=12,
).map(" ".join)  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    ["application/octet-stream", "application/pdf", "image/png", "application/zip"]
)


def seeded_bytes(size: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(8, "big")).digest(size)


# Small random bytes, or sizes around the 64 KiB chunk boundary (made from a seed: cheap).
ATTACHMENT_DATA = st.binary(max_size=3000) | st.builds(
    seeded_bytes, st.sampled_from([65535, 65536, 65537, 140_000]), st.integers(0, 2**32 - 1)
)


MESSAGES = generated_messages(
    words=WORD,
    html=HTML,
    filenames=FILENAME,
    content_types=CONTENT_TYPES,
    data=ATTACHMENT_DATA,
    max_levels=2,
    max_files=3,
    max_subject_words=6,
    to="bob@example.net",
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_generated_messages_round_trip(sqlite_store: Store, generated: Generated):
    sealed = seal(sqlite_store, generated.raw)
    opened = open_and_check(sqlite_store, sealed, generated.raw)
    entries = opened.manifest["attachments"]
    # Against what the generator attached, not only against extract().
    assert opened.attachments == [data for _, _, data in generated.attachments]
    assert [(e["filename"], e["content_type"]) for e in entries] == [
        (name, content_type) for name, content_type, _ in generated.attachments
    ]


# --- several readers ------------------------------------------------------------------------


def test_each_reader_opens_its_own_record_and_nothing_else(
    store: Store, account: AccountRecord
):
    store.add_account(account)
    recipients = ("bob@example.net", "carol@example.com", "dave@example.de")
    raw = mail(subject="For three", attachments=[("figures.bin", b"\x00\x01figures" * 100)])
    sealed = seal(store, raw, recipients, account=account)
    other = seal(store, mail(subject="Another one"), recipients, account=account)

    assert [grant.address for grant in sealed.grants] == list(recipients)
    links = [grant.link for grant in sealed.grants]
    assert len({link.link_id for link in links}) == 3
    assert len({link.secret for link in links}) == 3
    assert len({grant.reader_id for grant in sealed.grants}) == 3
    readers = store.get(sealed.envelope_id).readers
    assert [(r.kind, r.address) for r in readers] == [
        *(("guest", address) for address in recipients),
        ("account", "alice@example.org"),
    ]

    content_keys = set()
    for grant in sealed.grants:
        unlocked = opener.unlock_with_link(store, grant.link, sealed.envelope_id)
        assert unlocked.envelope.envelope_id == sealed.envelope_id
        assert (unlocked.reader.reader_id, unlocked.reader.address) == (
            grant.reader_id,
            grant.address,
        )
        assert opener.read_manifest(store, unlocked)["headers"]["subject"] == "For three"
        content_keys.add(unlocked.content_key)
    assert len(content_keys) == 1  # one K, wrapped for every reader

    # A secret opens only its own reader: not another reader's id of this envelope ...
    for holder in links:
        for reader in links:
            if holder is not reader:
                with pytest.raises(opener.OpenError, match="does not open"):
                    opener.unlock_with_link(store, keys.Link(reader.link_id, holder.secret))
    # ... nor any reader of another envelope, and a link names its own envelope only.
    for holder in links:
        for reader in other.grants:
            with pytest.raises(opener.OpenError, match="does not open"):
                opener.unlock_with_link(store, keys.Link(reader.link.link_id, holder.secret))
        with pytest.raises(opener.OpenError, match="another envelope"):
            opener.unlock_with_link(store, holder, other.envelope_id)
    # Nor does this envelope's K open a part of the other envelope.
    unlocked = opener.unlock_with_link(store, links[0])
    theirs = opener.unlock_with_link(store, other.grants[0].link)
    assert theirs.content_key != unlocked.content_key
    stolen = opener.Unlocked(theirs.envelope, theirs.reader, unlocked.content_key)
    with pytest.raises(stream.SealedFormatError, match="chunk 0 failed authentication"):
        read(store, stolen, 0)

    # The sender's account opens with its password (the address in any case).
    mine = opener.unlock_with_password(store, sealed.envelope_id, "ALICE@example.org", PASSWORD)
    assert mine.reader.kind == "account"
    assert mine.content_key == unlocked.content_key
    assert opener.read_manifest(store, mine) == opener.read_manifest(store, unlocked)
    with pytest.raises(opener.OpenError, match="wrong password"):
        opener.unlock_with_password(store, sealed.envelope_id, "alice@example.org", PASSWORD + "!")


# --- large attachments and export -----------------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_5_mb_attachment_round_trips_and_exports(store: Store, tmp_path: Path):
    data = seeded_bytes(5 * 1024 * 1024, 5)
    raw = mail(text="Five megabytes.\n", html="<p>Five <b>megabytes</b>.</p>",
               attachments=[("big.bin", data)])  # fmt: skip
    sealed = seal(store, raw)
    opened = open_and_check(store, sealed, raw)
    assert opened.attachments == [data]
    (entry,) = opened.manifest["attachments"]
    pieces = list(opener.read_part(store, opened.unlocked, entry["part"]))
    assert len(pieces) == 80 and all(len(piece) == stream.CHUNK_SIZE for piece in pieces)
    assert len(blob_bytes(store, sealed.envelope_id, entry["part"])) == (
        stream.HEADER_SIZE + len(data) + 80 * stream.TAG_SIZE
    )

    target = tmp_path / "out" / "envelope"
    written = opener.export(store, opened.unlocked, target)
    assert [path.relative_to(target).as_posix() for path in written] == [
        "attachments/big.bin",
        "body.html",
        "body.txt",
        "manifest.json",
        "message.eml",
    ]
    assert (target / "attachments" / "big.bin").read_bytes() == data
    assert (target / "message.eml").read_bytes() == raw
    assert json.loads((target / "manifest.json").read_text("utf-8")) == opened.manifest
    assert (target / "body.txt").read_text("utf-8") == opened.manifest["text"]
    assert (target / "body.html").read_text("utf-8") == opened.manifest["html"]
    assert scratch_left(target.parent) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("attachment", [1000, 5 * 1024 * 1024], ids=["small", "large"])
def test_the_tags_leave_the_subject_of_what_is_sealed_without_a_copy(
    store: Store, attachment: int
):
    """The sealer puts the tagless Subject field in place while it reads the message (a
    large one's original in a second thread): what is sealed is the message with that field,
    and the manifest shows its subject."""
    data = seeded_bytes(attachment, 7)
    raw = mail(subject="[secure] Cijfers \u00e9t\u00e9 [SECURE]", attachments=[("big.bin", data)])
    field = outgoing.subject_without_tags(raw, ["[secure]"])
    assert field is not None and b"secure" not in field.lower()
    request = SealRequest(raw, "alice@example.org", "Q1", ("bob@example.net",), "k",
                          subject_field=field)  # fmt: skip
    sealed = Sealer(store.blobs).seal(request)
    store.commit_envelope(sealed.record)

    unlocked = opener.unlock_with_link(store, sealed.grants[0].link)
    manifest = opener.read_manifest(store, unlocked)
    original = read(store, unlocked, 1)
    start = raw.index(b"Subject:")
    end = raw.index(b"\r\n", start) + 2
    assert original == raw[:start] + field + raw[end:]
    assert sealed.record.original_size == len(original)
    assert manifest["original"]["size"] == len(original)
    assert manifest["headers"]["subject"] == "Cijfers \u00e9t\u00e9"
    (entry,) = manifest["attachments"]
    assert read(store, unlocked, entry["part"]) == data


@pytest.mark.parametrize(
    "sizes", [[0], [10], [65536], [65537], [100, 65536], [65535, 1, 65536, 3], [70000, 200000]]
)
def test_the_pieces_of_a_message_are_cut_into_whole_chunks(sizes: list[int]):
    pieces = [seeded_bytes(size, n) for n, size in enumerate(sizes)]
    chunks = [bytes(chunk) for chunk in seal_module._slices(pieces)]
    assert b"".join(chunks) == b"".join(pieces)
    assert all(len(chunk) == stream.CHUNK_SIZE for chunk in chunks[:-1])
    assert all(0 < len(chunk) <= stream.CHUNK_SIZE for chunk in chunks[-1:])


def exported_names(target: Path) -> list[str]:
    return sorted(path.relative_to(target).as_posix() for path in target.rglob("*"))


def test_export_makes_names_unique_and_keeps_hostile_names_inside(
    sqlite_store: Store, tmp_path: Path
):
    files = [
        ("report.pdf", b"first report"),
        ("REPORT.pdf", b"second report"),
        ("report.pdf", b"third report"),
        ("notes", b"first notes"),
        ("notes", b"second notes"),
        ("../../etc/passwd", b"root:x:0:0"),
        ("..", b"dot dot"),
        ("résumé.pdf", b"cv"),
    ]
    raw = mail(text=None, html="<p>Files</p>", attachments=files)
    sealed = seal(sqlite_store, raw)
    unlocked = opener.unlock_with_link(sqlite_store, sealed.grants[0].link)
    target = tmp_path / "export"
    written = opener.export(sqlite_store, unlocked, target)

    assert exported_names(target) == sorted([
        "attachments", "body.html", "manifest.json", "message.eml",
        "attachments/report.pdf", "attachments/REPORT (2).pdf", "attachments/report (3).pdf",
        "attachments/notes", "attachments/notes (2)", "attachments/_.._etc_passwd",
        "attachments/attachment-7.bin", "attachments/résumé.pdf",
    ])  # fmt: skip
    assert written == sorted(path for path in target.rglob("*") if path.is_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    attachments = target / "attachments"
    names = ["report.pdf", "REPORT (2).pdf", "report (3).pdf", "notes", "notes (2)",
             "_.._etc_passwd", "attachment-7.bin", "résumé.pdf"]  # fmt: skip
    assert [(attachments / name).read_bytes() for name in names] == [data for _, data in files]


def test_export_keeps_names_from_a_forged_manifest_inside_the_target(
    sqlite_store: Store, tmp_path: Path
):
    """Defence in depth: extract() already cleans file names, but export must not trust the
    manifest's names either (a manifest is whatever a holder of K sealed)."""
    hostile = ["../../etc/passwd", "..", ".", "", "/etc/shadow", "a/../../b", "..\\..\\win.ini",
               "nul\x00byte", "\u202eexe.pdf", " . ", "x" * 1000]  # fmt: skip
    files = [(f"file{number}.bin", f"content {number}".encode()) for number in range(len(hostile))]
    sealed = seal(sqlite_store, mail(attachments=files))
    unlocked = opener.unlock_with_link(sqlite_store, sealed.grants[0].link)
    manifest = opener.read_manifest(sqlite_store, unlocked)
    for entry, name in zip(manifest["attachments"], hostile, strict=True):
        entry["filename"] = name
    forge_manifest(sqlite_store, unlocked, manifest)

    outside = tmp_path / "outside"
    target = outside / "a" / "b" / "export"
    written = opener.export(sqlite_store, unlocked, target)

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(
        ["outside", "outside/a", "outside/a/b", "outside/a/b/export"]
        + [f"outside/a/b/export/{name}" for name in exported_names(target)]
    )
    attachments = target / "attachments"
    found = sorted(path.read_bytes() for path in attachments.iterdir())
    assert found == sorted(data for _, data in files)  # one file each, none overwritten
    for path in written:
        assert path.resolve().is_relative_to(target.resolve())
        assert path.parent in (target, attachments)
        assert len(path.name.encode()) <= 255
        assert not path.name.startswith(".")
        assert path.name.isprintable()


def test_export_keeps_long_non_ascii_file_names(sqlite_store: Store, tmp_path: Path):
    """A 100-character Japanese file name (300 bytes of UTF-8) is a legitimate attachment:
    extract() keeps up to 200 characters, and export must write it under a name the file
    system accepts (NAME_MAX is 255 bytes), not fail the whole envelope."""
    name = "報告書" * 33 + ".pdf"
    sealed = seal(sqlite_store, mail(attachments=[(name, b"%PDF-1.4 report")]))
    unlocked = opener.unlock_with_link(sqlite_store, sealed.grants[0].link)
    assert opener.read_manifest(sqlite_store, unlocked)["attachments"][0]["filename"] == name

    target = tmp_path / "export"
    written = opener.export(sqlite_store, unlocked, target)

    (attachment,) = [path for path in written if path.parent.name == "attachments"]
    assert attachment.read_bytes() == b"%PDF-1.4 report"
    assert len(attachment.name.encode()) <= 255
    assert attachment.name.endswith(".pdf")


def forge_manifest(store: Store, unlocked: opener.Unlocked, manifest: dict[str, Any]) -> None:
    """Reseal part 0 with K: what only a holder of the content key could do."""
    header = stream.PartHeader(bytes.fromhex(unlocked.envelope.envelope_id), 0)
    data = json.dumps(manifest, ensure_ascii=False).encode("utf-8")
    replace_blob(store, unlocked.envelope.envelope_id, 0, b"".join(
        stream.seal_part(unlocked.content_key, header, [data])))  # fmt: skip
