"""The portal over HTTP, as browsers, scanners and attackers use it (no browser needed).

What a recipient would notice: a scanner fetching the link first breaks
nothing; codes arrive, work once, expire and are spent by too many wrong
guesses; nothing sealed is released before the second factor; revoked and
expired messages say so; every response carries the security headers.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from gateway.envelope import keys
from gateway.store.schema import codes, envelopes, throttles
from tests.support.gateway import POLICIES, wait_for
from tests.support.portal import Browser, code_in, code_mail, portal_url, send_protected
from tests.support.protected import link_in, notifications, protected_message

SECURITY_HEADERS = {
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "cache-control",
}
FAST = {"portal": {"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0}}


@pytest.fixture
def portal(make_gateway):
    return make_gateway(**FAST)


@pytest.fixture
def browser(portal):
    client = Browser(portal_url(portal))
    yield client
    client.close()


def events_of(running, link: keys.Link) -> list[str]:
    store = running.gateway.vault.store
    found = store.reader_by_link(link.id_hash)
    assert found is not None
    return [e.kind for e in store.events(found[0].envelope_id)]


def test_a_scanner_fetching_the_link_changes_nothing(portal, sink, browser):
    link = send_protected(portal, sink)
    before_events = events_of(portal, link)
    before_mail = len(sink.messages)
    for _ in range(3):  # Safe Links and friends, several times, without cookies
        scanned = httpx.get(f"{portal_url(portal)}/m/{keys.b64url(link.link_id)}")
        assert scanned.status_code == 200
        assert "Alice Example &lt;alice@example.org&gt;" in scanned.text  # who sent it
    assert events_of(portal, link) == before_events
    assert len(sink.messages) == before_mail  # no code was sent
    # The recipient comes afterwards: the link still works.
    assert browser.verify_by_email(link, sink).status_code == 200
    assert browser.post(link, "open").status_code == 200


def test_nothing_sealed_is_released_before_the_second_factor(portal, sink, browser):
    link = send_protected(portal, sink)
    refused = browser.post(link, "open")
    assert refused.status_code == 401 and refused.json()["error"] == "verify"
    assert browser.post(link, "part/0").status_code == 401
    assert "encrypted_private_key" not in browser.page(link).text


def test_verified_browser_gets_exactly_what_opens_the_envelope(portal, sink, browser):
    link = send_protected(portal, sink, attachments={"a.bin": b"\x00\x01" * 5000})
    assert browser.verify_by_email(link, sink).status_code == 200
    opened = browser.post(link, "open").json()
    assert opened["encrypted_private_key"] is None  # format v2: no key pair for a guest
    content_key = keys.unwrap_for_link(
        link,
        keys.b64url_decode(opened["wrapped_key"]),
        bytes.fromhex(opened["envelope_id"]),
        bytes.fromhex(opened["reader_id"]),
    )
    assert len(content_key) == 32
    kinds = {p["part"]: p["kind"] for p in opened["parts"]}
    assert kinds == {0: "manifest", 1: "original", 2: "attachment"}
    blob = browser.post(link, "part/2")
    assert blob.headers["content-type"] == "application/octet-stream"
    assert int(blob.headers["content-length"]) == len(blob.content)
    assert b"\x00\x01\x00\x01" not in blob.content  # sealed, not plain
    kinds_logged = events_of(portal, link)
    for kind in ("code-sent", "verified", "opened", "downloaded"):
        assert kind in kinds_logged


def test_wrong_codes_spend_the_code_and_a_new_one_is_needed(make_gateway, sink):
    running = make_gateway(portal={**FAST["portal"], "code_attempts": 3})
    link = send_protected(running, sink)
    browser = Browser(portal_url(running))
    try:
        before = len(sink.messages)
        assert browser.post(link, "code", {"method": "email"}).status_code == 200
        code = code_in(code_mail(sink, "bob@example.net", before))
        answers = [
            browser.post(link, "verify", {"method": "email", "code": "000000"}) for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [401, 401, 401, 401]
        assert [a.json()["attempts_left"] for a in answers] == [2, 1, 0, 0]
        assert all(a.json()["retry_after"] == 0 for a in answers)  # no wait for a typo
        # Spent: even the right code of that mail does not open it now; a new one does.
        assert browser.post(link, "verify", {"method": "email", "code": code}).status_code == 401
        assert browser.verify_by_email(link, sink).status_code == 200
        assert events_of(running, link).count("code-failed") >= 4
    finally:
        browser.close()


def test_a_code_works_once_and_not_after_it_expired(portal, sink, browser):
    link = send_protected(portal, sink)
    before = len(sink.messages)
    browser.post(link, "code", {"method": "email"})
    code = code_in(code_mail(sink, "bob@example.net", before))
    store = portal.gateway.vault.store
    with store.engine.begin() as conn:  # the code's ten minutes are over
        conn.execute(update(codes).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = browser.post(link, "verify", {"method": "email", "code": code})
    assert expired.status_code == 401 and expired.json()["error"] == "wrong-code"

    before = len(sink.messages)
    browser.post(link, "code", {"method": "email"})
    code = code_in(code_mail(sink, "bob@example.net", before))
    assert browser.post(link, "verify", {"method": "email", "code": code}).status_code == 200
    other = Browser(portal_url(portal))
    try:  # spent: a second browser cannot use it again
        again = other.post(link, "verify", {"method": "email", "code": code})
        assert again.status_code == 401
    finally:
        other.close()


def test_a_code_for_one_link_does_not_open_another(portal, sink, browser):
    first = send_protected(portal, sink, to="bob@example.net")
    second = send_protected(portal, sink, to="carol@example.net")
    before = len(sink.messages)
    browser.post(first, "code", {"method": "email"})
    code = code_in(code_mail(sink, "bob@example.net", before))
    wrong = browser.post(second, "verify", {"method": "email", "code": code})
    assert wrong.status_code == 401
    # A session for the first link opens the first only.
    assert browser.post(first, "verify", {"method": "email", "code": code}).status_code == 200
    assert browser.post(first, "open").status_code == 200
    assert browser.post(second, "open").status_code == 401


def test_a_forwarded_link_without_the_code_does_not_open(portal, sink, browser):
    link = send_protected(portal, sink)
    assert browser.verify_by_email(link, sink).status_code == 200
    assert browser.post(link, "open").status_code == 200
    forwarded = Browser(portal_url(portal))  # someone else's browser, same link
    try:
        assert forwarded.page(link).status_code == 200
        assert forwarded.post(link, "open").status_code == 401
        assert forwarded.post(link, "part/0").status_code == 401
    finally:
        forwarded.close()


def test_remembered_device_skips_the_code_for_the_next_message(portal, sink, browser):
    first = send_protected(portal, sink)
    assert browser.verify_by_email(first, sink, remember=True).status_code == 200
    second = send_protected(portal, sink, subject="[secure] Second")
    page = browser.page(second)
    assert '"device": true' in page.text
    before = len(sink.messages)
    assert browser.post(second, "open").status_code == 200
    assert len(sink.messages) == before  # no code needed
    assert "verified" in events_of(portal, second)
    # Forgetting the device: the next message asks for a code again.
    browser.post(second, "logout", {"forget_device": True})
    third = send_protected(portal, sink, subject="[secure] Third")
    assert browser.post(third, "open").status_code == 401


def test_access_code_from_the_sender_opens_and_never_leaves(portal, sink, browser):
    link = send_protected(portal, sink, extra_headers={"X-Sealgate-Access-Code": "tulip 4242"})
    assert all(b"tulip" not in m.data.lower() for m in sink.messages)
    page = browser.page(link)
    assert "access-code" in page.text
    wrong = browser.post(link, "verify", {"method": "access-code", "code": "tulip 4243"})
    assert wrong.status_code == 401
    right = browser.post(link, "verify", {"method": "access-code", "code": "Tulip4242"})
    assert right.status_code == 200
    assert browser.post(link, "open").status_code == 200


def test_sms_codes_through_the_outbox_provider(make_gateway, sink, tmp_path):
    outbox = tmp_path / "outbox"
    running = make_gateway(
        **FAST, sms={"provider": "outbox"}, dev_outbox={"directory": str(outbox)}
    )
    link = send_protected(running, sink, extra_headers={"X-Sealgate-Phone": "+31 6 1234 5678"})
    assert all(b"1234 5678" not in m.data and b"+31612345678" not in m.data for m in sink.messages)
    browser = Browser(portal_url(running))
    try:
        page = browser.page(link)
        assert '"sms"' in page.text and "78" in page.text
        sent = browser.post(link, "code", {"method": "sms"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["sent_to"].endswith("78")
        (text,) = outbox.glob("sms-*.txt")
        body = text.read_text()
        assert body.startswith("To: +31612345678")
        code = code_in_text(body)
        assert browser.post(link, "verify", {"method": "sms", "code": code}).status_code == 200
    finally:
        browser.close()


def code_in_text(text: str) -> str:
    import re

    match = re.search(r"\b(\d{6})\b", text)
    assert match
    return match.group(1)


@pytest.fixture
def sms_only(make_gateway, tmp_path):
    """A gateway whose "[sms]" subject tag protects with SMS codes only (outbox provider)."""
    pack = tmp_path / "sms-only.toml"
    pack.write_text(
        '[[rules]]\nname = "sms-only"\naction = "protect"\nverify = ["sms"]\n'
        'when.subject_tag = ["[sms]"]\n'
    )
    return make_gateway(
        **FAST,
        sms={"provider": "outbox"},
        dev_outbox={"directory": str(tmp_path / "outbox")},
        policy={"packs": [str(POLICIES / "baseline.toml"), str(pack)]},
    )


def test_policy_restricts_the_methods(sms_only, sink):
    running = sms_only
    link = send_protected(
        running,
        sink,
        subject="[sms] Lab results",
        extra_headers={"X-Sealgate-Phone": "+31612345678"},
    )
    browser = Browser(portal_url(running))
    try:
        assert '"methods": ["sms"]' in browser.page(link).text
        refused = browser.post(link, "code", {"method": "email"})
        assert refused.status_code == 403 and refused.json()["error"] == "method"
    finally:
        browser.close()


def test_csrf_and_origin_are_required_for_every_change(portal, sink, browser):
    link = send_protected(portal, sink)
    browser.page(link)
    path = f"/m/{keys.b64url(link.link_id)}/code"
    missing = browser.http.post(path, json={"method": "email"})
    assert missing.status_code == 403 and missing.json()["error"] == "csrf"
    cross = browser.post(link, "code", {"method": "email"}, headers={"Origin": "https://evil.test"})
    assert cross.status_code == 403
    wrong = browser.post(link, "code", {"method": "email"}, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403


def test_request_size_limits(portal, sink, browser):
    link = send_protected(portal, sink)
    huge = browser.post(link, "verify", content=b"{" + b" " * 200_000 + b"}",
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert huge.status_code == 413


def test_revoked_and_expired_messages_show_their_pages(portal, sink, browser):
    revoked = send_protected(portal, sink, subject="[secure] One")
    expired = send_protected(portal, sink, subject="[secure] Two")
    assert browser.page(revoked).status_code == 200  # the page gave this browser its CSRF cookie
    store = portal.gateway.vault.store
    revoked_id = store.reader_by_link(revoked.id_hash)[0].envelope_id
    assert store.shred(revoked_id, "revoked", detail="test")
    record = store.get(revoked_id)
    assert all(r.wrapped_key is None and r.encrypted_private_key is None for r in record.readers)
    page = browser.page(revoked)
    assert page.status_code == 410
    assert "alice@example.org" in page.text  # the sender to contact
    assert browser.post(revoked, "open").json()["error"] == "revoked"

    expired_id = store.reader_by_link(expired.id_hash)[0].envelope_id
    with store.engine.begin() as conn:
        conn.execute(
            update(envelopes)
            .where(envelopes.c.envelope_id == expired_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    page = browser.page(expired)
    assert page.status_code == 410
    assert browser.post(expired, "code", {"method": "email"}).json()["error"] == "expired"


def test_unknown_and_malformed_links(portal, browser):
    base = portal_url(portal)
    for path in ("/m/AAAAAAAAAAAAAAAAAAAAAA", "/m/not-a-link", "/m/" + "A" * 300, "/nothing"):
        page = httpx.get(base + path)
        assert page.status_code == 404, path
        assert set(page.headers) >= SECURITY_HEADERS, path


def test_security_headers_on_every_kind_of_response(portal, sink, browser):
    link = send_protected(portal, sink)
    responses = [
        browser.page(link),
        browser.http.get("/static/portal.css"),
        browser.http.get("/assets/theme.css"),
        browser.post(link, "open"),  # a JSON error
        browser.verify_by_email(link, sink),
        browser.post(link, "part/0"),
        httpx.get(portal_url(portal) + "/m/x"),
    ]
    for response in responses:
        assert set(response.headers) >= SECURITY_HEADERS, response.url
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self';" in csp  # no inline script; only style attributes
        assert csp.count("'unsafe-inline'") == 1 and "style-src-attr 'unsafe-inline'" in csp
        assert response.headers["referrer-policy"] == "no-referrer"
    page = responses[0]
    assert "strict-transport-security" not in page.headers  # plain http on loopback
    cookies = page.headers.get_list("set-cookie")
    assert cookies and all(
        "httponly" in c.lower() and "samesite=strict" in c.lower() for c in cookies
    )


def test_sender_revoke_link_takes_effect_at_once(make_gateway, sink):
    running = make_gateway(**FAST, notify={"receipt": True})
    link = send_protected(running, sink)
    receipts = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    assert len(receipts) == 1
    import email
    import email.policy
    import re

    parsed = email.message_from_bytes(receipts[0].data, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    revoke = re.search(r"http://\S+/s/[0-9a-f]{32}/\S+", text).group(0)
    browser = Browser(portal_url(running))
    try:
        confirm = browser.http.get(revoke.removeprefix(portal_url(running)))
        assert confirm.status_code == 200
        assert browser.page(link).status_code == 200  # a GET revoked nothing
        done = browser.http.post(
            revoke.removeprefix(portal_url(running)),
            data={"csrf": browser.csrf},
            headers={"Origin": portal_url(running)},
        )
        assert done.status_code == 200
        assert browser.page(link).status_code == 410
        tampered = browser.http.get(revoke.removeprefix(portal_url(running))[:-2] + "xx")
        assert tampered.status_code == 404
    finally:
        browser.close()


def test_held_recipient_waits_for_the_senders_number_then_is_notified(sms_only, sink):
    running = sms_only
    with running.client() as client:  # accepted: the message waits, sealed
        client.sendmail(
            "alice@example.org",
            ["dave@example.net", "erin@example.net"],
            protected_message(subject="[sms] Lab results", to="dave@example.net"),
        )
    assert not notifications(sink.messages)  # nobody notified yet
    (notice,) = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    assert "dave@example.net" in text and "erin@example.net" in text
    release = re.search(r"http://\S+/h/[0-9a-f]{32}/\S+", text).group(0)
    path = release.removeprefix(portal_url(running))
    browser = Browser(portal_url(running))
    try:
        page = browser.http.get(path)
        assert page.status_code == 200
        dave, erin = re.findall(r'name="(phone_[0-9a-f]{32})"', page.text)  # by reader id
        assert len(sink.messages) == 1  # a GET released nothing
        form = {"csrf": browser.csrf, "decision": "release", dave: "+31 6 1111 2222",
                erin: "not a number"}  # fmt: skip
        done = browser.http.post(path, data=form, headers={"Origin": portal_url(running)})
        assert done.status_code == 200
        assert "erin@example.net" in done.text  # still held: its number was not one
        found = notifications(sink.messages)
        assert list(found) == ["dave@example.net"]
        link = link_in(found["dave@example.net"])
        assert '"methods": ["sms"]' in browser.page(link).text
        kinds = events_of(running, link)
        assert "held" in kinds and "released" in kinds
        # Cancelling the other one: the envelope stays for dave, erin's link is gone.
        form = {"csrf": browser.csrf, "decision": "cancel"}
        cancelled = browser.http.post(path, data=form, headers={"Origin": portal_url(running)})
        assert cancelled.status_code == 200
        assert list(notifications(sink.messages)) == ["dave@example.net"]
        assert browser.page(link).status_code == 200
        assert browser.http.get(path).status_code == 200  # nothing left to decide: "gone"
    finally:
        browser.close()


def test_cancelling_the_only_held_recipient_shreds_the_envelope(make_gateway, sink, tmp_path):
    pack = tmp_path / "hold.toml"
    pack.write_text(
        '[[rules]]\nname = "review"\naction = "hold"\n'
        'text = "Held for review by the sender"\nwhen.subject_tag = ["[review]"]\n'
    )
    running = make_gateway(**FAST, policy={"packs": [str(pack)]})
    with running.client() as client:
        client.sendmail("alice@example.org", ["dave@example.net"],
                        protected_message(subject="[review] Contract", to="dave@example.net"))  # fmt: skip
    (notice,) = sink.messages
    text = email.message_from_bytes(notice.data, policy=email.policy.default)
    body = text.get_body(("plain",)).get_content()
    assert "Held for review" in body
    release = re.search(r"http://\S+/h/[0-9a-f]{32}/\S+", body).group(0)
    path = release.removeprefix(portal_url(running))
    store = running.gateway.vault.store
    (envelope,) = store.list()
    browser = Browser(portal_url(running))
    try:
        browser.http.get(path)
        form = {"csrf": browser.csrf, "decision": "cancel"}
        assert browser.http.post(path, data=form).status_code == 200
    finally:
        browser.close()
    assert store.get(envelope.envelope_id).state == "revoked"
    assert len(sink.messages) == 1


def test_answering_a_secure_reply_stays_protected(make_gateway, sink):
    from gateway.envelope.reply import ReplyContent, seal_reply

    running = make_gateway(**FAST, notify={"read_notice": True})
    link = send_protected(running, sink)
    browser = Browser(portal_url(running))
    try:
        assert browser.verify_by_email(link, sink).status_code == 200
        opened = browser.post(link, "open").json()

        def read_notices():
            return [m for m in sink.messages
                    if m.rcpt_tos == ("alice@example.org",) and b"Read: your protected" in m.data]  # fmt: skip

        wait_for(read_notices, what="the read notice")
        browser.post(link, "open")  # opened again: no second notice
        assert len(read_notices()) == 1
        blob = seal_reply(
            keys.b64url_decode(opened["reply"]["public_key"]),
            ReplyContent(opened["envelope_id"], "Re: Quarterly figures", "Thanks!", ()),
        )
        sent = browser.post(link, "reply", content=blob,
                            headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert sent.status_code == 202
        again = browser.post(link, "reply", content=blob,
                             headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert again.status_code == 202  # a retried upload is not delivered twice
    finally:
        browser.close()

    def replies():
        return [m for m in sink.messages if b"X-Sealgate-Secure-Reply" in m.data]

    wait_for(replies, what="the secure reply")
    (reply,) = replies()
    message_id = email.message_from_bytes(reply.data, policy=email.policy.default)["Message-ID"]
    # Alice answers the reply from her mail client, with no tag: still protected.
    before = len(sink.messages)
    answer = (
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Re: Quarterly figures\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: <figures-1@example.org> {message_id}\r\n"
        "\r\nSee you Monday.\r\n"
    ).encode()
    with running.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], answer)
    new = sink.messages[before:]
    assert list(notifications(new)) == ["bob@example.net"]
    assert all(b"See you Monday" not in m.data for m in new)
    assert len(replies()) == 1


def test_a_remembered_device_does_not_stand_in_for_a_stricter_factor(sms_only, sink):
    running = sms_only
    browser = Browser(portal_url(running))
    try:
        first = send_protected(running, sink)
        assert browser.verify_by_email(first, sink, remember=True).status_code == 200
        strict = send_protected(running, sink, subject="[sms] Results",
                                extra_headers={"X-Sealgate-Phone": "+31612345678"})  # fmt: skip
        assert '"device": false' in browser.page(strict).text
        assert browser.post(strict, "open").status_code == 401
        relaxed = send_protected(running, sink, subject="[secure] Later")
        assert browser.post(relaxed, "open").status_code == 200
    finally:
        browser.close()


def test_the_portal_over_https_from_uvicorn(make_gateway, sink, certs):
    running = make_gateway(
        portal={
            "listen": "127.0.0.1:0",
            "url": "",
            "tls_certificate": str(certs.certificate),
            "tls_key": str(certs.key),
        }
    )
    port = running.gateway.portal_address[1]
    base = f"https://localhost:{port}"
    link = send_protected(running, sink)
    assert link_in(notifications(sink.messages)["bob@example.net"])
    trust = ssl.create_default_context(cafile=str(certs.ca))
    with httpx.Client(verify=trust, base_url=base) as client:
        page = client.get(f"/m/{keys.b64url(link.link_id)}")
        assert page.status_code == 200
        assert page.headers["strict-transport-security"].startswith("max-age=")
        (cookie,) = page.headers.get_list("set-cookie")
        assert cookie.startswith("__Host-sg_csrf=") and "secure" in cookie.lower()
        assert "path=/" in cookie.lower()
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on the TLS port
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)


def test_the_log_and_the_database_keep_no_secret_of_the_portal(portal, sink, caplog, tmp_path):
    """Canaries through the whole portal flow: link ids and secrets, codes, the access code,
    the reply's text; none may be in the log or, once delivered, in the database."""
    import logging

    from gateway.envelope.reply import ReplyContent, seal_reply
    from gateway.logsetup import JSONFormatter

    caplog.set_level(logging.DEBUG)
    tag = os.urandom(6).hex()
    link = send_protected(portal, sink, extra_headers={"X-Sealgate-Access-Code": f"AC{tag}"})
    browser = Browser(portal_url(portal))
    try:
        browser.post(link, "verify", {"method": "access-code", "code": f"WRONG{tag}"})
        before = len(sink.messages)
        browser.post(link, "code", {"method": "email"})
        code = code_in(code_mail(sink, "bob@example.net", before))
        assert browser.post(link, "verify", {"method": "email", "code": code}).status_code == 200
        opened = browser.post(link, "open").json()
        browser.post(link, "part/0")
        reply_text = f"REPLY-CANARY-{tag}"
        blob = seal_reply(
            keys.b64url_decode(opened["reply"]["public_key"]),
            ReplyContent(opened["envelope_id"], "Re: x", reply_text, ()),
        )
        browser.post(link, "reply", content=blob,
                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        wait_for(lambda: any(reply_text.encode() in m.data for m in sink.messages),
                 what="the reply")  # fmt: skip
        browser.http.post(f"/m/{keys.b64url(link.link_id)}/verify", content=b"[" * 50_000,
                          headers={"X-CSRF-Token": browser.csrf or "",
                                   "Content-Type": "application/json"})  # fmt: skip
    finally:
        browser.close()
    portal.stop()
    ours = ("sealgate", "uvicorn", "starlette", "alembic")  # not the test's clients and sink
    records = [r for r in caplog.records if r.name.startswith(ours)]
    assert any(r.name == "sealgate.portal" for r in records)  # the portal did log
    log = "\n".join(JSONFormatter().format(r) for r in records)
    secrets = {
        "link id": keys.b64url(link.link_id),
        "link secret": keys.b64url(link.secret),
        "code": code,
        "access code": f"AC{tag}",
        "wrong access code": f"WRONG{tag}",
        "reply text": reply_text,
    }
    assert [name for name, value in secrets.items() if value in log] == []
    stored = b"".join(p.read_bytes() for p in (tmp_path / "var").rglob("*") if p.is_file())
    assert [n for n, v in secrets.items() if v.encode() in stored] == []
    assert code.encode() not in stored and reply_text.encode() not in stored


def test_many_recipients_behind_one_address_are_not_locked_out(make_gateway, sink):
    """An office NAT: successes cost the shared address nothing, and other people's typos
    make nobody else wait (backoff is per link, not per address)."""
    running = make_gateway(portal={**FAST["portal"], "client_attempts": 3, "backoff_seconds": 30})
    browser = Browser(portal_url(running))
    try:
        for n in range(2):  # two colleagues mistype their own access codes
            link = send_protected(running, sink, to=f"typo{n}@example.net",
                                  extra_headers={"X-Sealgate-Access-Code": "violet 7391"})  # fmt: skip
            typo = browser.post(link, "verify", {"method": "access-code", "code": "violet 7390"})
            assert typo.json()["error"] == "wrong-code" and typo.json()["retry_after"] == 30
        for n in range(5):  # and five more read theirs at once, from the same address
            link = send_protected(running, sink, to=f"r{n}@example.net")
            assert browser.verify_by_email(link, sink, to=f"r{n}@example.net").status_code == 200
    finally:
        browser.close()


def test_a_right_access_code_works_once_the_lockout_is_over(make_gateway, sink):
    portal = make_gateway(portal={**FAST["portal"], "link_attempts": 4})
    link = send_protected(portal, sink, extra_headers={"X-Sealgate-Access-Code": "tulip4242"})
    browser = Browser(portal_url(portal))
    try:
        answers = [
            browser.post(link, "verify", {"method": "access-code", "code": "wrong"})
            for _ in range(5)
        ]
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        store = portal.gateway.vault.store
        with store.engine.begin() as conn:  # the lockout served its time
            conn.execute(
                update(throttles).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        right = browser.post(link, "verify", {"method": "access-code", "code": "tulip4242"})
        assert right.status_code == 200
    finally:
        browser.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_client_limits_follow_x_forwarded_for_only_from_a_trusted_proxy(make_gateway, sink,
                                                                        trusted):  # fmt: skip
    proxies = ["127.0.0.1/32"] if trusted else []
    running = make_gateway(
        portal={**FAST["portal"], "client_attempts": 2, "trusted_proxies": proxies}
    )
    browser = Browser(portal_url(running))
    try:
        links = [send_protected(running, sink, to=f"r{n}@example.net") for n in range(3)]
        for link in links[:2]:  # two wrong codes "from" 198.51.100.7, on two links
            browser.post(link, "verify", {"method": "email", "code": "000000"},
                         headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})  # fmt: skip
        other = browser.post(links[2], "verify", {"method": "email", "code": "000000"},
                             headers={"X-Forwarded-For": "198.51.100.8"})  # fmt: skip
    finally:
        browser.close()
    # Behind a trusted proxy each client has its own count; otherwise the header is
    # ignored and everything counts against the proxy's own address, now locked.
    assert other.json()["error"] == ("wrong-code" if trusted else "locked")
