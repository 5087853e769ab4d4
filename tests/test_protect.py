"""Protected mail end to end: sealed, stored, notified, opened with the link only."""

from __future__ import annotations

import hashlib
import logging
import smtplib
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from gateway.envelope import opener
from gateway.envelope.account import create_account
from gateway.logsetup import TextFormatter
from gateway.store import TemporaryStoreError
from gateway.store.schema import envelopes, pending_links
from tests.support.gateway import wait_for
from tests.support.protected import link_in, notifications, open_with_link, protected_message


def store_of(running):
    return running.gateway.vault.store


def test_secure_tag_seals_and_the_link_opens_exactly_what_was_sent(gateway, sink):
    attachment = bytes(range(256)) * 400
    raw = protected_message(attachments={"figures.xlsx": attachment})
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)

    (notice,) = sink.messages
    assert notice.rcpt_tos == ("bob@example.net",)
    assert b"Quarterly figures" not in notice.data
    assert b"the figures are attached" not in notice.data
    manifest, attachments = open_with_link(store_of(gateway), link_in(notice))
    assert manifest["headers"]["subject"] == "Quarterly figures"
    assert manifest["text"] == "Hello Bob,\nthe figures are attached.\n"
    assert attachments == {"figures.xlsx": attachment}
    (listed,) = manifest["attachments"]
    assert listed["sha256"] == hashlib.sha256(attachment).hexdigest()
    assert listed["size"] == len(attachment)


def test_original_eml_is_what_was_sent_with_the_tag_removed(gateway, sink):
    raw = protected_message(subject="Quarterly figures [SECURE]")
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    store = store_of(gateway)
    unlocked = opener.unlock_with_link(store, link_in(sink.messages[0]))
    manifest = opener.read_manifest(store, unlocked)
    original = b"".join(opener.read_part(store, unlocked, manifest["original"]["part"]))
    assert original == raw.replace(
        b"Subject: Quarterly figures [SECURE]", b"Subject: Quarterly figures"
    )


def test_protect_header_seals_and_never_leaves(gateway, sink):
    raw = protected_message(subject="Plain subject", extra_headers={"X-Sealgate-Protect": "yes"})
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (notice,) = sink.messages
    assert b"X-Sealgate-Protect" not in notice.data
    manifest, _ = open_with_link(store_of(gateway), link_in(notice))
    assert manifest["headers"]["subject"] == "Plain subject"
    assert b"X-Sealgate-Protect" not in b"".join(
        opener.read_part(
            store_of(gateway), opener.unlock_with_link(store_of(gateway), link_in(notice)), 1
        )
    )


def test_unprotected_mail_is_relayed_and_loses_only_the_protect_header(gateway, sink):
    raw = protected_message(subject="Lunch?", extra_headers={"X-Sealgate-Protect": "no"})
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (relayed,) = sink.messages
    assert relayed.data.endswith(raw.replace(b"X-Sealgate-Protect: no\r\n", b""))
    assert store_of(gateway).list() == []


def test_colleagues_get_the_message_outsiders_a_notification_in_one_transaction(make_gateway, sink):
    gateway = make_gateway()  # the baseline pack lists example.org as internal
    raw = protected_message(to="bob@example.net, carol@example.org")
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net", "carol@example.org"], raw)
    relayed = [m for m in sink.messages if m.rcpt_tos == ("carol@example.org",)]
    assert len(relayed) == 1 and relayed[0].data.endswith(raw)  # subject tag untouched: DKIM
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    (record,) = store_of(gateway).list()
    assert record.state == "delivered"
    (full,) = [store_of(gateway).get(record.envelope_id)]
    assert [r.address for r in full.readers] == ["bob@example.net"]


def test_every_protected_recipient_gets_a_personal_link(gateway, sink):
    recipients = ["bob@example.net", "dave@example.com", "erin@example.com"]
    with gateway.client() as client:
        client.sendmail("alice@example.org", recipients, protected_message())
    found = notifications(sink.messages)
    assert set(found) == set(recipients)
    links = {address: link_in(found[address]) for address in recipients}
    assert len({link.secret for link in links.values()}) == 3
    store = store_of(gateway)
    for address, link in links.items():
        unlocked = opener.unlock_with_link(store, link)
        assert unlocked.reader.address == address
    (record,) = store.list()
    assert len(store.get(record.envelope_id).readers) == 3


def test_a_retry_after_451_finishes_the_envelope_with_the_same_link(gateway, sink):
    raw = protected_message()
    sink.behaviour.data_reply = "451 4.3.0 try later"
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    assert refused.value.smtp_code == 451
    store = store_of(gateway)
    (first,) = store.list()
    assert first.state == "sealed"

    sink.reset()
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (record,) = store.list()
    assert (record.envelope_id, record.state) == (first.envelope_id, "delivered")
    open_with_link(store, link_in(sink.messages[0]))


def test_a_retry_without_kept_links_supersedes_the_unfinished_envelope(gateway, sink):
    """A crash between sealing and keeping the links: nobody holds them, seal afresh."""
    raw = protected_message()
    sink.behaviour.data_reply = "451 4.3.0 try later"
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError):
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    store = store_of(gateway)
    (first,) = store.list()
    with store.transaction("forgetting the kept links", write=True) as conn:
        conn.execute(delete(pending_links))

    sink.reset()
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    states = {record.envelope_id: record.state for record in store.list()}
    assert states[first.envelope_id] == "superseded"
    assert sorted(states.values()) == ["delivered", "superseded"]
    old = store.get(first.envelope_id)
    assert all(r.wrapped_key is None and r.encrypted_private_key is None for r in old.readers)
    open_with_link(store, link_in(sink.messages[0]))


def test_a_retry_after_a_lost_250_sends_nothing_twice(gateway, sink):
    raw = protected_message()
    for _ in range(2):
        with gateway.client() as client:
            client.sendmail("alice@example.org", ["bob@example.net"], raw)
    assert len(sink.messages) == 1
    (record,) = store_of(gateway).list()
    assert record.state == "delivered"


def test_one_refused_recipient_gets_a_bounce_the_other_a_link(gateway, sink):
    sink.behaviour.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    with gateway.client() as client:
        client.sendmail(
            "alice@example.org", ["bob@example.net", "nobody@example.net"], protected_message()
        )
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    bounces = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert len(bounces) == 1 and b"nobody@example.net" in bounces[0].data
    assert bounces[0].rcpt_tos == ("alice@example.org",)


def test_an_address_no_notification_can_carry_is_bounced_the_other_gets_a_link(gateway, sink):
    """The notifications are made in the sealing hop; an address that cannot be written in
    one ("bad..dots") comes back from there as a refusal for that recipient alone."""
    with gateway.client() as client:
        client.sendmail(
            "alice@example.org", ["bob@example.net", "bad..dots@example.net"], protected_message()
        )
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert b"bad..dots@example.net" in bounce.data and b"5.1.3" in bounce.data
    assert bounce.rcpt_tos == ("alice@example.org",)


def test_every_recipient_refused_answers_5xx_and_shreds_the_envelope(gateway, sink):
    sink.behaviour.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.org", ["nobody@example.net"], protected_message())
    assert refused.value.smtp_code == 550
    (record,) = store_of(gateway).list()
    assert record.state == "revoked"


def test_a_locked_database_answers_451_and_sends_nothing(make_gateway, sink, tmp_path):
    gateway = make_gateway(store={"busy_timeout": 0.3})
    lock = sqlite3.connect(tmp_path / "var" / "sealgate.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
            client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert deferred.value.smtp_code == 451
    assert sink.messages == []


def test_sender_with_an_account_can_open_with_the_password(gateway, sink):
    store = store_of(gateway)
    store.add_account(create_account("Alice@example.org", "correct horse battery"))
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (record,) = store.list()
    unlocked = opener.unlock_with_password(
        store, record.envelope_id, "alice@example.org", "correct horse battery"
    )
    assert opener.read_manifest(store, unlocked)["text"].startswith("Hello Bob")
    with pytest.raises(opener.OpenError, match="wrong password"):
        opener.unlock_with_password(store, record.envelope_id, "alice@example.org", "guess" * 3)
    assert set(notifications(sink.messages)) == {"bob@example.net"}


def test_a_wrong_link_secret_opens_nothing(gateway, sink):
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    link = link_in(sink.messages[0])
    forged = type(link)(link.link_id, bytes(32))
    with pytest.raises(opener.OpenError, match="does not open"):
        opener.unlock_with_link(store_of(gateway), forged)


def test_the_transaction_log_names_the_envelope_not_the_content(gateway, sink, caplog):
    caplog.set_level(logging.DEBUG)
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    (record,) = store_of(gateway).list()
    # What Sealgate's own loggers write (aiosmtpd's debug output is off in production).
    formatter = TextFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records if r.name.startswith("sealgate"))
    assert record.envelope_id in text
    assert "Quarterly" not in text and "figures are attached" not in text


def test_the_running_gateway_expires_envelopes_past_retention(make_gateway, sink):
    gateway = make_gateway(envelope={"expire_interval": 0.2})
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    store = store_of(gateway)
    (record,) = store.list()
    with store.engine.begin() as db:
        db.execute(
            update(envelopes)
            .where(envelopes.c.envelope_id == record.envelope_id)
            .values(expires_at=record.created_at - timedelta(days=1))
        )
    wait_for(lambda: store.get(record.envelope_id).state == "expired", what="expiry sweep")
    with pytest.raises(opener.OpenError, match="expired"):
        opener.unlock_with_link(store, link_in(sink.messages[0]))
    # The blobs go after the commit that deleted the keys.
    wait_for(lambda: not list(store.blobs.envelopes()), what="blobs deleted")


def test_a_control_character_in_the_sender_name_still_notifies(gateway, sink):
    """Regression: a vertical tab in the From display name deferred the message for ever."""
    raw = protected_message().replace(
        b"From: Alice Example", "From: Alice\x0bExample\u2028".encode()
    )
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], raw)
    (notice,) = notifications(sink.messages).values()
    assert b"From: Alice Example via Sealgate" in notice.data
    open_with_link(store_of(gateway), link_in(notice))


def test_a_refused_colleague_gets_a_bounce_not_a_5xx_for_the_whole_message(make_gateway, sink):
    """Regression: the relayed leg, refused after the links went out, answered 550."""
    gateway = make_gateway()  # the baseline pack lists example.org as internal
    sink.behaviour.rcpt_replies = {"carol@example.org": "550 5.1.1 no such user"}
    with gateway.client() as client:
        refused = client.sendmail(
            "alice@example.org", ["bob@example.net", "carol@example.org"], protected_message()
        )
    assert refused == {}  # 250 for the transaction
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    (bounce,) = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert b"carol@example.org" in bounce.data
    (record,) = store_of(gateway).list()
    assert record.state == "delivered"


def test_a_deferred_colleague_defers_before_any_link_goes_out(make_gateway, sink):
    gateway = make_gateway()  # the baseline pack lists example.org as internal
    sink.behaviour.rcpt_replies = {"carol@example.org": "451 4.2.0 try later"}
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
        client.sendmail(
            "alice@example.org", ["bob@example.net", "carol@example.org"], protected_message()
        )
    assert deferred.value.smtp_code == 451
    assert sink.messages == []


def test_a_store_fault_after_everything_went_out_still_answers_250(gateway, sink, monkeypatch):
    """Answering 451 then would make the MTA send every notification again."""
    store = store_of(gateway)

    def unavailable(envelope_id, last_notified=None):
        raise TemporaryStoreError("database is locked")

    monkeypatch.setattr(store, "mark_delivered", unavailable)
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], protected_message())
    assert len(notifications(sink.messages)) == 1
    (record,) = store.list()
    assert record.state == "sealed"  # readable all the same
    open_with_link(store, link_in(sink.messages[0]))


def test_an_odd_display_name_never_refuses_a_valid_recipient(gateway, sink):
    """Attack finding 5: From `=?utf-8?b?wPc=?= ÿ` made the notification unwritable (553)."""
    raw = protected_message().replace(
        b"From: Alice Example <alice@example.org>",
        "From: =?utf-8?b?wPc=?= ÿ <alice@example.org>".encode(),
    )
    with gateway.client() as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], raw) == {}
    assert set(notifications(sink.messages)) == {"bob@example.net"}
    open_with_link(store_of(gateway), link_in(sink.messages[0]))


# -- a 4xx after some notifications went out: the retry finishes, no first link dies ------


def test_451_on_the_relayed_copy_keeps_every_link_that_was_sent(gateway, sink):
    """The notifications went out, then the colleague's copy got 451: the retry relays
    the copy and sends no notification again; the links already sent keep working."""
    raw = protected_message(to="bob@example.net, carol@example.org")
    sink.behaviour.data_replies = {"carol@example.org": "451 4.3.0 try later"}
    recipients = ["bob@example.net", "carol@example.org"]
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
        client.sendmail("alice@example.org", recipients, raw)
    assert deferred.value.smtp_code == 451
    first = notifications(sink.messages)["bob@example.net"]

    sink.behaviour.data_replies = {}
    with gateway.client() as client:
        client.sendmail("alice@example.org", recipients, raw)
    assert list(notifications(sink.messages)) == ["bob@example.net"], "no second notification"
    assert [m.rcpt_tos for m in sink.messages if m.data.endswith(raw)] == [("carol@example.org",)]
    store = store_of(gateway)
    (record,) = store.list()
    assert record.state == "delivered"
    open_with_link(store, link_in(first))


def test_451_on_the_second_of_three_notifications_sends_only_what_is_owed(gateway, sink):
    recipients = ["bob@example.net", "dave@example.com", "erin@example.com"]
    raw = protected_message(to=", ".join(recipients))
    sink.behaviour.data_replies = {"dave@example.com": "451 4.3.0 try later"}
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError) as deferred:
        client.sendmail("alice@example.org", recipients, raw)
    assert deferred.value.smtp_code == 451
    before = notifications(sink.messages)
    assert list(before) == ["bob@example.net"]

    sink.behaviour.data_replies = {}
    with gateway.client() as client:
        client.sendmail("alice@example.org", recipients, raw)
    sent = [m.rcpt_tos[0] for m in sink.messages if b"/m/" in m.data]
    assert sorted(sent) == sorted(recipients), "each reader notified exactly once"
    store = store_of(gateway)
    (record,) = store.list()
    assert record.state == "delivered"
    after = notifications(sink.messages)
    for address in recipients:
        unlocked = opener.unlock_with_link(store, link_in(after[address]))
        assert unlocked.reader.address == address
    open_with_link(store, link_in(before["bob@example.net"]))  # the first link still opens
    with store.engine.connect() as conn:
        assert conn.execute(select(pending_links)).all() == [], "no link kept once settled"


def test_a_bounce_already_sent_is_not_sent_again_on_the_retry(gateway, sink):
    sink.behaviour.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    sink.behaviour.data_replies = {"carol@example.org": "451 4.3.0 try later"}
    recipients = ["bob@example.net", "nobody@example.net", "carol@example.org"]
    raw = protected_message(to=", ".join(recipients))
    with gateway.client() as client, pytest.raises(smtplib.SMTPDataError):
        client.sendmail("alice@example.org", recipients, raw)
    sink.behaviour.data_replies = {}
    with gateway.client() as client:
        client.sendmail("alice@example.org", recipients, raw)
    bounces = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert len(bounces) == 1 and b"nobody@example.net" in bounces[0].data
    assert list(notifications(sink.messages)) == ["bob@example.net"]
