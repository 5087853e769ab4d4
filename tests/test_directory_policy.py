"""Directory facts as policy, end to end through SMTP: "only the finance department may send
lists of bank accounts" by the sender's group in the directory, and a colleague's mobile
number from the directory for SMS codes on protected internal mail.

The directory is filled through the store's own API (as SCIM or the sync would).
"""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from gateway.store.directory import Directory, GroupFields, UserFields
from gateway.store.schema import directory_users
from tests.support.gateway import POLICIES
from tests.support.protected import link_in, notifications, protected_message

IBANS = "NL91ABNA0417164300 BE68539007547034 DE89370400440532013000 GB82WEST12345698765432"


@pytest.fixture
def directory_gateway(make_gateway, store_url, tmp_path):
    pack = tmp_path / "directory.toml"
    pack.write_text(
        """
[pack]
name = "directory-facts"

[[rules]]
name = "bank-lists-finance-only"
action = "reject"
text = "Only the finance department may send lists of bank accounts."
when = { detector = { name = "iban", min_count = 3 }, not = { sender_directory_group = ["finance"] } }

[[rules]]
name = "hr-by-text"
description = "HR mail to colleagues is sealed, read with a code by text to their mobile."
action = "protect"
override = true
verify = ["sms"]
when.subject_tag = ["[hr]"]
"""
    )
    return make_gateway(
        store={"database": store_url},
        policy={"packs": [str(POLICIES / "baseline.toml"), str(pack)]},
        sms={"provider": "outbox"},
        dev_outbox={"directory": str(tmp_path / "outbox")},
    )


def person(directory: Directory, address: str, phone: str | None = None) -> str:
    now = datetime.now(UTC)
    made = directory.add_user(UserFields(address, None, address.split("@")[0], None, True), now)
    if phone is not None:
        with directory.store.transaction("a number from the directory", write=True) as conn:
            conn.execute(
                update(directory_users)
                .where(directory_users.c.user_id == made.user_id)
                .values(phone=phone)
            )
    return made.user_id


def test_only_the_finance_group_sends_lists_of_bank_accounts(directory_gateway, sink):
    directory = Directory(directory_gateway.gateway.vault.store)
    cfo = person(directory, "cfo@example.org")
    person(directory, "dave@example.org")
    directory.add_group(GroupFields("Finance", None, (cfo,)), datetime.now(UTC))
    raw = protected_message(subject="Payments", body=f"Please pay: {IBANS}\n")

    with directory_gateway.client() as client:
        client.sendmail("cfo@example.org", ["bank@example.net"], raw)  # a member: relayed
    assert [m.rcpt_tos for m in sink.messages] == [("bank@example.net",)]

    with (
        directory_gateway.client() as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail("dave@example.org", ["bank@example.net"], raw)
    assert refused.value.smtp_code == 550 and b"finance department" in refused.value.smtp_error
    assert len(sink.messages) == 1


def test_a_colleagues_mobile_number_comes_from_the_directory(directory_gateway, sink):
    directory = Directory(directory_gateway.gateway.vault.store)
    person(directory, "carol@example.org", phone="+31612345678")
    person(directory, "erin@example.org")  # no number: held for the sender
    with directory_gateway.client() as client:
        client.sendmail("alice@example.org", ["carol@example.org", "erin@example.org"],
                        protected_message(subject="[hr] Your contract",
                                          to="carol@example.org, erin@example.org"))  # fmt: skip
    found = notifications(sink.messages)
    assert set(found) == {"carol@example.org"}  # Erin waits for a number
    store = directory_gateway.gateway.vault.store
    _, reader = store.reader_by_link(link_in(found["carol@example.org"]).id_hash)
    assert reader.methods == "sms" and reader.phone == "+31612345678"
    (envelope,) = store.list()
    held = [
        r.address for r in store.get(envelope.envelope_id).readers if r.address.startswith("erin")
    ]
    assert held == ["erin@example.org"]
