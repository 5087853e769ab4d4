"""What a sender writes for Sealgate alone in header fields (an access code, a phone
number) never leaves Sealgate: not in relayed copies, notifications or bounces, nor in
the sealed message when its recipient opens it.
"""

from __future__ import annotations

from gateway.envelope import opener
from tests.support.protected import link_in, open_with_link, protected_message

FIELD_NAMES = (b"X-Sealgate-Phone", b"X-Sealgate-Access-Code")


def store_of(running):
    return running.gateway.vault.store


def send(running, raw: bytes, recipients=("bob@example.net",)) -> None:
    with running.client() as client:
        client.sendmail("alice@example.org", list(recipients), raw)


def test_no_instruction_field_leaves_in_anything_that_reaches_the_upstream(make_gateway, sink):
    """A protected recipient, a colleague who gets the message as it is, a refused one
    whose bounce quotes the header: none of it carries what the sender wrote for Sealgate."""
    running = make_gateway(notify={"receipt": True})
    sink.behaviour.rcpt_replies["dave@example.org"] = "550 5.1.1 <dave@example.org>: no such user"
    fields = {
        "X-Sealgate-Phone": "+31612345678",
        "X-Sealgate-Access-Code": "violet 7391",
    }
    raw = protected_message(to="bob@example.net, carol@example.org", extra_headers=fields)
    recipients = ("bob@example.net", "carol@example.org", "dave@example.org")
    send(running, raw, recipients)
    kinds = {m.rcpt_tos: m for m in sink.messages}
    assert set(kinds) == {("bob@example.net",), ("carol@example.org",), ("alice@example.org",)}
    assert len([m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]) == 2  # +DSN
    for received in sink.messages:
        for name in FIELD_NAMES:
            assert name.lower() not in received.data.lower(), (name, received.rcpt_tos)
        assert b"violet 7391" not in received.data and b"+31612345678" not in received.data
    # The colleague's copy is the original, less those fields, byte for byte.
    stripped = b"".join(
        line for line in raw.splitlines(keepends=True) if not line.startswith(b"X-Sealgate-")
    )
    assert kinds[("carol@example.org",)].data.endswith(stripped)
    # And the sealed message, opened by its recipient.
    link = link_in(kinds[("bob@example.net",)])
    manifest, _ = open_with_link(store_of(running), link)
    store = store_of(running)
    unlocked = opener.unlock_with_link(store, link)
    original = b"".join(opener.read_part(store, unlocked, manifest["original"]["part"]))
    assert original == stripped.replace(b"[secure] ", b"")


def test_mail_relayed_in_the_clear_loses_the_fields_too(gateway, sink):
    raw = protected_message(subject="Lunch?", extra_headers={"X-Sealgate-Phone": "+31612345678"})
    send(gateway, raw)
    (relayed,) = sink.messages
    assert relayed.data.endswith(raw.replace(b"X-Sealgate-Phone: +31612345678\r\n", b""))
    assert store_of(gateway).list() == []
