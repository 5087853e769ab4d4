"""An account in a real browser (Debian's chromium via Playwright), end to end.

A recipient opens a message with an emailed code, creates an account on the same page
(password checked in the browser, keys made there, the authenticator enrolled from the QR
code); the next message to them is sealed to the account's key, and in a fresh browser its
link leads to sign-in, then to the message, decrypted with the account's key; the inbox lists
both. No CSP violation or script error on the way; screenshots into docs/screenshots/.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from sqlalchemy import select

from gateway.envelope import keys
from gateway.store.accounts import Accounts
from gateway.store.schema import events
from tests.support.browser import chromium
from tests.support.gateway import wait_for
from tests.support.portal import code_in, code_mail, portal_url, send_protected
from tests.support.process import free_port
from tests.test_portal_browser import DESKTOP, PHONE, Watch, shot, verify_with_email_code

pytestmark = pytest.mark.peers

PASSWORD = "violet harbour ladder 47 quietly"
NEW_PASSWORD = "amber canyon whistle 12 slowly"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def portal(make_gateway, store_url):
    """On SQLite and on PostgreSQL."""
    return make_gateway(
        store={"database": store_url},
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0},
        notify={"organisation": "Example Care"},
    )


def sign_up_on_the_message_page(page, sink) -> tuple[pyotp.TOTP, list[str]]:
    """The authenticator enrolled, and the recovery codes shown."""
    page.wait_for_selector("#sg-signup:not([hidden])")
    page.click("#sg-signup-start")
    page.fill("#sg-signup-password", "password1234")
    page.fill("#sg-signup-repeat", "password1234")
    page.click("#sg-signup-next")
    # Refused in the browser: the server never sees a password to refuse.
    page.wait_for_function("document.getElementById('sg-signup-error').textContent !== ''")
    assert page.locator("#sg-signup-enrol").is_hidden()
    page.fill("#sg-signup-password", PASSWORD)
    page.fill("#sg-signup-repeat", PASSWORD)
    page.click("#sg-signup-next")
    page.wait_for_selector("#sg-signup-enrol:not([hidden])")
    assert page.locator("#sg-signup-qr svg").count() == 1
    shot(page, "account-sign-up")
    totp = pyotp.TOTP(page.text_content("#sg-signup-secret").replace(" ", ""))
    page.fill("#sg-signup-code", totp.now())
    page.click("#sg-signup-create")
    page.wait_for_selector("#sg-signup-done:not([hidden])", timeout=30_000)
    codes = page.locator("#sg-signup-codes li").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", c) for c in codes)
    return totp, codes


def test_sign_up_then_sign_in_read_and_list(portal, sink, browser):
    first = send_protected(portal, sink, subject="[secure] Before the account")
    also = send_protected(portal, sink, subject="[secure] Also before the account")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page)
    sent: list[bytes] = []  # every request body the server received from this browser
    page.on(
        "request", lambda r: sent.append(r.post_data_buffer or b"") if r.method == "POST" else None
    )
    page.goto(first.url(portal_url(portal)))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    totp, recovery = sign_up_on_the_message_page(page, sink)
    # Another message from before the account: opened with its link, then added to it.
    page.goto(also.url(portal_url(portal)))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    page.wait_for_selector("#sg-claim:not([hidden])")
    assert page.locator("#sg-signup").is_hidden()  # the address has an account now
    page.click("#sg-claim-button")
    page.wait_for_selector("#sg-claim-status:has-text('Added to your account.')")
    watch.assert_clean()
    context.close()
    # The password never left the browser, in any form a request could carry it.
    assert len(sent) >= 4 and b'"login_secret"' in b"".join(sent)
    for form in (PASSWORD.encode(), PASSWORD.replace(" ", "+").encode(),
                 PASSWORD.replace(" ", "%20").encode()):  # fmt: skip
        assert not any(form in body for body in sent)

    second = send_protected(portal, sink, subject="[secure] After the account")
    fresh = browser.new_context(viewport=PHONE)
    page = fresh.new_page()
    watch = Watch(page)
    page.goto(second.url(portal_url(portal)))
    # Sealed to the account: the link leads to sign-in, then back to the message.
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    assert re.search(r"/\?next=/inbox/[0-9a-f]{32}$", page.url)
    page.fill("#sg-address", "bob@example.net")
    page.fill("#sg-password", PASSWORD)
    page.fill("#sg-totp", totp.at(time.time() + 30))  # the enrolment spent this step
    shot(page, "account-sign-in-phone")
    page.click("#sg-sign-in-submit")
    page.wait_for_selector("#sg-step-message:not([hidden])", timeout=30_000)
    assert page.text_content("#sg-subject") == "After the account"
    assert page.locator("#sg-signup").is_hidden()  # an account holder is not offered one

    page.goto(portal_url(portal) + "/")
    page.wait_for_selector("#sg-step-inbox:not([hidden])")
    items = page.locator("#sg-inbox-list li")
    assert items.count() == 3
    # The first message was added to the account at sign-up, the other one by its button:
    # all three open here.
    assert page.locator("#sg-inbox-list a.sg-inbox-open").count() == 3
    shot(page, "account-inbox-phone")
    page.click("#sg-sign-out")
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    # Without the phone: a recovery code, once.
    page.fill("#sg-address", "bob@example.net")
    page.fill("#sg-password", PASSWORD)
    page.click("#sg-use-recovery")
    assert page.get_attribute("#sg-totp", "inputmode") == "text"
    page.fill("#sg-totp", recovery[0])
    page.click("#sg-sign-in-submit")
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)
    watch.assert_clean()
    fresh.close()


def test_changing_the_password_in_the_browser_re_seals_the_same_key(portal, sink, browser):
    link = send_protected(portal, sink)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page)
    page.goto(link.url(portal_url(portal)))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    totp, _ = sign_up_on_the_message_page(page, sink)
    store = portal.gateway.vault.store
    before = store.get_account("bob@example.net")

    page.goto(portal_url(portal) + "/")  # signed in by the sign-up, the key kept
    page.wait_for_selector("#sg-step-inbox:not([hidden])")
    page.click("#sg-settings summary")
    page.wait_for_selector("#sg-session-list li")
    assert page.locator("#sg-session-list li").count() == 1  # this browser, not to be ended
    assert page.locator("#sg-session-list .sg-session-end").count() == 0
    page.fill("#sg-current-password", PASSWORD)
    page.fill("#sg-new-password", NEW_PASSWORD)
    page.fill("#sg-new-repeat", NEW_PASSWORD)
    page.fill("#sg-password-code", totp.at(time.time() + 30))
    page.click("#sg-password-submit")
    page.wait_for_selector("#sg-notice:not([hidden])", timeout=30_000)
    shot(page, "account-settings")
    watch.assert_clean()
    context.close()

    after = store.get_account("bob@example.net")
    assert after.public_key == before.public_key and after.kdf_salt != before.kdf_salt
    new_kek = keys.account_keys(NEW_PASSWORD, after.kdf_salt, 600_000).kek
    old_kek = keys.account_keys(PASSWORD, before.kdf_salt, 600_000).kek
    assert keys.decrypt_private_key(
        new_kek, after.encrypted_private_key, b"bob@example.net"
    ) == keys.decrypt_private_key(old_kek, before.encrypted_private_key, b"bob@example.net")


def test_a_passkey_stands_in_for_the_code(make_gateway, sink, browser):
    """WebAuthn in Chromium with a virtual authenticator (DevTools protocol); the portal on
    http://localhost:PORT, since browsers refuse an IP address as the relying party."""
    port = free_port()
    running = make_gateway(
        portal={"listen": f"127.0.0.1:{port}", "url": f"http://localhost:{port}",
                "backoff_seconds": 0},
    )  # fmt: skip
    link = send_protected(running, sink)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    devtools = context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {"options": {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                     "hasUserVerification": True, "isUserVerified": True}},
    )  # fmt: skip
    watch = Watch(page)
    page.goto(link.url(f"http://localhost:{port}"))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    sign_up_on_the_message_page(page, sink)

    page.goto(f"http://localhost:{port}/")
    page.wait_for_selector("#sg-step-inbox:not([hidden])")
    page.click("#sg-settings summary")
    page.click("#sg-passkey-add")
    page.wait_for_selector("#sg-notice:not([hidden])", timeout=30_000)
    store = running.gateway.vault.store
    assert len(Accounts(store).factors("bob@example.net", "passkey")) == 1

    page.click("#sg-sign-out")
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    page.fill("#sg-address", "bob@example.net")
    page.fill("#sg-password", PASSWORD)
    page.click("#sg-passkey-sign-in")  # no code typed
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)
    watch.assert_clean()
    context.close()
    with store.engine.connect() as conn:
        details = conn.scalars(select(events.c.detail).where(events.c.kind == "signed-in")).all()
    assert any(d.startswith("method=passkey") for d in details)


def test_a_forgotten_password_is_reset_in_the_browser(portal, sink, browser):
    link = send_protected(portal, sink)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(link.url(portal_url(portal)))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    _, recovery = sign_up_on_the_message_page(page, sink)
    context.close()

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    watch = Watch(page)
    page.goto(portal_url(portal) + "/")
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    page.fill("#sg-address", "bob@example.net")
    page.click("#sg-forgot")
    page.wait_for_selector("#sg-step-reset:not([hidden])")
    before = len(sink.messages)
    page.click("#sg-reset-ask")
    email_code = code_in(code_mail(sink, "bob@example.net", before))
    page.wait_for_selector("#sg-reset-form:not([hidden])")
    page.fill("#sg-reset-email-code", email_code)
    page.fill("#sg-reset-password", NEW_PASSWORD)
    page.fill("#sg-reset-repeat", NEW_PASSWORD)
    page.fill("#sg-reset-code", recovery[1])  # the phone is gone too: a recovery code
    shot(page, "account-reset-phone")
    page.click("#sg-reset-submit")
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)
    watch.assert_clean()
    context.close()
    account = portal.gateway.vault.store.get_account("bob@example.net")
    kek = keys.account_keys(NEW_PASSWORD, account.kdf_salt, 600_000).kek
    keys.decrypt_private_key(kek, account.encrypted_private_key, b"bob@example.net")


@pytest.fixture
def texting(make_gateway, store_url, tmp_path):
    """Texts into files in tmp_path/outbox, as in development; on SQLite and PostgreSQL."""
    return make_gateway(
        store={"database": store_url},
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0},
        sms={"provider": "outbox"},
        dev_outbox={"directory": str(tmp_path / "outbox")},
    )


def texted_code(outbox, count: int) -> str:
    """The code in the ``count``-th text (they go out after the page's answer)."""
    def texts():
        return sorted(outbox.glob("sms-*.txt"), key=lambda p: p.stat().st_mtime_ns)

    wait_for(lambda: len(texts()) >= count, what=f"text {count}")
    match = re.search(r"\b(\d{6})\b", texts()[count - 1].read_text())
    assert match
    return match.group(1)


def test_a_phone_for_codes_then_an_app_added_in_the_settings(texting, sink, browser, tmp_path):
    """Sign-up choosing codes by text, sign-in with one, then an authenticator app set up
    from the settings and used for the next sign-in."""
    outbox = tmp_path / "outbox"
    link = send_protected(texting, sink)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    watch = Watch(page)
    page.goto(link.url(portal_url(texting)))
    page.wait_for_selector("#sg-step-method:not([hidden])")
    verify_with_email_code(page, sink)
    page.wait_for_selector("#sg-signup:not([hidden])")
    page.click("#sg-signup-start")
    page.fill("#sg-signup-password", PASSWORD)
    page.fill("#sg-signup-repeat", PASSWORD)
    page.check("#sg-signup-factor-sms")
    page.click("#sg-signup-next")
    page.wait_for_selector("#sg-signup-text:not([hidden])")
    page.fill("#sg-signup-phone", "06 1234 5678")  # no country code
    page.click("#sg-signup-phone-submit")
    page.wait_for_selector("#sg-signup-error:not(:empty)")
    page.fill("#sg-signup-phone", "+31 6 1234 5678")
    page.click("#sg-signup-phone-submit")
    page.wait_for_selector("#sg-signup-text-form:not([hidden])")
    shot(page, "account-sign-up-text-phone")
    page.fill("#sg-signup-text-code", texted_code(outbox, 1))
    page.click("#sg-signup-text-create")
    page.wait_for_selector("#sg-signup-done:not([hidden])", timeout=30_000)
    watch.assert_clean()
    context.close()

    fresh = browser.new_context(viewport=DESKTOP)
    page = fresh.new_page()
    watch = Watch(page)
    page.goto(portal_url(texting) + "/")
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    page.fill("#sg-address", "bob@example.net")
    page.fill("#sg-password", PASSWORD)
    page.click("#sg-text-me")
    page.wait_for_selector("#sg-totp-label:has-text('text message')")
    page.fill("#sg-totp", texted_code(outbox, 2))
    page.click("#sg-sign-in-submit")
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)

    page.click("#sg-settings summary")
    page.wait_for_selector("#sg-factor-phone:has-text('78')")
    assert page.locator("#sg-password-text-me").is_visible()
    page.click("#sg-app-add")
    page.wait_for_selector("#sg-app-qr svg")
    shot(page, "account-settings-factors")
    app = pyotp.TOTP(page.text_content("#sg-app-secret").replace(" ", ""))
    page.fill("#sg-app-code", app.now())
    page.click("#sg-app-submit")
    page.wait_for_selector("#sg-factor-app:has-text('set up.')")
    page.click("#sg-sign-out")
    page.wait_for_selector("#sg-step-sign-in:not([hidden])")
    page.fill("#sg-address", "bob@example.net")
    page.fill("#sg-password", PASSWORD)
    page.fill("#sg-totp", app.at(time.time() + 30))  # the enrolment spent this step
    page.click("#sg-sign-in-submit")
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)
    watch.assert_clean()
    fresh.close()
