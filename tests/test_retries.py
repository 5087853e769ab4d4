"""Retries of protected mail finish what is missing, whatever failed in between.

A protected message owes several upstream transactions: a notification per
reader, a held notice, a bounce, the relayed copy. Any of them can fail after
others were accepted, and the MTA then retries the whole message. These tests
fail one of them, retry, and check what a person would notice: every
recipient reached exactly once, every link that went out still opens, every
refusal told to the sender once, nobody relayed in the clear that the policy
protects, and nothing lost behind a 250.
"""

from __future__ import annotations

import smtplib
from collections import Counter

import pytest
from sqlalchemy import select

from gateway.policy.engine import Policy
from gateway.policy.types import Decision
from gateway.store.schema import holds, pending_links
from tests.support.protected import link_in, notifications, open_with_link, protected_message
from tests.test_policy_smtp import PACKS

SENDER = "alice@example.org"


def send(gateway, recipients: list[str], raw: bytes) -> dict:
    with gateway.client() as client:
        return client.sendmail(SENDER, recipients, raw)


def deferred(gateway, recipients: list[str], raw: bytes) -> int:
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(SENDER, recipients, raw)
    return refused.value.smtp_code


def states(gateway) -> list[str]:
    return sorted(record.state for record in gateway.gateway.vault.store.list())


def held_notices(sink) -> list:
    return [m for m in sink.messages if m.mail_from in ("", "<>") and b"/h/" in m.data]


def bounces(sink) -> list:
    return [m for m in sink.messages if m.mail_from in ("", "<>") and b"/h/" not in m.data]


@pytest.fixture
def holding(make_gateway, tmp_path):
    """A gateway whose policy holds recipients at partner.example for the sender's release."""
    pack = tmp_path / "hold.toml"
    pack.write_text(
        '[[rules]]\nname = "review"\naction = "hold"\ntext = "Needs review."\n'
        'when.recipient_domain = ["partner.example"]\n'
    )
    return make_gateway(policy={"packs": [*PACKS, str(pack)]})


@pytest.mark.parametrize(
    "recipients",
    [
        ["bob@example.net", "dana@partner.example"],  # held and protected
        ["dana@partner.example", "carol@example.org"],  # held and relayed
        ["dana@partner.example"],  # held only
    ],
    ids=["with-protected", "with-relayed", "held-only"],
)
def test_a_held_notice_that_got_451_is_sent_on_the_retry(holding, sink, recipients):
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {SENDER: "451 4.3.0 try later"}
    assert deferred(holding, recipients, raw) == 451

    sink.behaviour.data_replies = {}
    assert send(holding, recipients, raw) == {}
    (notice,) = held_notices(sink)
    assert b"dana@partner.example" in notice.data
    assert states(holding) == ["delivered"], "the held recipient still waits for release"
    store = holding.gateway.vault.store
    with store.engine.connect() as conn:
        assert conn.execute(select(holds.c.address, holds.c.state)).all() == [
            ("dana@partner.example", "held")
        ]
    others = [r for r in recipients if not r.endswith("partner.example")]
    reached = [r for m in sink.messages if m.mail_from == SENDER for r in m.rcpt_tos]
    assert sorted(reached) == sorted(others), "everyone else exactly once"


def test_a_retry_finishes_what_the_first_attempt_sealed_when_the_policy_changed(
    gateway, sink, monkeypatch
):
    """Bob was notified, then the colleague's copy got 451. On the retry the policy says
    Bob is rejected and Carol protected: Bob's link stays good, Carol is not relayed in
    the clear (she was not sealed for), and the sender is told to send it again."""
    recipients = ["bob@example.net", "carol@example.org"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {"carol@example.org": "451 4.3.0 try later"}
    assert deferred(gateway, recipients, raw) == 451
    first = notifications(sink.messages)["bob@example.net"]

    original = Policy.decide

    def changed(self, facts, rcpts):
        decisions = original(self, facts, rcpts)
        bob = decisions["bob@example.net"]
        decisions["carol@example.org"] = bob
        decisions["bob@example.net"] = Decision("reject", (), "Now refused.", bob.verify)
        return decisions

    monkeypatch.setattr(Policy, "decide", changed)
    sink.reset()
    send(gateway, recipients, raw)
    assert list(notifications(sink.messages)) == [], "Bob has his link already"
    assert not [m for m in sink.messages if m.mail_from == SENDER], "nobody in the clear"
    (bounce,) = bounces(sink)
    assert b"carol@example.org" in bounce.data and b"send the message again" in bounce.data
    assert b"Final-Recipient: rfc822; bob@example.net" not in bounce.data
    open_with_link(gateway.gateway.vault.store, link_in(first))


def test_a_retry_reseals_when_nothing_went_out_and_the_policy_changed(gateway, sink, monkeypatch):
    recipients = ["bob@example.net", "carol@example.org"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {"bob@example.net": "451 4.3.0 try later"}
    assert deferred(gateway, recipients, raw) == 451

    original = Policy.decide

    def both_protected(self, facts, rcpts):
        decisions = original(self, facts, rcpts)
        decisions["carol@example.org"] = decisions["bob@example.net"]
        return decisions

    monkeypatch.setattr(Policy, "decide", both_protected)
    sink.reset()
    assert send(gateway, recipients, raw) == {}
    assert sorted(notifications(sink.messages)) == recipients
    assert states(gateway) == ["delivered", "superseded"]


def test_each_refusal_is_bounced_once_across_retries(gateway, sink):
    """Bob's notification is refused for good on the first attempt, Dave's copy on the
    retry: the sender gets one bounce for each, and nobody is lost behind the 250."""
    recipients = ["bob@example.net", "erin@example.com", "carol@example.org", "dave@example.org"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {
        "bob@example.net": "550 5.1.1 no such user",
        "carol@example.org": "451 4.3.0 try later",
    }
    assert deferred(gateway, recipients, raw) == 451
    assert len(bounces(sink)) == 1

    sink.behaviour.data_replies = {}
    sink.behaviour.rcpt_replies = {"dave@example.org": "550 5.1.1 gone"}
    send(gateway, recipients, raw)
    told = Counter(
        address
        for bounce in bounces(sink)
        for address in ("bob@example.net", "dave@example.org")
        if f"Final-Recipient: rfc822; {address}".encode() in bounce.data
    )
    assert told == {"bob@example.net": 1, "dave@example.org": 1}
    sent = [m.rcpt_tos[0] for m in sink.messages if b"/m/" in m.data]
    assert sent == ["erin@example.com"], "nobody notified twice, Bob not notified after 550"


def test_a_bounce_refused_for_good_after_the_links_went_out_loses_nothing(gateway, sink):
    recipients = ["bob@example.net", "nobody@example.net", "carol@example.org"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {
        "nobody@example.net": "550 5.1.1 no such user",
        SENDER: "550 5.1.1 no such sender",  # the bounce to Alice
    }
    assert send(gateway, recipients, raw) == {}
    assert list(notifications(sink.messages)) == ["bob@example.net"]
    assert [m.rcpt_tos for m in sink.messages if m.data.endswith(raw)] == [("carol@example.org",)]
    assert states(gateway) == ["delivered"]
    store = gateway.gateway.vault.store
    with store.engine.connect() as conn:
        assert conn.execute(select(pending_links)).all() == []


def test_the_receipt_of_a_resumed_message_names_every_reader(make_gateway, sink):
    gateway = make_gateway(notify={"receipt": True})
    recipients = ["bob@example.net", "carol@example.org"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {"carol@example.org": "451 4.3.0 try later"}
    assert deferred(gateway, recipients, raw) == 451
    sink.reset()
    send(gateway, recipients, raw)
    (receipt,) = [m for m in sink.messages if m.rcpt_tos == (SENDER,)]
    assert b"bob@example.net" in receipt.data


def test_a_retry_is_not_taken_for_a_copy_of_its_own_first_attempt(make_gateway, sink, tmp_path):
    """The first attempt registered the message as protected; its retry (same sender,
    recipients and bytes) must not count as a copy of it, or the recipient the policy
    relays would flip to protected on the retry."""
    pack = tmp_path / "partner.toml"
    pack.write_text(
        '[[rules]]\nname = "partner"\naction = "protect"\n'
        'when.recipient_domain = ["partner.example"]\n'
    )
    gateway = make_gateway(policy={"packs": [*PACKS, str(pack)]})
    recipients = ["bob@partner.example", "eve@other.example"]
    raw = protected_message(subject="Plain subject", to=", ".join(recipients))
    sink.behaviour.data_replies = {"eve@other.example": "451 4.3.0 try later"}
    assert deferred(gateway, recipients, raw) == 451

    sink.behaviour.data_replies = {}
    assert send(gateway, recipients, raw) == {}
    assert [m.rcpt_tos for m in sink.messages if m.data.endswith(raw)] == [("eve@other.example",)]
    sent = [m.rcpt_tos[0] for m in sink.messages if b"/m/" in m.data]
    assert sent == ["bob@partner.example"]
    assert bounces(sink) == []
