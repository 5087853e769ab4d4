"""A copy Sealgate relayed in the clear never carries protected content to a new outsider.

Attack finding 1 of issue 11: a `[secure]` message to a colleague and an
outsider leaves as a notification for the outsider and as the message itself
for the colleague, marked by Sealgate. When the colleague's mailbox server
sends that copy back out (a `.forward`, an alias) to somebody else, Sealgate
sees its own marker with a new recipient. Only mail Sealgate *originated*
passes unexamined; a relayed copy is decided again, and a copy of protected
mail counts as part of a protected conversation, so the new outsider gets a
notification, never the content.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from gateway.mail import message
from tests.support.gateway import RunningGateway
from tests.support.postfix import Postfix, postfix_instance
from tests.support.protected import link_in, notifications, open_with_link, protected_message
from tests.support.sink import Received, Sink

SECRET_LINE = "The lab results: glucose 5.4 mmol/L (canary 7f3e1c)"
COLLEAGUE = "carol@example.org"  # internal in the baseline pack: relayed in the clear
OUTSIDER = "bob@example.net"
NEW_OUTSIDER = "mallory@elsewhere.example"


def secure_message(**kwargs: object) -> bytes:
    return protected_message(
        body=SECRET_LINE + "\n", to=f"{OUTSIDER}, {COLLEAGUE}", **kwargs  # type: ignore[arg-type]
    )


def copies_to(messages: list[Received], address: str) -> list[Received]:
    return [m for m in messages if address in m.rcpt_tos]


def in_the_clear(messages: list[Received]) -> list[Received]:
    return [m for m in messages if SECRET_LINE.encode() in m.data]


def relayed_copy(gateway: RunningGateway, sink: Sink, raw: bytes) -> bytes:
    with gateway.client() as client:
        client.sendmail("alice@example.org", [OUTSIDER, COLLEAGUE], raw)
    (copy,) = copies_to(sink.messages, COLLEAGUE)
    assert SECRET_LINE.encode() in copy.data, "the colleague gets the message as it is"
    return copy.data


@pytest.mark.parametrize(
    "raw",
    [
        secure_message(),
        # The protection came from a header Sealgate strips from what it relays:
        # nothing in the returning copy itself asks for protection any more.
        secure_message(subject="Lab results", extra_headers={"X-Sealgate-Protect": "yes"}),
    ],
    ids=["subject-tag", "stripped-header"],
)
def test_a_re_injected_relayed_copy_is_sealed_for_the_new_outsider(gateway, sink, raw):
    copy = relayed_copy(gateway, sink, raw)
    sink.reset()
    # What a .forward re-injection hands back: Delivered-To on top, the bytes unchanged.
    returned = f"Delivered-To: {COLLEAGUE}\r\n".encode() + copy
    with gateway.client() as client:
        client.sendmail(COLLEAGUE, [NEW_OUTSIDER], returned)

    assert in_the_clear(sink.messages) == []
    assert set(notifications(sink.messages)) == {NEW_OUTSIDER}
    manifest, _ = open_with_link(gateway.gateway.vault.store, link_in(sink.messages[0]))
    assert SECRET_LINE in manifest["text"]


def test_a_copy_a_forwarder_rewrote_is_still_sealed_for_the_new_outsider(gateway, sink):
    """A forwarder that re-writes the bytes (re-encodes, trims trailing white space, as
    Exchange may) breaks the loop marker; the copy's own Message-ID still says it was
    protected in another transaction, even when what triggered the protection (the
    stripped X-Sealgate-Protect) is gone."""
    raw = secure_message(subject="Lab results", extra_headers={"X-Sealgate-Protect": "yes"})
    copy = relayed_copy(gateway, sink, raw)
    rewritten = copy.rstrip(b"\r\n") + b"\r\n\r\n-- \r\nForwarded by mailbox.example.org\r\n"
    assert gateway.gateway.pipeline.marker.check(rewritten).kind is None
    sink.reset()
    with gateway.client() as client:
        client.sendmail(COLLEAGUE, [NEW_OUTSIDER], rewritten)
    assert in_the_clear(sink.messages) == []
    assert set(notifications(sink.messages)) == {NEW_OUTSIDER}


def test_a_re_injected_copy_still_reaches_another_colleague_as_it_is(gateway, sink):
    copy = relayed_copy(gateway, sink, secure_message())
    sink.reset()
    with gateway.client() as client:
        client.sendmail(COLLEAGUE, ["dave@example.org"], copy)
    (again,) = sink.messages
    assert again.rcpt_tos == ("dave@example.org",)
    assert again.data.endswith(copy)


# -- the topology where it happens: front Postfix, Sealgate, a mailbox server -----------


@pytest.fixture
def mail_servers(make_gateway: Callable[..., RunningGateway]) -> Iterator[tuple[Postfix, Postfix]]:
    # Torn down before the gateway and the sink (their fixtures come first).
    with (
        postfix_instance(name="front", hostname="mx.example.org") as front,
        postfix_instance(name="mailbox", hostname="mailbox.example.org") as mailbox,
    ):
        yield front, mailbox


def test_an_alias_on_the_colleagues_mailbox_server_cannot_leak_protected_mail(
    make_gateway: Callable[..., RunningGateway],
    sink: Sink,
    mail_servers: tuple[Postfix, Postfix],
) -> None:
    """Front Postfix filters through Sealgate and delivers example.org to the mailbox server,
    everything else to the internet (the sink). The mailbox server forwards Carol's mail to
    an outside address, back through the front Postfix and so through Sealgate."""
    front, mailbox = mail_servers
    gateway = make_gateway(upstream={"port": front.reinject_port})
    front.start_content_filter(
        gateway.port,
        relay_port=sink.port,
        settings={"transport_maps": f"inline:{{ example.org=smtp:[127.0.0.1]:{mailbox.smtpd_port} }}"},
    )
    mailbox.start_relayhost(
        front.smtpd_port,
        settings={"virtual_alias_maps": f"inline:{{ {COLLEAGUE}={NEW_OUTSIDER} }}"},
    )
    raw = secure_message()
    front.submit("alice@example.org", [OUTSIDER, COLLEAGUE], raw, mail_options=())

    def settled() -> bool:
        return OUTSIDER in notifications(sink.messages) and NEW_OUTSIDER in {
            r for m in sink.messages for r in m.rcpt_tos
        }

    deadline = time.monotonic() + 40
    while not settled() and time.monotonic() < deadline:
        for server in (front, mailbox):
            server.flush()
        time.sleep(0.5)
    assert settled(), front.describe() + mailbox.describe()

    assert in_the_clear(sink.messages) == [], "protected content reached the internet"
    found = notifications(sink.messages)
    assert set(found) == {OUTSIDER, NEW_OUTSIDER}
    manifest, _ = open_with_link(gateway.gateway.vault.store, link_in(found[NEW_OUTSIDER]))
    assert SECRET_LINE in manifest["text"]
    # The copy went round once: through Sealgate twice, then the loop ended.
    received = message.fields(message.header_block(found[NEW_OUTSIDER].data))
    assert sum(1 for name, _, _ in received if name == "x-sealgate-loop") == 1
