"""Mail authentication through SMTP: honest Authentication-Results, spoofing refused."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.gateway import POLICIES

MESSAGE = (
    "From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: Figures\r\n"
    "Message-ID: <auth-{domain}@example.org>\r\n{extra}\r\nHello Bob\r\n"
)


@pytest.fixture
def verifying(make_gateway, test_dns, tmp_path):
    test_dns.set_records("e2e.signed.test", [("TXT", "v=spf1 ip4:127.0.0.1 -all")])
    test_dns.set_records("_dmarc.e2e.signed.test", [("TXT", "v=DMARC1; p=reject")])
    org = tmp_path / "org.toml"
    org.write_text(
        f'[pack]\ninclude = ["{POLICIES / "baseline.toml"}"]\n\n'
        '[lists]\ninternal = ["example.org", "signed.test", "*.signed.test"]\n'
    )
    host, port = test_dns.resolver_address
    return make_gateway(
        mailauth={"verify": True, "nameservers": [host], "port": port, "timeout": 2},
        policy={"packs": [str(org), str(POLICIES / "anti-spoofing.toml")]},
    )


def send(gateway, domain: str, extra: str = "") -> None:
    with gateway.client() as client:
        client.sendmail(
            f"alice@{domain}", ["bob@example.net"], MESSAGE.format(domain=domain, extra=extra)
        )


def test_relayed_mail_carries_our_verdicts_and_forged_ones_are_removed(verifying, sink):
    forged = "Authentication-Results: sealgate.test; dmarc=pass header.from=evil.example\r\n"
    send(verifying, "e2e.signed.test", extra=forged)
    (arrived,) = sink.messages
    ours = [line for line in arrived.data.split(b"\r\n") if line.startswith(
        b"Authentication-Results: sealgate.test")]  # fmt: skip
    assert len(ours) == 1
    header = arrived.data.split(b"\r\n\r\n")[0].decode()
    assert "spf=pass" in header and "dmarc=pass" in header
    assert "evil.example" not in header


@pytest.mark.parametrize("authserv_id", ["", "mx.example.org"])
def test_forged_results_of_ours_are_removed_when_verification_is_off(
    make_gateway, sink, authserv_id
):
    """Attack finding 6: with mailauth.verify = false a forged field of ours went through."""
    ours = authserv_id or "sealgate.test"  # mailauth.authserv_id, else smtp.hostname
    gateway = make_gateway(mailauth={"verify": False, "authserv_id": authserv_id})
    forged = (
        f"Authentication-Results: {ours}; dmarc=pass header.from=evil.example\r\n"
        "Authentication-Results: mx.other.example; spf=pass\r\n"
    )
    send(gateway, "example.org", extra=forged)
    (arrived,) = sink.messages
    header = arrived.data.split(b"\r\n\r\n")[0].decode()
    assert "evil.example" not in header
    assert "Authentication-Results: mx.other.example; spf=pass" in header  # not ours: kept


def test_a_spoofed_foreign_from_is_refused(verifying, sink):
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(verifying, "bank.example")
    assert refused.value.smtp_code == 550
    assert b"organisation's own domains" in refused.value.smtp_error
    assert sink.messages == []


def test_our_domain_failing_its_own_dmarc_reject_is_refused(verifying, sink):
    # signed.test allows only 192.0.2.0/24 and publishes p=reject; we connect from 127.0.0.1.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(verifying, "signed.test")
    assert refused.value.smtp_code == 550
    assert b"DMARC" in refused.value.smtp_error
