"""`sealgate envelope | revoke | expire | account` against envelopes sealed by a running gateway."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.cli import main
from gateway.store.schema import events
from tests.support.gateway import config_data
from tests.support.process import write_toml
from tests.support.protected import link_in, protected_message

ATTACHMENT = b"%PDF-1.7 quarterly figures\n" * 1000


@pytest.fixture
def cli(tmp_path, sink):
    """Run a sealgate command with a config naming the same state as the gateway's."""
    path = write_toml(tmp_path / "sealgate.toml", config_data(tmp_path, sink.port))
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
        result = runner.invoke(main, [*args, "-c", str(path)], input=stdin)
        assert result.exit_code == code, result.output
        return result.output

    return run


@pytest.fixture
def sealed(gateway, sink):
    raw = protected_message(attachments={"figures.pdf": ATTACHMENT})
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (record,) = gateway.gateway.vault.store.list()
    return record.envelope_id, link_in(sink.messages[0]).url("http://localhost:8080")


def test_list_and_show_print_metadata_only(cli, sealed):
    envelope_id, _ = sealed
    listing = cli("envelope", "list")
    assert envelope_id in listing and "delivered" in listing and "<alice@example.org>" in listing
    shown = cli("envelope", "show", envelope_id)
    assert "bob@example.net" in shown and "event" in shown and "sealed" in shown
    assert "Quarterly" not in shown and "figures.pdf" not in shown


def test_open_with_the_link_writes_the_message(cli, sealed, tmp_path):
    envelope_id, url = sealed
    out = tmp_path / "opened"
    cli("envelope", "open", envelope_id, "--link", url, "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["headers"]["subject"] == "Quarterly figures"
    assert (out / "body.txt").read_text().startswith("Hello Bob")
    assert (out / "attachments" / "figures.pdf").read_bytes() == ATTACHMENT
    assert b"Subject: Quarterly figures" in (out / "message.eml").read_bytes()
    assert "opened" in cli("envelope", "show", envelope_id)


def test_open_with_a_wrong_link_fails_clearly_and_writes_nothing(cli, sealed, tmp_path):
    envelope_id, url = sealed
    wrong = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    out = tmp_path / "opened"
    output = cli("envelope", "open", envelope_id, "--link", wrong, "--out", str(out), code=1)
    assert "cannot open" in output
    assert not out.exists()
    assert not list(tmp_path.glob(".sealgate-open-*"))
    output = cli("envelope", "open", envelope_id, "--link", "https://x/nothing", code=2)
    assert "not a Sealgate link" in output


def test_revoke_makes_the_envelope_unreadable_at_once(cli, sealed, tmp_path):
    envelope_id, url = sealed
    assert "revoked" in cli("revoke", envelope_id)
    assert not list((tmp_path / "var" / "blobs").glob(f"*/{envelope_id}"))
    output = cli("envelope", "open", envelope_id, "--link", url, code=1)
    assert "revoked" in output
    assert "keys deleted" in cli("envelope", "show", envelope_id)
    cli("revoke", envelope_id, code=1)


def test_expire_reports_what_it_did(cli, sealed):
    assert "expired 0 envelope(s)" in cli("expire")


def test_account_holder_opens_their_own_sent_message(cli, gateway, sink, tmp_path):
    cli("account", "create", "alice@example.org", stdin="correct horse battery\n")
    cli("account", "create", "alice@example.org", stdin="correct horse battery\n", code=1)
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (record,) = gateway.gateway.vault.store.list()
    out = tmp_path / "mine"
    cli("envelope", "open", record.envelope_id, "--account", "alice@example.org",
        "--out", str(out), stdin="correct horse battery\n")  # fmt: skip
    assert (out / "body.txt").read_text().startswith("Hello Bob")
    output = cli("envelope", "open", record.envelope_id, "--account", "alice@example.org",
                 stdin="wrong password!\n", code=1)  # fmt: skip
    assert "wrong password" in output


def test_account_passwords_must_be_long_enough(cli):
    assert "at least 12" in cli("account", "create", "a@example.org", stdin="short\n", code=2)


def test_an_administrator_deletes_an_account_its_holder_cannot_sign_in_to(cli, gateway, sink):
    """Password, phone and recovery codes lost: the account goes, and what was sealed to it."""
    store = gateway.gateway.vault.store
    cli("account", "create", "alice@example.org", stdin="correct horse battery\n")
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (record,) = store.list()
    assert "no account" in cli("account", "delete", "nobody@example.org", "--yes", code=1)
    kept = cli("account", "delete", "alice@example.org", stdin="n\n", code=1)
    assert "Aborted" in kept and store.get_account("alice@example.org") is not None

    output = cli("account", "delete", "Alice@Example.org", stdin="y\n")
    assert "alice@example.org: account deleted, 1 message copies shredded" in output
    assert store.get_account("alice@example.org") is None
    (sender_copy,) = [r for r in store.get(record.envelope_id).readers if r.kind == "account"]
    assert sender_copy.wrapped_key is None
    with store.engine.connect() as conn:
        (detail,) = conn.scalars(select(events.c.detail).where(events.c.kind == "account-deleted"))
    assert detail == "readers=1 by=command line"
