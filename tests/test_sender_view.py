"""The sender's view of a protected message, over HTTP: from the receipt's link and, signed
in, at /sent. Per recipient what happened, withdrawing one recipient (their link stops
working, the other keeps reading), a new expiry within the administrator's bounds, and
withdrawing from everyone.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from gateway.envelope import keys
from gateway.store.portalstate import PortalState
from tests.support.portal import Browser, portal_url
from tests.support.protected import link_in, notifications, protected_message

FAST = {"portal": {"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0}}
ALICE, BOB, CAROL = "alice@example.org", "bob@example.net", "carol@example.com"


@pytest.fixture
def running(make_gateway, store_url):
    return make_gateway(store={"database": store_url}, notify={"receipt": True}, **FAST)


def send_to_two(running, sink):
    """One protected message to Bob and Carol: their links, and the receipt's link."""
    before = len(sink.messages)
    with running.client() as client:
        client.sendmail(ALICE, [BOB, CAROL], protected_message(to=f"{BOB}, {CAROL}"))
    found = notifications(sink.messages[before:])
    (receipt,) = [m for m in sink.messages[before:] if m.rcpt_tos == (ALICE,)]
    text = email.message_from_bytes(receipt.data, policy=email.policy.default)
    words = text.get_body(("plain",)).get_content()
    view = re.search(r"http://\S+(/s/[0-9a-f]{32}/\S+)", words).group(1)
    return link_in(found[BOB]), link_in(found[CAROL]), view


def statuses(html: str) -> dict[str, str]:
    """Each recipient's status on the sender's page."""
    pattern = r'data-status="([a-z]+)">\s*<span class="sg-recipient-address">([^<]+)</span>'
    return {address: status for status, address in re.findall(pattern, html)}


def post(browser: Browser, path: str, **fields: str):
    return browser.http.post(path, data={"csrf": browser.csrf or "", **fields},
                             headers={"Origin": browser.base})  # fmt: skip


def test_the_receipt_shows_each_recipient_and_withdraws_one(running, sink, browsers):
    bob_link, carol_link, view = send_to_two(running, sink)
    sender = browsers(portal_url(running))
    page = sender.http.get(view)
    assert page.status_code == 200
    assert statuses(page.text) == {BOB: "notified", CAROL: "notified"}
    assert "/sent" not in page.text.split("sg-sent-heading")[0]  # no list without signing in

    bob = browsers(portal_url(running))
    assert bob.verify_by_email(bob_link, sink, to=BOB).status_code == 200
    assert bob.post(bob_link, "open").status_code == 200
    assert statuses(sender.http.get(view).text) == {BOB: "opened", CAROL: "notified"}

    carol_reader = re.search(
        rf'name="reader" value="([0-9a-f]{{32}})">\s*<p>{re.escape(CAROL)}', page.text
    ).group(1)
    withdrawn = post(sender, view, action="withdraw", reader=carol_reader)
    assert withdrawn.status_code == 200
    assert f"{CAROL} can no longer open this message." in withdrawn.text
    assert statuses(withdrawn.text) == {BOB: "opened", CAROL: "withdrawn"}
    carol = browsers(portal_url(running))
    assert carol.page(carol_link).status_code == 410  # her link stops working at once
    assert bob.post(bob_link, "open").status_code == 200  # Bob still reads
    again = post(sender, view, action="withdraw", reader=carol_reader)
    assert "could no longer open it already" in again.text
    assert post(sender, view, action="withdraw", reader="0" * 32).status_code == 400


def test_the_expiry_moves_within_the_bounds(running, sink, browsers):
    _, _, view = send_to_two(running, sink)
    sender = browsers(portal_url(running))
    page = sender.http.get(view).text
    earliest = re.search(r'min="(\d{4}-\d\d-\d\d)"', page).group(1)
    latest = re.search(r'max="(\d{4}-\d\d-\d\d)"', page).group(1)
    today = datetime.now(UTC).date()
    assert earliest == (today + timedelta(days=1)).isoformat()
    assert latest == (today + timedelta(days=90)).isoformat()  # max_expiry_days by default

    store = running.gateway.vault.store
    envelope_id = view.split("/")[2]
    shorter = (today + timedelta(days=3)).isoformat()
    moved = post(sender, view, action="expiry", until=shorter)
    assert f"It is readable until {shorter} now." in moved.text
    assert store.get(envelope_id).expires_at.date().isoformat() == shorter
    for wrong in ((today + timedelta(days=91)).isoformat(), today.isoformat(), "tomorrow"):
        refused = post(sender, view, action="expiry", until=wrong)
        assert "Choose a day between" in refused.text
    assert store.get(envelope_id).expires_at.date().isoformat() == shorter
    assert "expiry-changed" in [e.kind for e in store.events(envelope_id)]


def test_withdrawing_from_everyone_and_a_forged_form(running, sink, browsers):
    bob_link, _, view = send_to_two(running, sink)
    sender = browsers(portal_url(running))
    sender.http.get(view)
    forged = sender.http.post(view, data={"csrf": "wrong", "action": "revoke"},
                              headers={"Origin": sender.base})  # fmt: skip
    assert forged.status_code == 403
    other_site = sender.http.post(view, data={"csrf": sender.csrf, "action": "revoke"},
                                  headers={"Origin": "https://evil.example"})  # fmt: skip
    assert other_site.status_code == 403
    done = post(sender, view, action="revoke")
    assert done.status_code == 200 and "has been withdrawn" in done.text
    bob = browsers(portal_url(running))
    assert bob.page(bob_link).status_code == 410
    ended = sender.http.get(view).text
    assert "No longer readable" in ended and 'value="withdraw"' not in ended


def test_signed_in_the_sender_sees_only_their_own_messages(running, sink, browsers):
    send_to_two(running, sink)
    with running.client() as client:  # someone else's message
        client.sendmail("dave@example.org", [BOB], protected_message(to=BOB))
    store = running.gateway.vault.store
    mine = [e for e in store.list() if e.sender == ALICE]
    theirs = [e for e in store.list() if e.sender == "dave@example.org"]
    browser = browsers(portal_url(running))
    assert browser.http.get("/sent").headers["location"] == "/?next=/sent"
    signed_in(running, browser, ALICE)  # as a sign-in makes it (sign-in is tested elsewhere)
    listed = browser.http.get("/sent")
    assert listed.status_code == 200 and f"/sent/{mine[0].envelope_id}" in listed.text
    assert theirs[0].envelope_id not in listed.text
    assert browser.http.get(f"/sent/{mine[0].envelope_id}").status_code == 200
    assert browser.http.get(f"/sent/{theirs[0].envelope_id}").status_code == 404
    assert browser.http.get(f"/sent/{'0' * 32}").status_code == 404


def test_a_new_link_is_refused_unless_it_is_the_senders_and_it_opens(running, sink, browsers):
    bob_link, _, _ = send_to_two(running, sink)
    store = running.gateway.vault.store
    envelope, reader = store.reader_by_link(bob_link.id_hash)
    path = f"/sent/{envelope.envelope_id}/resend"
    new = keys.Link.new()

    def body(link: keys.Link = new, wrapped: bytes | None = None) -> dict[str, str]:
        K = os.urandom(32)
        wrapped = wrapped or keys.wrap_for_link(link, K, bytes.fromhex(envelope.envelope_id),
                                               bytes.fromhex(reader.reader_id))  # fmt: skip
        return {"reader_id": reader.reader_id, "link_id": keys.b64url(link.link_id),
                "secret": keys.b64url(link.secret), "wrapped_key": keys.b64url(wrapped)}  # fmt: skip

    def post_json(browser: Browser, data: dict[str, str]):
        return browser.http.post(path, json=data, headers={
            "X-CSRF-Token": browser.csrf or "", "Origin": browser.base})  # fmt: skip

    stranger = browsers(portal_url(running))
    stranger.page(bob_link)  # a CSRF cookie
    assert post_json(stranger, body()).status_code == 401  # not signed in
    dave = signed_in(running, stranger, "dave@example.org")
    assert post_json(dave, body()).status_code == 404  # not Dave's message
    alice = signed_in(running, browsers(portal_url(running)), ALICE)
    alice.page(bob_link)
    garbage = post_json(alice, body(wrapped=b"\x02" + os.urandom(60)))
    assert garbage.status_code == 400 and garbage.json()["error"] == "wrapped-key"
    assert store.reader_by_link(bob_link.id_hash) is not None  # nothing changed
    done = post_json(alice, body())
    assert done.status_code == 200 and done.json()["address"] == BOB
    assert store.reader_by_link(bob_link.id_hash) is None
    assert store.reader_by_link(new.id_hash) is not None


def signed_in(running, browser: Browser, address: str) -> Browser:
    """An account session for ``address`` in ``browser``, as a sign-in makes it."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    PortalState(running.gateway.vault.store).sessions.add_session(
        token, kind="account", now=now, expires_at=now + timedelta(hours=1), address=address,
        method="sso",
    )  # fmt: skip
    browser.http.cookies.set("sg_account", token)
    return browser
