"""Envelopes sealed in format v1 stay readable after the switch to format v2.

tests/data/v1-envelope/ is a store written by the last code that sealed format v1
(a key pair per guest reader): an SQLite database at schema revision 0005 and its
blobs. Each test copies it, lets today's code migrate and open it, and checks that
the reader gets the message that was sealed: with the link in Python, on the
command line, and in Chromium through the portal, and with the sender's account
password. The v1 unlocking path also still refuses a tampered record.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.envelope import keys, opener
from gateway.store import FileBlobStore, Store
from tests.support.browser import chromium
from tests.support.portal import code_in, code_mail, portal_url

FIXTURE = Path(__file__).parent / "data" / "v1-envelope"
FACTS: dict[str, Any] = json.loads((FIXTURE / "fixture.json").read_text())
ROOT = Path(__file__).resolve().parents[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_state(directory: Path) -> Path:
    """The fixture's database and blobs as a state directory (``store.directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "sealgate.db", directory / "sealgate.db")
    shutil.copytree(FIXTURE / "blobs", directory / "blobs")
    return directory


@pytest.fixture
def v1_store(tmp_path: Path) -> Store:
    state = copy_state(tmp_path / "state")
    store = Store(f"sqlite:///{state / 'sealgate.db'}", FileBlobStore(state / "blobs"))
    store.migrate()
    yield store
    store.close()


def link() -> keys.Link:
    return keys.Link.parse(FACTS["link_url"])


def test_the_fixture_is_a_v1_envelope(v1_store: Store):
    record = v1_store.get(FACTS["envelope_id"])
    assert record is not None and record.state == "sealed"
    guest, account = record.readers
    assert guest.kind == "guest" and guest.encrypted_private_key is not None
    assert guest.public_key is not None and len(guest.wrapped_key or b"") == 256  # RSA-OAEP
    assert account.kind == "account" and account.address == FACTS["account"]


def test_v1_opens_with_its_link_after_the_upgrade(v1_store: Store, tmp_path: Path):
    unlocked = opener.unlock_with_link(v1_store, link(), FACTS["envelope_id"])
    written = opener.export(v1_store, unlocked, tmp_path / "out")
    names = {path.relative_to(tmp_path / "out").as_posix() for path in written}
    assert names >= {"manifest.json", "body.txt", "message.eml", "attachments/figures-v1.bin"}
    assert sha256((tmp_path / "out" / "message.eml").read_bytes()) == FACTS["message_sha256"]
    assert (tmp_path / "out" / "attachments" / "figures-v1.bin").read_bytes() == bytes(
        range(256)
    ) * 300


def test_v1_opens_with_the_senders_account(v1_store: Store):
    unlocked = opener.unlock_with_password(
        v1_store, FACTS["envelope_id"], FACTS["account"], FACTS["password"]
    )
    manifest = opener.read_manifest(v1_store, unlocked)
    assert manifest["headers"]["subject"] == "Format v1 fixture"


def change_reader(store: Store, reader_id: str, **values: bytes) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    with store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE readers SET {assignments} WHERE reader_id = :reader_id"),
            {**values, "reader_id": reader_id},
        )


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_a_tampered_v1_reader_does_not_open(v1_store: Store):
    record = v1_store.get(FACTS["envelope_id"])
    assert record is not None
    guest = record.readers[0]
    assert guest.encrypted_private_key is not None and guest.wrapped_key is not None
    cases = [
        ({"encrypted_private_key": flip(guest.encrypted_private_key, 0)}, "damaged or of an"),
        ({"encrypted_private_key": flip(guest.encrypted_private_key, 40)}, "does not open"),
        ({"wrapped_key": flip(guest.wrapped_key, 100)}, "does not open with this reader's key"),
    ]
    for change, message in cases:
        change_reader(v1_store, guest.reader_id, **change)
        with pytest.raises(opener.OpenError, match=message):
            opener.unlock_with_link(v1_store, link())
        change_reader(
            v1_store,
            guest.reader_id,
            encrypted_private_key=guest.encrypted_private_key,
            wrapped_key=guest.wrapped_key,
        )
    with pytest.raises(opener.OpenError, match="does not open"):
        opener.unlock_with_link(v1_store, keys.Link(link().link_id, bytes(32)))
    opener.unlock_with_link(v1_store, link())  # restored, it opens


@pytest.mark.peers  # Sealgate's command line as a process
def test_the_command_line_opens_v1_with_the_link(tmp_path: Path):
    state = copy_state(tmp_path / "state")
    config_file = tmp_path / "sealgate.toml"
    config_file.write_text(f'[store]\ndirectory = "{state}"\n')
    out = tmp_path / "opened"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "envelope", "open", "-c", str(config_file),
         FACTS["envelope_id"], "--link", FACTS["link_url"], "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256((out / "message.eml").read_bytes()) == FACTS["message_sha256"]
    assert "format v1" in (out / "body.txt").read_text()


def test_the_browser_reads_v1_through_the_portal(make_gateway, sink, tmp_path: Path):
    state = copy_state(tmp_path / "v1-state")
    portal = make_gateway(
        store={"directory": str(state)},
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0},
    )
    with chromium() as browser:
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(link().url(portal_url(portal)))
        page.wait_for_selector("#sg-step-method:not([hidden])")
        page.click('button[data-method="email"]')
        code = code_in(code_mail(sink, FACTS["reader"]))
        page.wait_for_selector("#sg-step-code:not([hidden])")
        page.fill("#sg-code", code)
        page.click("#sg-code-submit")
        page.wait_for_selector("#sg-step-message:not([hidden])", timeout=20_000)
        assert "sealed in format v1" in page.text_content("#sg-text-alt")
        with page.expect_download() as info:
            page.locator("#sg-attachment-list .sg-download").first.click()
        assert Path(info.value.path()).read_bytes() == bytes(range(256)) * 300
        with page.expect_download() as info:
            page.click("#sg-original .sg-download")
        assert sha256(Path(info.value.path()).read_bytes()) == FACTS["message_sha256"]
        context.close()
    assert errors == []
