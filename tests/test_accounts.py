"""Accounts over HTTP, with Python in the browser's part (the keys made as keys.py makes them).

Sign-up from a notification after the emailed code, TOTP enrolment, sign-in that
answers the same for every wrong address, password and code, the inbox, new mail
sealed to the account's key and opened with it, and what the server refuses.
"""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from gateway.envelope import keys, opener
from gateway.store.accounts import Accounts
from gateway.store.portalstate import PortalState
from gateway.store.schema import events
from tests.support.gateway import wait_for
from tests.support.portal import Browser, code_in, code_mail, portal_url, send_protected
from tests.support.protected import notifications

FAST = {"portal": {"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0}}
PASSWORD = "a long passphrase nobody guesses"
BOB = "bob@example.net"


@pytest.fixture
def portal(make_gateway, store_url):
    """The gateway and its portal, on SQLite and on PostgreSQL."""
    return make_gateway(store={"database": store_url}, **FAST)


@dataclass
class Made:
    """An account as the browser made it: what only the owner holds."""

    password: str
    salt: bytes
    private_der: bytes
    totp: pyotp.TOTP
    recovery_codes: list[str] = field(default_factory=list)

    def login_secret(self, password: str | None = None) -> str:
        derived = keys.account_keys(password or self.password, self.salt, 600_000)
        return keys.b64url(derived.login_secret)


def key_upload(address: str, password: str = PASSWORD, **changes: Any) -> tuple[dict, Made]:
    salt = os.urandom(16)
    derived = keys.account_keys(password, salt, 600_000)
    pair = keys.generate_key_pair(2048)
    sealed = keys.encrypt_private_key(derived.kek, pair.private_der, address.encode())
    body = {
        "kdf": "pbkdf2-sha256",
        "iterations": 600_000,
        "salt": keys.b64url(salt),
        "login_secret": keys.b64url(derived.login_secret),
        "public_key": keys.b64url(pair.public_der),
        "encrypted_private_key": keys.b64url(sealed),
        **changes,
    }
    return body, Made(password, salt, pair.private_der, pyotp.TOTP("A" * 32))


def api(browser: Browser, path: str, body: dict | None = None) -> httpx.Response:
    headers = {"X-CSRF-Token": browser.csrf or "", "Origin": browser.base}
    return browser.http.post(path, json=body or {}, headers=headers)


def sign_up(browser: Browser, link: keys.Link, sink, address: str = BOB) -> Made:
    """Verify by email, enrol TOTP, create the account: what the sign-up page does."""
    assert browser.verify_by_email(link, sink, to=address).status_code == 200
    enrolment = browser.post(link, "account/enrol")
    assert enrolment.status_code == 200, enrolment.text
    enrolled = enrolment.json()
    assert enrolled["address"] == address and "<script" not in enrolled["svg"]
    totp = pyotp.TOTP(pyotp.parse_uri(enrolled["uri"]).secret)
    body, made = key_upload(address)
    body.update(totp_token=enrolled["token"], totp_code=totp.now())
    created = browser.post(link, "account", body)
    assert created.status_code == 201, created.text
    made.totp = totp
    made.recovery_codes = created.json()["recovery_codes"]
    return made


def next_code(totp: pyotp.TOTP) -> str:
    """A code of a later step than any used so far (the one now was spent)."""
    return totp.at(time.time() + 30)


def test_a_recipient_signs_up_and_new_mail_is_sealed_to_the_account(portal, sink, browsers):
    store = portal.gateway.vault.store
    first = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    made = sign_up(browser, first, sink)
    assert browser.http.cookies.get("sg_account")  # signed in by the sign-up

    second = send_protected(portal, sink, subject="[secure] after sign-up")
    _, reader = store.reader_by_link(second.id_hash)
    assert reader.kind == "account"  # K wrapped to the account's key, not the link
    notice = notifications(sink.messages)[BOB]
    text = email.message_from_bytes(notice.data, policy=email.policy.default)
    words = text.get_body(("plain",)).get_content()
    assert "sign in with your password" in words and "never be asked" not in words
    stranger = browsers(portal_url(portal))
    refused = stranger.post(second, "code", {"method": "email"})
    assert refused.status_code == 403 and refused.json()["error"] == "account"

    listed = api(browser, "/account/inbox").json()["messages"]
    opens = {m["envelope_id"]: m["opens_here"] for m in listed}
    (first_envelope, _), (second_envelope, _) = (
        store.reader_by_link(first.id_hash),
        store.reader_by_link(second.id_hash),
    )
    assert opens == {first_envelope.envelope_id: False, second_envelope.envelope_id: True}

    opened = api(browser, f"/account/messages/{second_envelope.envelope_id}/open").json()
    content_key = keys.unwrap_content_key(
        made.private_der, keys.b64url_decode(opened["wrapped_key"])
    )
    _, reader = store.reader_by_link(second.id_hash)
    unlocked = opener.Unlocked(second_envelope, reader, content_key)
    manifest = opener.read_manifest(store, unlocked)
    assert manifest["headers"]["subject"] == "after sign-up"
    assert "opened" in [e.kind for e in store.events(second_envelope.envelope_id)]
    # Someone else's message is not there for this account, and says nothing more.
    other = api(browser, f"/account/messages/{first_envelope.envelope_id}/open")
    assert other.status_code == 404


def test_sign_in_answers_the_same_for_every_wrong_thing(portal, sink, browsers):
    link = send_protected(portal, sink)
    made = sign_up(browsers(portal_url(portal)), link, sink)
    browser = browsers(portal_url(portal))
    browser.page(link)  # the CSRF cookie

    known = api(browser, "/account/unlocking", {"address": "Bob@Example.NET"}).json()
    assert known == {"kdf": "pbkdf2-sha256", "iterations": 600_000, "salt": keys.b64url(made.salt)}
    unknown = api(browser, "/account/unlocking", {"address": "nobody@example.net"}).json()
    again = api(browser, "/account/unlocking", {"address": "nobody@example.net"}).json()
    assert unknown == again and unknown.keys() == known.keys()  # made up, and stable

    attempts = [
        {"address": "nobody@example.net", "login_secret": made.login_secret(), "code": "123456"},
        {
            "address": BOB,
            "login_secret": made.login_secret("wrong password"),
            "code": next_code(made.totp),
        },  # fmt: skip
        {"address": BOB, "login_secret": made.login_secret(), "code": "000000"},
    ]
    answers = [api(browser, "/account/sign-in", body) for body in attempts]
    assert {a.status_code for a in answers} == {401}
    assert len({a.text for a in answers}) == 1

    right = {"address": BOB, "login_secret": made.login_secret(), "code": next_code(made.totp)}
    signed_in = api(browser, "/account/sign-in", right)
    assert signed_in.status_code == 200, signed_in.text
    blob = keys.b64url_decode(signed_in.json()["encrypted_private_key"])
    kek = keys.account_keys(PASSWORD, made.salt, 600_000).kek
    assert keys.decrypt_private_key(kek, blob, BOB.encode()) == made.private_der

    replay = browsers(portal_url(portal))
    replay.page(link)
    assert api(replay, "/account/sign-in", right).status_code == 401  # that step is spent

    assert api(browser, "/account/inbox").status_code == 200
    assert api(browser, "/account/sign-out", {"everywhere": True}).status_code == 200
    assert api(browser, "/account/inbox").status_code == 401


def test_wrong_sign_ins_lock_the_client_out_but_not_the_owner(make_gateway, sink, browsers):
    """A stranger guessing from one address is locked out there; the owner, from another,
    signs in (the account itself only slows down, doubling from backoff_seconds, 0 here)."""
    proxied = {**FAST["portal"], "client_attempts": 3, "trusted_proxies": ["127.0.0.1/32"]}
    running = make_gateway(portal=proxied)
    link = send_protected(running, sink)
    made = sign_up(browsers(portal_url(running)), link, sink)
    guesser, owner = browsers(portal_url(running)), browsers(portal_url(running))
    for browser, address in ((guesser, "192.0.2.66"), (owner, "198.51.100.7")):
        browser.http.headers["X-Forwarded-For"] = address
        browser.page(link)
    wrong = {"address": BOB, "login_secret": made.login_secret("guess"), "code": "111111"}
    answers = [api(guesser, "/account/sign-in", wrong).status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]
    right = {"address": BOB, "login_secret": made.login_secret(), "code": next_code(made.totp)}
    assert api(guesser, "/account/sign-in", right).status_code == 429  # that client waits
    assert api(owner, "/account/sign-in", right).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"iterations": 599_999}, "iterations"),
        ({"iterations": "600000"}, "iterations"),
        ({"iterations": 700_000}, "iterations"),  # unlike a made-up answer: see docs
        ({"salt": keys.b64url(os.urandom(32))}, "salt"),
        ({"kdf": "md5"}, "kdf"),
        ({"salt": keys.b64url(b"short")}, "salt"),
        ({"login_secret": "not base64!"}, "login_secret"),
        ({"public_key": keys.b64url(os.urandom(300))}, "public_key"),
        ({"public_key": keys.b64url(os.urandom(5000))}, "public_key"),
        (
            {"encrypted_private_key": keys.b64url(b"\x02" + os.urandom(1300))},
            "encrypted_private_key",
        ),  # fmt: skip
        ({"encrypted_private_key": keys.b64url(os.urandom(40))}, "encrypted_private_key"),
    ],
)
def test_keys_the_server_cannot_accept_are_refused_and_nothing_is_stored(
    portal, sink, browsers, change, field
):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    assert browser.verify_by_email(link, sink).status_code == 200
    enrolled = browser.post(link, "account/enrol").json()
    body, _ = key_upload(BOB, **change)
    code = pyotp.TOTP(pyotp.parse_uri(enrolled["uri"]).secret).now()
    body.update(totp_token=enrolled["token"], totp_code=code)
    refused = browser.post(link, "account", body)
    assert refused.status_code == 400
    assert refused.json() | {"message": ""} == {"error": "upload", "field": field, "message": ""}
    assert portal.gateway.vault.store.get_account(BOB) is None


def test_sign_up_needs_the_emailed_code_and_a_right_authenticator_code(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    assert browser.post(link, "account/enrol").status_code == 401  # not verified yet
    assert browser.verify_by_email(link, sink).status_code == 200
    enrolled = browser.post(link, "account/enrol").json()
    body, _ = key_upload(BOB)
    body.update(totp_token=enrolled["token"], totp_code="000000")
    wrong = browser.post(link, "account", body)
    assert wrong.status_code == 400 and wrong.json()["error"] == "enrolment"
    body.update(totp_token=enrolled["token"][:-2] + "AA")
    assert browser.post(link, "account", body).json()["error"] == "enrolment"
    assert portal.gateway.vault.store.get_account(BOB) is None
    assert Accounts(portal.gateway.vault.store).factor(BOB, "totp") is None


def password_upload(address: str, password: str, made: Made) -> tuple[dict, bytes]:
    """What the browser sends for a new password: the same private key under the new KEK."""
    salt = os.urandom(16)
    derived = keys.account_keys(password, salt, 600_000)
    sealed = keys.encrypt_private_key(derived.kek, made.private_der, address.encode())
    upload = {
        "kdf": "pbkdf2-sha256",
        "iterations": 600_000,
        "salt": keys.b64url(salt),
        "login_secret": keys.b64url(derived.login_secret),
        "encrypted_private_key": keys.b64url(sealed),
    }
    return upload, salt


def test_a_new_password_keeps_the_messages_and_ends_other_sessions(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    made = sign_up(browser, link, sink)  # signed in by the sign-up
    second = send_protected(portal, sink, subject="[secure] kept")
    store = portal.gateway.vault.store
    # The account is signed in on another device too.
    elsewhere = browsers(portal_url(portal))
    elsewhere.page(link)
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    PortalState(store).sessions.add_session(
        token, kind="account", now=now, expires_at=now + timedelta(hours=1), address=BOB
    )
    elsewhere.http.cookies.set("sg_account", token)
    assert api(elsewhere, "/account/inbox").status_code == 200

    new, salt = password_upload(BOB, "another long passphrase", made)
    code = next_code(made.totp)
    stolen_cookie = {"login_secret": made.login_secret("guess"), "code": code, "new": new}
    assert api(browser, "/account/password", stolen_cookie).status_code == 401
    current = {"login_secret": made.login_secret(), "code": code, "new": new}
    changed = api(browser, "/account/password", current)
    assert changed.status_code == 200, changed.text

    assert api(elsewhere, "/account/inbox").status_code == 401  # the other session ended
    assert api(browser, "/account/inbox").status_code == 200  # this one goes on
    unlocking = api(browser, "/account/unlocking", {"address": BOB}).json()
    assert unlocking["salt"] == keys.b64url(salt)
    # The same key pair: what was sealed before still opens, with the new password.
    account = store.get_account(BOB)
    kek = keys.account_keys("another long passphrase", salt, 600_000).kek
    private = keys.decrypt_private_key(kek, account.encrypted_private_key, BOB.encode())
    envelope, _ = store.reader_by_link(second.id_hash)
    opened = api(browser, f"/account/messages/{envelope.envelope_id}/open").json()
    assert len(keys.unwrap_content_key(private, keys.b64url_decode(opened["wrapped_key"]))) == 32
    with store.engine.connect() as conn:
        kinds = conn.scalars(select(events.c.kind).where(events.c.address == BOB)).all()
    assert "password-changed" in kinds


def test_deleting_the_account_shreds_what_was_sealed_to_it(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    made = sign_up(browser, link, sink)
    second = send_protected(portal, sink, subject="[secure] to be shredded")
    store = portal.gateway.vault.store
    envelope, _ = store.reader_by_link(second.id_hash)
    wrong = {"login_secret": made.login_secret("guess"), "code": next_code(made.totp)}
    assert api(browser, "/account/delete", wrong).status_code == 401
    right = {"login_secret": made.login_secret(), "code": next_code(made.totp)}
    deleted = api(browser, "/account/delete", right)
    assert deleted.status_code == 200 and deleted.json()["messages_shredded"] == 1

    assert store.get_account(BOB) is None
    _, reader = store.reader_by_link(second.id_hash)
    assert reader.wrapped_key is None  # crypto-shredded: nobody can open it as the account
    assert api(browser, "/account/inbox").status_code == 401
    assert api(browser, f"/account/messages/{envelope.envelope_id}/open").status_code == 401
    again = browsers(portal_url(portal))
    again.page(link)
    gone = {"address": BOB, "login_secret": made.login_secret(), "code": made.totp.now()}
    assert api(again, "/account/sign-in", gone).status_code == 401
    # A new message to the address is a guest's again, with a link that opens.
    third = send_protected(portal, sink, subject="[secure] after deletion")
    assert store.reader_by_link(third.id_hash)[1].kind == "guest"


def test_a_message_from_before_the_account_is_claimed_into_it(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    made = sign_up(browser, link, sink)
    opened = browser.post(link, "open").json()
    assert opened["account_public_key"]  # the page offers to add the message
    content_key = keys.unwrap_for_link(
        link,
        keys.b64url_decode(opened["wrapped_key"]),
        bytes.fromhex(opened["envelope_id"]),
        bytes.fromhex(opened["reader_id"]),
    )
    public_key = keys.b64url_decode(opened["account_public_key"])
    wrapped = keys.wrap_content_key(public_key, content_key)
    too_short = {"wrapped_key": keys.b64url(wrapped[:200])}
    assert browser.post(link, "claim", too_short).status_code == 400
    claimed = browser.post(link, "claim", {"wrapped_key": keys.b64url(wrapped)})
    assert claimed.status_code == 200 and claimed.json()["added"] is True
    again = browser.post(link, "claim", {"wrapped_key": keys.b64url(wrapped)})
    assert again.json()["added"] is False  # once is enough

    listed = api(browser, "/account/inbox").json()["messages"]
    assert [(m["envelope_id"], m["opens_here"]) for m in listed] == [(opened["envelope_id"], True)]
    as_account = api(browser, f"/account/messages/{opened['envelope_id']}/open").json()
    wrapped_for_account = keys.b64url_decode(as_account["wrapped_key"])
    assert keys.unwrap_content_key(made.private_der, wrapped_for_account) == content_key
    assert browser.post(link, "open").status_code == 200  # the link keeps working


def test_only_a_mailbox_proved_by_email_can_claim(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    assert browser.verify_by_email(link, sink).status_code == 200
    opened = browser.post(link, "open").json()
    assert opened["account_public_key"] is None  # no account for the address
    refused = browser.post(link, "claim", {"wrapped_key": keys.b64url(os.urandom(256))})
    assert refused.status_code == 409 and refused.json()["error"] == "no-account"
    stranger = browsers(portal_url(portal))
    stranger.page(link)
    assert stranger.post(link, "claim", {"wrapped_key": "AAAA"}).status_code == 401


def test_a_recovery_code_signs_in_once_instead_of_the_app(portal, sink, browsers):
    link = send_protected(portal, sink)
    made = sign_up(browsers(portal_url(portal)), link, sink)
    assert len(made.recovery_codes) == 10 and len(set(made.recovery_codes)) == 10
    browser = browsers(portal_url(portal))
    browser.page(link)
    code = made.recovery_codes[3].lower().replace("-", " ")  # as someone might type it
    attempt = {"address": BOB, "login_secret": made.login_secret(), "code": code}
    assert api(browser, "/account/sign-in", attempt).status_code == 200
    assert api(browser, "/account/sign-in", attempt).status_code == 401  # spent
    wrong_password = {**attempt, "login_secret": made.login_secret("guess"),
                      "code": made.recovery_codes[4]}  # fmt: skip
    assert api(browser, "/account/sign-in", wrong_password).status_code == 401
    # A wrong password does not spend the code.
    right = {**wrong_password, "login_secret": made.login_secret()}
    assert api(browser, "/account/sign-in", right).status_code == 200


def test_the_account_lists_its_sessions_and_ends_one(portal, sink, browsers):
    link = send_protected(portal, sink)
    browser = browsers(portal_url(portal))
    made = sign_up(browser, link, sink)  # signed in here by the sign-up
    other = browsers(portal_url(portal))
    other.page(link)
    right = {"address": BOB, "login_secret": made.login_secret(), "code": next_code(made.totp)}
    assert api(other, "/account/sign-in", right).status_code == 200

    listed = api(browser, "/account/sessions").json()["sessions"]
    assert [s["kind"] for s in listed] == ["account", "account"]
    assert sum(s["current"] for s in listed) == 1
    theirs = next(s["id"] for s in listed if not s["current"])
    ended = api(browser, "/account/sessions/end", {"id": theirs})
    assert ended.json() == {"ok": True, "ended": True}
    assert api(other, "/account/inbox").status_code == 401
    assert api(browser, "/account/inbox").status_code == 200
    # Another address's session cannot be named, and a made-up id ends nothing.
    assert api(browser, "/account/sessions/end", {"id": "0" * 32}).json()["ended"] is False
    assert api(browser, "/account/sessions/end", {"id": "x"}).status_code == 400


def test_the_sender_hears_once_when_an_account_holder_opens_the_message(
    make_gateway, sink, browsers
):
    running = make_gateway(**FAST, notify={"read_notice": True})
    link = send_protected(running, sink)
    browser = browsers(portal_url(running))
    sign_up(browser, link, sink)
    second = send_protected(running, sink, subject="[secure] read me")
    envelope, _ = running.gateway.vault.store.reader_by_link(second.id_hash)

    def read_notices():
        return [m for m in sink.messages
                if m.rcpt_tos == ("alice@example.org",) and b"Read: your protected" in m.data
                and envelope.envelope_id.encode() in m.data]  # fmt: skip

    assert read_notices() == []
    assert api(browser, f"/account/messages/{envelope.envelope_id}/open").status_code == 200
    wait_for(read_notices, what="the read notice")
    assert api(browser, f"/account/messages/{envelope.envelope_id}/open").status_code == 200
    assert len(read_notices()) == 1


def test_a_forgotten_password_is_reset_with_the_emailed_code_and_the_app(portal, sink, browsers):
    link = send_protected(portal, sink)
    made = sign_up(browsers(portal_url(portal)), link, sink)
    second = send_protected(portal, sink, subject="[secure] sealed to the old key")
    store = portal.gateway.vault.store
    old_key = store.get_account(BOB).public_key
    browser = browsers(portal_url(portal))
    browser.page(link)

    before = len(sink.messages)
    asked = api(browser, "/account/reset/code", {"address": BOB})
    assert asked.status_code == 200
    email_code = code_in(code_mail(sink, BOB, before))
    nobody = api(browser, "/account/reset/code", {"address": "nobody@example.net"}).json()
    assert len(nobody["token"]) == len(asked.json()["token"])  # no account: no difference

    body, remade = key_upload(BOB, password="a brand new passphrase here")
    body.update(token=asked.json()["token"], address=BOB, email_code="00000000",
                code=next_code(made.totp))  # fmt: skip
    assert api(browser, "/account/reset", body).status_code == 401  # the wrong email code
    body.update(email_code=email_code)
    reset = api(browser, "/account/reset", body)
    assert reset.status_code == 200, reset.text

    account = store.get_account(BOB)
    assert account.public_key != old_key
    _, shredded = store.reader_by_link(second.id_hash)
    assert shredded.wrapped_key is None  # sealed to the lost key: nobody opens it now
    listed = api(browser, "/account/inbox").json()["messages"]
    old_envelope, _ = store.reader_by_link(second.id_hash)
    assert old_envelope.envelope_id not in {m["envelope_id"] for m in listed}
    assert api(browser, "/account/reset", body).status_code == 401  # the token is spent
    # The new password signs in (the app's step is spent: a recovery code here).
    other = browsers(portal_url(portal))
    other.page(link)
    attempt = {"address": BOB, "code": made.recovery_codes[0],
               "login_secret": remade.login_secret()}  # fmt: skip
    answer = api(other, "/account/sign-in", attempt)
    assert answer.status_code == 200
    kek = keys.account_keys("a brand new passphrase here", remade.salt, 600_000).kek
    sealed = keys.b64url_decode(answer.json()["encrypted_private_key"])
    assert keys.decrypt_private_key(kek, sealed, BOB.encode()) == remade.private_der
    # New mail is sealed to the new key.
    third = send_protected(portal, sink, subject="[secure] to the new key")
    envelope, reader = store.reader_by_link(third.id_hash)
    assert keys.unwrap_content_key(remade.private_der, reader.wrapped_key)
