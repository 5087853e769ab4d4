"""Policies end to end through SMTP: per-recipient outcomes, one reply, explain agrees."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib

import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.support.gateway import POLICIES, wait_for
from tests.support.protected import link_in, notifications, open_with_link, protected_message

PACKS = [str(POLICIES / "baseline.toml"), str(POLICIES / "nl-healthcare.toml"),
         str(POLICIES / "finance.toml")]  # fmt: skip
CARDS = (
    "4111111111111111 5555555555554444 378282246310005 6011111111111117 3530111333300000 "
    "4012888888881881 5105105105105100 371449635398431 6011000990139424 3566002020360505"
)


def readable(data: bytes) -> str:
    """Every text part of a message, decoded (a DSN's explanation is quoted-printable)."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return "\n".join(
        part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"
    )


@pytest.fixture
def policy_gateway(make_gateway):
    return make_gateway(policy={"packs": PACKS})


def test_a_bsn_is_sealed_for_outsiders_and_relayed_to_colleagues(policy_gateway, sink, tmp_path):
    raw = protected_message(
        subject="Referral", body="Patient with BSN 111222333, see the attached letter.\n"
    )
    with policy_gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.org"], raw)
    relayed = [m for m in sink.messages if m.rcpt_tos == ("carol@example.org",)]
    assert len(relayed) == 1 and relayed[0].data.endswith(raw)
    (notice,) = notifications(sink.messages).values()
    assert b"111222333" not in notice.data
    manifest, _ = open_with_link(policy_gateway.gateway.vault.store, link_in(notice))
    assert "111222333" in manifest["text"]

    # `sealgate policy explain` says the same, with the reason.
    path = tmp_path / "referral.eml"
    path.write_bytes(raw)
    args = [
        "policy",
        "explain",
        str(path),
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.net",
        "--to",
        "carol@example.org",
        "-c",
        str(tmp_path / "none"),
    ]
    for pack in PACKS:
        args += ["--pack", pack]  # fmt: skip
    output = CliRunner().invoke(main, args).output
    assert "bob@example.net: protect" in output
    assert "bsn -> protect: detector bsn: 1 hits, 1 distinct, in body" in output
    assert "carol@example.org: relay" in output
    assert "111222333" not in output


def test_a_rejected_message_gets_the_administrators_text(policy_gateway, sink):
    raw = protected_message(subject="Export", body=f"Cards: {CARDS}\n")
    with policy_gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    assert refused.value.smtp_code == 550
    assert b"list of payment card numbers" in refused.value.smtp_error
    assert sink.messages == []


def test_a_rejected_recipient_beside_a_relayed_one_gets_a_bounce(policy_gateway, sink):
    raw = protected_message(subject="Export", body=f"Cards: {CARDS}\n")
    with policy_gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.org"], raw)
    assert [m.rcpt_tos for m in sink.messages if m.mail_from not in ("", "<>")] == [
        ("carol@example.org",)
    ]
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    text = readable(bounce.data)
    assert "bob@example.net" in text and "list of payment card numbers" in text


def test_the_transaction_log_records_each_decision(policy_gateway, sink, caplog):
    caplog.set_level(logging.INFO, logger="sealgate")
    raw = protected_message(subject="Referral", body="BSN 111222333\n")
    with policy_gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.org"], raw)

    def lines():
        return [r for r in caplog.records if r.getMessage() == "transaction"]

    wait_for(lines, what="the transaction line")  # written just after the reply
    (line,) = lines()
    assert line.fields["decisions"] == {
        "bob@example.net": "protect (bsn)",
        "carol@example.org": "relay (internal-recipients, bsn)",
    }


def test_a_held_recipient_gets_nothing_yet_and_the_sender_learns_what_is_missing(
    make_gateway, sink, tmp_path
):
    hold = tmp_path / "hold.toml"
    hold.write_text(
        '[[rules]]\nname = "sms-only-partner"\naction = "hold"\n'
        'text = "This recipient must verify by SMS and we have no phone number for them."\n'
        'when.recipient_domain = ["partner.example"]\n'
    )
    gateway = make_gateway(policy={"packs": [*PACKS, str(hold)]})
    raw = protected_message()  # [secure]
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "dana@partner.example"], raw)
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    assert not any("dana@partner.example" in m.rcpt_tos for m in sink.messages)
    (notice,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert notice.rcpt_tos == ("alice@example.org",)
    assert "we have no phone number for them" in readable(notice.data)
    assert "/h/" in readable(notice.data)  # where to release or cancel


@pytest.mark.parametrize("setting", ["no portal", "release = none"])
def test_a_held_recipient_nobody_may_release_is_bounced(make_gateway, sink, tmp_path, setting):
    hold = tmp_path / "hold.toml"
    hold.write_text(
        '[[rules]]\nname = "review"\naction = "hold"\ntext = "Needs review."\n'
        'when.recipient_domain = ["partner.example"]\n'
        + ('release = "none"\n' if setting == "release = none" else "")
    )
    portal = {"enabled": setting != "no portal"}
    gateway = make_gateway(policy={"packs": [*PACKS, str(hold)]}, portal=portal)
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "dana@partner.example"],
                        protected_message())  # fmt: skip
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert "Needs review." in readable(bounce.data)
    assert "/h/" not in readable(bounce.data)


def test_the_bounce_says_it_was_the_policy_not_a_remote_server(policy_gateway, sink):
    raw = protected_message(subject="Export", body=f"Cards: {CARDS}\n")
    with policy_gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.org"], raw)
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    text = readable(bounce.data)
    assert "mail policy did not let your message go" in text
    assert "server they depend on refused" not in text
    assert b"Remote-MTA" not in bounce.data


def test_a_null_sender_with_a_refused_recipient_is_refused_whole(policy_gateway, sink):
    """Regression: with no one to bounce to, the refused recipient vanished silently."""
    raw = protected_message(subject="Export", body=f"Cards: {CARDS}\n")
    with policy_gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("<>", ["bob@example.net", "carol@example.org"], raw)
    assert refused.value.smtp_code == 550
    assert sink.messages == []


@pytest.mark.parametrize("order", ["releasable first", "unreleasable first"])
@pytest.mark.parametrize("cause", ["two hold rules", "a missing phone number"])
def test_release_none_cannot_be_bypassed(make_gateway, sink, tmp_path, order, cause):
    """Regression: the first hold rule decided alone, and a missing second factor made a
    new, releasable hold."""
    strict = (
        '[[rules]]\nname = "strict"\naction = "hold"\nrelease = "none"\n'
        'text = "Not for outside."\nwhen.recipient_domain = ["partner.example"]\n'
    )
    if cause == "two hold rules":
        other = (
            '[[rules]]\nname = "soft"\naction = "hold"\ntext = "Check."\n'
            'when.recipient_domain = ["partner.example"]\n'
        )
    else:
        other = (
            '[[rules]]\nname = "sms"\naction = "protect"\nverify = ["sms"]\n'
            'when.recipient_domain = ["partner.example"]\n'
        )
    rules = [strict, other] if order == "unreleasable first" else [other, strict]
    pack = tmp_path / "holds.toml"
    pack.write_text("\n".join(rules))
    gateway = make_gateway(policy={"packs": [*PACKS, str(pack)]}, sms={"provider": "outbox"},
                           dev_outbox={"directory": str(tmp_path / "outbox")})  # fmt: skip
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "dana@partner.example"],
                        protected_message())  # fmt: skip
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert "/h/" not in readable(bounce.data)
    assert not any("dana@partner.example" in m.rcpt_tos for m in sink.messages)
