"""An employee in a real browser (Debian's chromium via Playwright) with the organisation's
single sign-on through a real OpenID provider (oidc-provider on Node.js).

Alice signs in with the provider (the key made in the browser under the KEK from her key
secret), sends a protected message to Bob and Carol, reads her own copy in the portal,
sees per recipient what happened, and withdraws the message from Carol: Carol's link stops
working, Bob's does not. No CSP violation or script error on the way; screenshots into
docs/screenshots/.
"""

from __future__ import annotations

import pytest

from gateway.envelope import keys
from tests.support.browser import chromium
from tests.support.oidc import OIDCProvider
from tests.support.portal import Browser
from tests.support.process import free_port
from tests.support.protected import link_in, notifications, protected_message
from tests.test_portal_browser import DESKTOP, Watch, shot

pytestmark = pytest.mark.peers

ALICE, BOB, CAROL = "alice@example.org", "bob@example.net", "carol@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def corp(make_gateway, oidc_provider, store_url, tmp_path):
    """Sealgate with the organisation's provider, on SQLite and PostgreSQL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp: OIDCProvider = oidc_provider()
    idp.add_account("alice", email=ALICE, password=PASSWORD, name="Alice Example")
    client = idp.add_client([f"{base}/sso/corp/callback"], client_id="sealgate")
    idp.start()
    secret = tmp_path / "sso-client-secret"
    secret.write_text(client.client_secret)
    running = make_gateway(
        store={"database": store_url},
        portal={"listen": f"127.0.0.1:{port}", "url": "", "backoff_seconds": 0},
        notify={"organisation": "Example Corp"},
        sso={
            "providers": [
                {
                    "name": "corp",
                    "title": "Example Corp",
                    "issuer": idp.issuer,
                    "client_id": "sealgate",
                    "client_secret_file": str(secret),
                    "domains": ["example.org"],
                    "scopes": ["openid", "email", "profile", "sealgate"],
                }
            ]
        },
    )
    return running, base


def sign_in_with_the_provider(page, base: str) -> None:
    page.goto(base + "/")
    page.get_by_role("link", name="Sign in with Example Corp").click()
    page.fill("input[name=login]", ALICE)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_selector("#sg-step-inbox:not([hidden])", timeout=30_000)


def test_an_employee_signs_in_reads_her_copy_and_withdraws_from_one(corp, sink, browser):
    running, base = corp
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page, origin=base)
    sign_in_with_the_provider(page, base)  # the first time: the key is made here

    before = len(sink.messages)
    with running.client() as smtp:
        smtp.sendmail(ALICE, [BOB, CAROL], protected_message(to=f"{BOB}, {CAROL}"))
    links = {to: link_in(m) for to, m in notifications(sink.messages[before:]).items()}

    page.get_by_role("link", name="Messages you sent securely").click()
    page.wait_for_selector("h1:has-text('Messages you sent securely')")
    page.locator("a.sg-inbox-open").first.click()
    page.wait_for_selector(".sg-recipient")
    assert page.locator(".sg-recipient[data-status=notified]").count() == 2
    shot(page, "sender-view")

    page.get_by_role("link", name="Read your copy").click()
    page.wait_for_selector("#sg-step-message:not([hidden])", timeout=30_000)
    assert page.text_content("#sg-subject") == "Quarterly figures"  # decrypted here
    page.go_back()

    page.wait_for_selector(".sg-recipient")
    carol = page.locator(".sg-recipient", has_text=CAROL)
    carol.locator("summary").click()
    carol.get_by_role("button", name=f"Withdraw from {CAROL}").click()
    page.wait_for_selector(f".sg-notice:has-text('{CAROL} can no longer open this message.')")
    assert page.locator(".sg-recipient[data-status=withdrawn]").count() == 1

    # Bob lost his notification: a new link, made in this browser from Alice's own copy.
    before = len(sink.messages)
    page.locator(".sg-recipient", has_text=BOB).get_by_role(
        "button", name="Send the notification again"
    ).click()
    page.wait_for_selector(f"#sg-notice:has-text('A new notification is on its way to {BOB}')")
    (renewed,) = notifications(sink.messages[before:]).values()
    new_link = link_in(renewed)
    assert new_link.link_id != links[BOB].link_id
    watch.assert_clean()
    context.close()

    http = Browser(base)
    try:
        assert http.page(links[CAROL]).status_code == 410
        assert http.page(links[BOB]).status_code == 404  # the old link is no link any more
        assert http.page(new_link).status_code == 200
    finally:
        http.close()
    _, reader = running.gateway.vault.store.reader_by_link(new_link.id_hash)
    envelope, _ = running.gateway.vault.store.reader_by_link(new_link.id_hash)
    K = keys.unwrap_for_link(new_link, reader.wrapped_key, bytes.fromhex(envelope.envelope_id),
                             bytes.fromhex(reader.reader_id))  # fmt: skip
    assert len(K) == 32  # the browser's wrap opens with the Python twin

    again = browser.new_context(viewport=DESKTOP)  # a new browser: the key opens with the KEK
    page = again.new_page()
    watch = Watch(page, origin=base)
    sign_in_with_the_provider(page, base)
    page.click("#sg-settings summary")
    page.wait_for_selector("#sg-password-form[hidden]", state="attached")
    watch.assert_clean()
    again.close()
