"""Codes by text message (SMS) as an account's second factor, over HTTP.

Sign-up with a phone instead of an authenticator app, sign-in with a code by
text, adding or changing the phone later, a reset whose second code comes by
text, and what a stranger learns from asking for a text (nothing). The texts go
through the outbox provider into files, as in development.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from gateway import config
from gateway.envelope import keys
from gateway.store.accounts import Accounts
from gateway.store.schema import events
from tests.support.gateway import wait_for
from tests.support.portal import Browser, code_in, code_mail, portal_url, send_protected
from tests.test_accounts import BOB, FAST, PASSWORD, Made, api, key_upload

PHONE = "+31612345678"


@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def texting(make_gateway, store_url, outbox):
    """A gateway whose SMS provider writes texts into ``outbox``, on SQLite and PostgreSQL."""
    return make_gateway(
        store={"database": store_url},
        sms={"provider": "outbox"},
        dev_outbox={"directory": str(outbox)},
        **FAST,
    )


def texts(outbox: Path) -> list[str]:
    """Every text sent so far, oldest first."""
    return [
        p.read_text() for p in sorted(outbox.glob("sms-*.txt"), key=lambda p: p.stat().st_mtime_ns)
    ]


def last_text(outbox: Path, count: int) -> str:
    """The ``count``-th text, once it is there (sign-in texts go out after the answer)."""
    wait_for(lambda: len(texts(outbox)) >= count, timeout=10)
    return texts(outbox)[count - 1]


def code_of(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def sign_up_by_text(browser: Browser, link: keys.Link, sink, outbox: Path) -> Made:
    """Verify by email, prove the phone by a text, create the account."""
    assert browser.verify_by_email(link, sink, to=BOB).status_code == 200
    sent = browser.post(link, "account/phone", {"phone": "+31 6 1234 5678"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["sent_to"] == "+31 •••••••78"
    text = last_text(outbox, 1)
    assert text.startswith(f"To: {PHONE}") and "add this phone" in text
    body, made = key_upload(BOB)
    body.update(phone=PHONE, text_token=sent.json()["token"], text_code=code_of(text))
    created = browser.post(link, "account", body)
    assert created.status_code == 201, created.text
    made.recovery_codes = created.json()["recovery_codes"]
    return made


def test_sign_up_and_sign_in_with_codes_by_text(texting, sink, browsers, outbox):
    store = texting.gateway.vault.store
    link = send_protected(texting, sink)
    made = sign_up_by_text(browsers(portal_url(texting)), link, sink, outbox)
    (factor,) = Accounts(store).factors(BOB, "sms")
    assert PHONE.encode() not in factor.secret  # the number is sealed at rest
    assert Accounts(store).factor(BOB, "totp") is None

    browser = browsers(portal_url(texting))
    browser.page(link)
    asked = api(browser, "/account/sign-in/text",
                {"address": BOB, "login_secret": made.login_secret()})  # fmt: skip
    assert asked.status_code == 200, asked.text
    text = last_text(outbox, 2)
    assert "sign-in code" in text and "change it" in text
    right = {"address": BOB, "login_secret": made.login_secret(),
             "text_token": asked.json()["token"], "code": code_of(text)}  # fmt: skip
    signed_in = api(browser, "/account/sign-in", right)
    assert signed_in.status_code == 200, signed_in.text
    assert api(browser, "/account/inbox").status_code == 200
    with store.engine.connect() as conn:
        signed = conn.scalars(select(events.c.detail).where(events.c.kind == "signed-in")).all()
    assert [d.split()[0] for d in signed] == ["method=sms"]

    again = browsers(portal_url(texting))
    again.page(link)
    assert api(again, "/account/sign-in", right).status_code == 401  # that code is spent
    factors = api(browser, "/account/factors").json()
    assert factors["phone"] == "+31 •••••••78" and factors["totp"] is False
    assert factors["recovery_codes"] == 10 and "sms" in factors["can_add"]


def test_asking_for_a_text_tells_a_stranger_nothing(texting, sink, browsers, outbox):
    """A wrong password, an address without an account and an account without a phone get
    the same answer, and no text is sent for any of them."""
    link = send_protected(texting, sink)
    browser = browsers(portal_url(texting))
    made = sign_up_by_text(browser, link, sink, outbox)
    stranger = browsers(portal_url(texting))
    stranger.page(link)
    wrong = keys.b64url(b"\x00" * 32)
    answers = [
        api(stranger, "/account/sign-in/text", {"address": BOB, "login_secret": wrong}),
        api(stranger, "/account/sign-in/text",
            {"address": "nobody@example.net", "login_secret": made.login_secret()}),
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200]
    assert [sorted(a.json()) for a in answers] == [["expires_in", "token"]] * 2
    assert len({len(a.json()["token"]) for a in answers}) == 1
    time.sleep(0.5)  # a text would have gone out by now
    assert len(texts(outbox)) == 1  # only the sign-up's
    # A token asked for with the wrong password does not work with the right one.
    guessed = {"address": BOB, "login_secret": made.login_secret(),
               "text_token": answers[0].json()["token"], "code": "123456"}  # fmt: skip
    assert api(stranger, "/account/sign-in", guessed).status_code == 401


def test_a_phone_added_later_and_an_app_added_to_a_text_account(texting, sink, browsers, outbox):
    link = send_protected(texting, sink)
    browser = browsers(portal_url(texting))
    sign_up_by_text(browser, link, sink, outbox)

    bad = api(browser, "/account/phone/code", {"phone": "0612345678"})
    assert bad.status_code == 400 and bad.json()["error"] == "phone"
    sent = api(browser, "/account/phone/code", {"phone": "+32 470 12 34 56"})
    assert sent.status_code == 200, sent.text
    code = code_of(last_text(outbox, 2))
    token = sent.json()["token"]
    wrong = api(browser, "/account/phone",
                {"phone": "+32470123456", "token": token, "code": "000000"})  # fmt: skip
    assert wrong.status_code == 400 and wrong.json()["error"] == "code"
    other_number = api(browser, "/account/phone",
                       {"phone": "+32470123457", "token": token, "code": code})  # fmt: skip
    assert other_number.status_code == 400  # the code proves the number it went to
    changed = api(browser, "/account/phone",
                  {"phone": "+32470123456", "token": token, "code": code})  # fmt: skip
    assert changed.status_code == 200 and changed.json()["phone"].endswith("56")
    assert len(Accounts(texting.gateway.vault.store).factors(BOB, "sms")) == 1  # replaced

    enrolled = api(browser, "/account/totp/enrol").json()
    app = pyotp.TOTP(pyotp.parse_uri(enrolled["uri"]).secret)
    added = api(browser, "/account/totp", {"token": enrolled["token"], "code": app.now()})
    assert added.status_code == 200, added.text
    assert api(browser, "/account/factors").json()["totp"] is True


def test_a_reset_takes_its_second_code_by_text(texting, sink, browsers, outbox):
    link = send_protected(texting, sink)
    browser = browsers(portal_url(texting))
    sign_up_by_text(browser, link, sink, outbox)
    reset = browsers(portal_url(texting))
    reset.page(link)
    before = len(sink.messages)
    asked = api(reset, "/account/reset/code", {"address": BOB}).json()
    mailed = code_in(code_mail(sink, BOB, before))

    wrong_mail = api(reset, "/account/reset/text",
                     {"address": BOB, "token": asked["token"], "email_code": "00000000"})  # fmt: skip
    assert wrong_mail.status_code == 200
    time.sleep(0.5)
    assert len(texts(outbox)) == 1  # nothing sent without the emailed code

    texted = api(reset, "/account/reset/text",
                 {"address": BOB, "token": asked["token"], "email_code": mailed})  # fmt: skip
    code = code_of(last_text(outbox, 2))
    body, _ = key_upload(BOB, "another long passphrase, new")
    body.update(address=BOB, token=asked["token"], email_code=mailed,
                text_token=texted.json()["token"], code=code)  # fmt: skip
    done = api(reset, "/account/reset", body)
    assert done.status_code == 200, done.text


def test_factors_the_policy_does_not_allow(make_gateway, sink, browsers, outbox, tmp_path):
    """accounts.factors without "sms": no phone at sign-up or later; without a provider
    the same. Only "sms" with no provider is a configuration error."""
    running = make_gateway(accounts={"factors": ["totp", "passkey"]},
                           sms={"provider": "outbox"},
                           dev_outbox={"directory": str(outbox)}, **FAST)  # fmt: skip
    link = send_protected(running, sink)
    browser = browsers(portal_url(running))
    assert browser.verify_by_email(link, sink, to=BOB).status_code == 200
    refused = browser.post(link, "account/phone", {"phone": PHONE})
    assert refused.status_code == 404 and refused.json()["error"] == "factor-off"
    assert not texts(outbox)

    path = tmp_path / "only-sms.toml"
    path.write_text('[accounts]\nfactors = ["sms"]\n')
    with pytest.raises(config.ConfigError) as raised:
        config.load(path)
    assert "accounts.factors" in str(raised.value) and "sms.provider" in str(raised.value)
    path.write_text('[accounts]\nfactors = ["passkey"]\n')
    with pytest.raises(config.ConfigError) as raised:
        config.load(path)
    assert "accounts.factors" in str(raised.value)


def test_session_lengths_come_from_the_configuration(make_gateway, sink, browsers):
    running = make_gateway(accounts={"idle_minutes": 5, "session_hours": 2}, **FAST)
    link = send_protected(running, sink)
    browser = browsers(portal_url(running))
    assert browser.verify_by_email(link, sink, to=BOB).status_code == 200
    enrolled = browser.post(link, "account/enrol").json()
    app = pyotp.TOTP(pyotp.parse_uri(enrolled["uri"]).secret)
    body, _ = key_upload(BOB, PASSWORD)
    body.update(totp_token=enrolled["token"], totp_code=app.now())
    created = browser.post(link, "account", body)
    cookie = next(c for c in created.headers.get_list("set-cookie") if c.startswith("sg_account="))
    assert "Max-Age=7200" in cookie
