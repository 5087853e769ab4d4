"""Confidentiality canaries: whoever holds the database, the blobs and the logs reads nothing.

Messages carry unique canary strings in the subject, bodies, file names and
attachment contents. After sealing, every byte Sealgate keeps — the SQLite
files or a PostgreSQL dump, the blob directory, its own log output — is
searched for the canaries in the encodings mail uses, and for the secrets
that would open the envelope: link secrets, link ids, content keys and the
readers' private keys.
"""

from __future__ import annotations

import base64
import logging
import os
import quopri
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from gateway.envelope import keys, opener
from gateway.logsetup import JSONFormatter, TextFormatter
from tests.support.portal import Browser, portal_url, send_protected
from tests.support.protected import link_in, notifications, protected_message
from tests.test_accounts import BOB, FAST, api, next_code, sign_up


def encodings(secret: bytes) -> list[bytes]:
    """The forms a secret can take in stored mail: raw, hex, base64 at every offset, QP."""
    forms = [secret, secret.hex().encode(), quopri.encodestring(secret)]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        forms.append(encoded[4 : len(encoded) - 4])  # the stable middle, whatever precedes it
        forms.append(base64.urlsafe_b64encode(b"\0" * offset + secret)[4:-4])
    if secret.isascii():
        forms.append(secret.decode().encode("utf-16-le"))
    return [form for form in forms if len(form) >= 8]


def find_any(haystacks: dict[str, bytes], secrets: dict[str, bytes]) -> list[str]:
    return [
        f"{what} found in {where}"
        for what, secret in secrets.items()
        for form in encodings(secret)
        for where, data in haystacks.items()
        if form in data
    ]


def stored_files(state: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in state.rglob("*") if path.is_file()}


@pytest.fixture
def sealed_canaries(make_gateway, sink, store_url, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="sealgate")
    gateway = make_gateway(store={"database": store_url})
    tag = os.urandom(6).hex()
    canaries = {
        "subject": f"CANARY-SUBJECT-{tag}",
        "body": f"CANARY-BODY-{tag}",
        "filename": f"CANARY-FILE-{tag}",
        "attachment": f"CANARY-ATTACHMENT-{tag}",
    }
    raw = protected_message(
        subject=f"[secure] {canaries['subject']}",
        body=f"Dear Bob,\n{canaries['body']}\nRegards\n",
        attachments={
            f"{canaries['filename']}.txt": canaries["attachment"].encode() * 50,
            "scan.bin": os.urandom(1000) + canaries["attachment"].encode() + os.urandom(1000),
        },
    )
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.com"], raw)
    return gateway, canaries


def test_nothing_readable_in_database_blobs_or_logs(
    sealed_canaries, sink, store_url, postgres_dump, caplog, tmp_path
):
    gateway, canaries = sealed_canaries
    store = gateway.gateway.vault.store
    secrets = {name: value.encode() for name, value in canaries.items()}
    for address, notice in notifications(sink.messages).items():
        link = link_in(notice)
        unlocked = opener.unlock_with_link(store, link)
        assert opener.read_manifest(store, unlocked)["headers"]["subject"] == canaries["subject"]
        assert unlocked.reader.encrypted_private_key is None  # format v2: no key pair
        secrets |= {
            f"link secret of {address}": link.secret,
            f"link id of {address}": link.link_id,
            f"wrapping key of {address}": link.wrapping_key(),
            "content key": unlocked.content_key,
        }
    gateway.stop()  # checkpoints and closes the database

    haystacks = stored_files(tmp_path / "var")
    if make_url(store_url).get_backend_name() == "sqlite":
        haystacks |= stored_files(Path(make_url(store_url).database).parent)
    else:
        haystacks["pg_dump"] = postgres_dump(store_url)
    # The mail was sent while the fixture set up: its log records belong to that phase.
    records = [
        r
        for r in caplog.get_records("setup") + caplog.get_records("call")
        if r.name.startswith("sealgate")
    ]
    transactions = [r for r in records if r.getMessage() == "transaction"]
    assert transactions and all("envelope" in r.fields for r in transactions), (
        "the sealing's transaction line is missing: the log check would prove nothing"
    )
    for formatter in (TextFormatter(), JSONFormatter()):
        haystacks[type(formatter).__name__] = "\n".join(
            formatter.format(r) for r in records
        ).encode()
    assert len(haystacks) >= 4
    assert find_any(haystacks, secrets) == []


@pytest.fixture
def postgres_dump(request):
    def dump(url: str) -> bytes:
        cluster = request.getfixturevalue("postgres_cluster")
        return cluster.dump(urlsplit(url).path.lstrip("/"))

    return dump


def test_account_secrets_are_nowhere_in_state_or_logs(
    make_gateway, sink, store_url, postgres_dump, caplog, tmp_path
):
    """Sign-up and sign-in: no password, login secret, KEK, TOTP seed or private key in the
    database, the state directory or the log (docs/accounts.md)."""
    caplog.set_level(logging.DEBUG, logger="sealgate")
    gateway = make_gateway(store={"database": store_url}, portal=FAST["portal"])
    link = send_protected(gateway, sink)
    browser = Browser(portal_url(gateway))
    try:
        made = sign_up(browser, link, sink)
        right = {"address": BOB, "login_secret": made.login_secret(), "code": next_code(made.totp)}
        assert api(browser, "/account/sign-in", right).status_code == 200
    finally:
        browser.close()
    derived = keys.account_keys(made.password, made.salt, 600_000)
    secrets = {
        "password": made.password.encode(),
        "login secret": derived.login_secret,
        "KEK": derived.kek,
        "TOTP seed": base64.b32decode(made.totp.secret),
        "private key": made.private_der,
        **{
            f"recovery code {n}": c.replace("-", "").encode()
            for n, c in enumerate(made.recovery_codes)
        },  # fmt: skip
    }
    store = gateway.gateway.vault.store
    assert store.get_account(BOB) is not None  # the scan below looks at a real account
    gateway.stop()
    haystacks = stored_files(tmp_path / "var")
    if make_url(store_url).get_backend_name() == "sqlite":
        haystacks |= stored_files(Path(make_url(store_url).database).parent)
    else:
        haystacks["pg_dump"] = postgres_dump(store_url)
    records = [r for r in caplog.get_records("call") if r.name.startswith("sealgate")]
    for formatter in (TextFormatter(), JSONFormatter()):
        haystacks[type(formatter).__name__] = "\n".join(
            formatter.format(r) for r in records
        ).encode()
    # The control: the salt is stored (in clear, it is no secret), so the scan sees the
    # account's row.
    assert find_any(haystacks, {"salt": made.salt})
    assert find_any(haystacks, secrets) == []
