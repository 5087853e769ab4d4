"""What Sealgate sends in its own name is DKIM-signed: notifications and bounces verify."""

from __future__ import annotations

import dkim
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.mailauth.dkimsign import SigningKey
from tests.support.protected import notifications, protected_message


@pytest.fixture
def signing(tmp_path):
    """A key made with `sealgate dkim-keygen`, and the DNS record it printed."""
    path = tmp_path / "dkim.pem"
    result = CliRunner().invoke(
        main, ["dkim-keygen", "--domain", "example.org", "--selector", "s1", "--out", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert (path.stat().st_mode & 0o777) == 0o600
    record = SigningKey.from_pem_file("example.org", "s1", path).dns_record()
    printed = result.output.split("IN TXT ", 1)[1].splitlines()[0]
    assert printed.replace('" "', "").strip('"') == record
    return path, record


def verifies(data: bytes, record: str) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name == b"s1._domainkey.example.org." else None

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def test_notifications_are_signed_for_the_organisations_domain(make_gateway, sink, signing):
    path, record = signing
    gateway = make_gateway(
        notify={"from_address": "secure@example.org"},
        dkim={"keys": [{"domain": "example.org", "selector": "s1", "key_file": str(path)}]},
    )
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (notice,) = notifications(sink.messages).values()
    assert b"DKIM-Signature:" in notice.data
    assert verifies(notice.data, record)
    assert not verifies(notice.data.replace(b"protected message", b"protected massage"), record)


def test_mail_from_a_domain_without_a_key_leaves_unsigned(gateway, sink):
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (notice,) = notifications(sink.messages).values()
    assert b"DKIM-Signature:" not in notice.data


def test_keygen_refuses_to_overwrite(tmp_path):
    path = tmp_path / "exists.pem"
    path.write_text("keep me")
    result = CliRunner().invoke(
        main, ["dkim-keygen", "--domain", "example.org", "--selector", "s1", "--out", str(path)]
    )
    assert result.exit_code == 2 and "exists" in result.output
    assert path.read_text() == "keep me"


def test_a_bad_key_file_is_a_configuration_error(make_gateway, tmp_path):
    from gateway import config

    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(config.ConfigError, match=r"dkim.keys\[0\].key_file:"):
        make_gateway(dkim={"keys": [{"domain": "example.org", "selector": "s1",
                                     "key_file": str(bad)}]})  # fmt: skip


def test_a_signed_notification_passes_dmarc_for_the_organisations_domain(test_dns):
    """The signature alone carries DMARC: the sending IP is not in the domain's SPF."""
    from datetime import UTC, datetime

    from gateway import notify
    from gateway.envelope.keys import Link
    from gateway.mailauth.dkimsign import Signer
    from gateway.mailauth.verify import Verifier

    notifier = notify.Notifier(
        notify.Settings(from_address="secure@signed.test", hostname="sealgate.signed.test")
    )
    original = notify.Original.of(
        "alice@signed.test",
        b"From: Alice <alice@signed.test>\r\nMessage-ID: <m@signed.test>\r\n\r\nx\r\n",
    )
    link = Link(bytes(16), bytes(32)).url("https://portal.signed.test")
    data = notifier.notification(
        original, "bob@example.net", link, datetime(2026, 12, 28, tzinfo=UTC)
    )
    key = SigningKey("signed.test", "sel", "rsa-sha256", test_dns.keys.dkim_rsa)
    data = Signer([key]).sign(data) + data
    verdicts = Verifier(test_dns.resolver(), "sealgate.test").verify(
        data, mail_from="alice@signed.test", helo="sealgate.signed.test", client_ip="198.51.100.7"
    )
    assert verdicts.spf.result == "fail"  # not an allowed IP ...
    assert [v.result for v in verdicts.dkim] == ["pass"]
    assert verdicts.dmarc.result == "pass"  # ... the aligned signature carries DMARC
    assert verdicts.dmarc.secure


def test_relayed_mail_is_signed_after_our_changes_when_configured(make_gateway, sink, signing):
    path, record = signing
    gateway = make_gateway(
        dkim={
            "keys": [{"domain": "example.org", "selector": "s1", "key_file": str(path)}],
            "sign_relayed": True,
        }
    )
    raw = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch\r\n"
        b"X-Sealgate-Protect: no\r\nMessage-ID: <lunch@example.org>\r\n\r\nAt noon?\r\n"
    )
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (relayed,) = sink.messages
    assert b"X-Sealgate-Protect" not in relayed.data  # removed before signing
    assert verifies(relayed.data, record)
