"""Single sign-on against a real OpenID provider (oidc-provider on Node.js, tests/support/oidc.py).

Over HTTP, with Python in the browser's part (keys.py makes and opens the keys as account.js
does): the first sign-in creates the account, the next one opens its key, the sent messages
are there; and everything a hostile or broken provider can do ends on a clear page with
nothing signed in: another audience or issuer, a replayed code, an expired token, a wrong
nonce, a forged state, an address outside the provider's domains, no key secret, a provider
that is down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import config
from gateway.envelope import keys
from gateway.identity.sso import OIDCProvider as RelyingParty
from gateway.identity.sso import SSOError
from gateway.store.directory import Directory, UserFields
from gateway.store.schema import events
from tests.support.gateway import POLICIES
from tests.support.oidc import OIDCProvider, sign_in
from tests.support.portal import Browser
from tests.support.process import free_port
from tests.support.protected import protected_message
from tests.test_accounts import api

ALICE = "alice@example.org"
PASSWORD = "correct horse battery staple"
SCOPES = ["openid", "email", "profile", "sealgate"]


@dataclasses.dataclass
class Setup:
    idp: OIDCProvider
    running: Any  # the gateway
    base: str
    secret_file: str

    @property
    def callback(self) -> str:
        return f"{self.base}/sso/corp/callback"


@pytest.fixture
def setup(make_gateway, oidc_provider, store_url, tmp_path) -> Setup:
    """A provider with Alice (and Mallory from another domain), and the gateway using it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp = oidc_provider()
    idp.add_account("alice", email=ALICE, password=PASSWORD, name="Alice Example")
    idp.add_account("mallory", email="mallory@example.net", password=PASSWORD)
    client = idp.add_client([f"{base}/sso/corp/callback"], client_id="sealgate")
    idp.add_client([f"{base}/sso/corp/callback"], client_id="other-app")
    idp.start()
    secret_file = tmp_path / "sso-client-secret"
    secret_file.write_text(client.client_secret + "\n")
    hr = tmp_path / "hr.toml"  # colleagues' HR mail is sealed too (an administrator's choice)
    hr.write_text('[[rules]]\nname = "hr"\naction = "protect"\noverride = true\n'
                  'when.subject_tag = ["[hr]"]\n')  # fmt: skip
    running = make_gateway(
        store={"database": store_url},
        portal={"listen": f"127.0.0.1:{port}", "url": "", "backoff_seconds": 0},
        policy={"packs": [str(POLICIES / "baseline.toml"), str(hr)]},
        sso={"providers": [provider_table(idp.issuer, str(secret_file))]},
    )
    return Setup(idp, running, base, str(secret_file))


def provider_table(issuer: str, secret_file: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "title": "Example Corp",
        "issuer": issuer,
        "client_id": "sealgate",
        "client_secret_file": secret_file,
        "domains": ["example.org"],
        "scopes": SCOPES,
    } | changes


def arrive(setup: Setup, browser: Browser, login: str = "alice") -> httpx.Response:
    """Sign in through the provider as a person would; the portal's answer to the callback."""
    started = browser.http.get("/sso/corp", follow_redirects=False)
    assert started.status_code == 303, started.text
    with setup.idp.http() as idp_browser:
        back = sign_in(idp_browser, started.headers["location"], login=login,
                       password=PASSWORD, redirect_uri=setup.callback)  # fmt: skip
    return browser.http.get(str(back).removeprefix(setup.base))


def page_of(response: httpx.Response) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="sg-page">(.*?)</script>',
                      response.text, re.S)  # fmt: skip
    assert found, response.text[:500]
    return json.loads(html.unescape(found.group(1)))


def make_key(browser: Browser, page: dict[str, Any]) -> bytes:
    """What sso.js does at the first sign-in: a key pair sealed under the new KEK."""
    pair = keys.generate_key_pair(2048)
    kek = keys.b64url_decode(page["new_kek"])
    sealed = keys.encrypt_private_key(kek, pair.private_der, page["address"].encode())
    made = api(browser, "/account/sso/new-key", {
        "address": page["address"], "token": page["new_key_token"],
        "public_key": keys.b64url(pair.public_der), "encrypted_private_key": keys.b64url(sealed),
    })  # fmt: skip
    assert made.status_code == 200, made.text
    return pair.private_der


def test_the_first_sign_in_makes_the_key_and_the_next_opens_it(setup, sink):
    first = Browser(setup.base)
    try:
        answer = arrive(setup, first)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        page = page_of(answer)
        assert page["mode"] == "create" and page["address"] == ALICE
        secret = setup.idp.account("alice").key_secret
        assert secret not in answer.text  # the key secret never leaves the server
        private = make_key(first, page)
        assert api(first, "/account/inbox", {}).status_code == 200  # signed in

        with setup.running.client() as smtp:  # Alice sends a protected message
            smtp.sendmail(ALICE, ["bob@example.net"], protected_message())
        sent = first.http.get("/sent")
        assert sent.status_code == 200 and "bob@example.net" in sent.text
    finally:
        first.close()

    again = Browser(setup.base)
    try:
        page = page_of(arrive(setup, again))
        assert page["mode"] == "signed-in" and page["new_key_token"] is None
        blob = keys.b64url_decode(page["encrypted_private_key"])
        kek = keys.b64url_decode(page["kek"])
        assert keys.decrypt_private_key(kek, blob, ALICE.encode()) == private
        assert again.http.get("/sent").status_code == 200
    finally:
        again.close()
    store = setup.running.gateway.vault.store
    account = store.get_account(ALICE)
    assert account.kdf == keys.SSO_KDF
    assert secret.encode() not in account.login_verifier.encode()


def test_what_goes_wrong_ends_on_a_page_with_nothing_signed_in(setup, sink):
    browser = Browser(setup.base)
    try:
        outside = arrive(setup, browser, login="mallory")  # mallory@example.net
        assert outside.status_code == 401 and "Sign-in refused" in outside.text
        assert "sg_account" not in browser.http.cookies

        started = browser.http.get("/sso/corp", follow_redirects=False)
        with setup.idp.http() as idp_browser:
            back = sign_in(idp_browser, started.headers["location"], login="alice",
                           password=PASSWORD, redirect_uri=setup.callback)  # fmt: skip
        forged = str(back).replace("state=", "state=x")
        refused = browser.http.get(forged.removeprefix(setup.base))
        assert refused.status_code == 400 and "could not be finished" in refused.text
        replayed = browser.http.get(str(back).removeprefix(setup.base))  # the cookie is gone
        assert replayed.status_code == 400
        cancelled = browser.http.get("/sso/corp/callback?error=access_denied&state=x")
        assert cancelled.status_code == 400 and "Sign-in cancelled" in cancelled.text
        assert "sg_account" not in browser.http.cookies

        # The provider goes down between the person's login there and the code's exchange.
        started = browser.http.get("/sso/corp", follow_redirects=False)
        with setup.idp.http() as idp_browser:
            back = sign_in(idp_browser, started.headers["location"], login="alice",
                           password=PASSWORD, redirect_uri=setup.callback)  # fmt: skip
        setup.idp.stop()
        down = browser.http.get(str(back).removeprefix(setup.base))
        assert down.status_code == 503 and "cannot be reached" in down.text
        assert "sg_account" not in browser.http.cookies
    finally:
        browser.close()
    store = setup.running.gateway.vault.store
    with store.engine.connect() as conn:
        failed = conn.scalars(select(events.c.detail).where(events.c.kind == "sso-failed")).all()
    for reason in ("address", "state", "cancelled", "provider-down"):
        assert any(f"reason={reason}" in detail for detail in failed), failed


def relying_party(setup: Setup, **changes: Any) -> RelyingParty:
    table = provider_table(setup.idp.issuer, setup.secret_file) | changes
    settings = config.SSOProvider.model_validate(table)
    secret = Path(table["client_secret_file"]).read_text().strip()
    return RelyingParty(settings, setup.callback, secret)


def real_token(setup: Setup, party: RelyingParty) -> tuple[str, Any]:
    """An ID token the provider issued to ``party`` through the whole flow, and the state."""

    async def flow() -> tuple[str, Any]:
        url, state = await party.start("/")
        with setup.idp.http() as idp_browser:
            back = sign_in(idp_browser, url, login="alice", password=PASSWORD,
                           redirect_uri=setup.callback)  # fmt: skip
        return await party.exchange(state, back.params["code"]), state

    return asyncio.run(flow())


def test_id_tokens_for_another_audience_nonce_time_or_issuer_are_refused(setup):
    ours = relying_party(setup)
    token, state = real_token(setup, ours)
    identity = asyncio.run(ours.identity_in(token, state.nonce, time.time()))
    assert identity.address == ALICE and identity.key_secret  # the real one checks out

    def refused(party: RelyingParty, nonce: str, now: float) -> str:
        with pytest.raises(SSOError) as raised:
            asyncio.run(party.identity_in(token, nonce, now))
        return str(raised.value)

    assert "nonce" in refused(ours, "another-nonce", time.time())
    assert "exp" in refused(ours, state.nonce, time.time() + 2 * 3600)
    assert "aud" in refused(relying_party(setup, client_id="other-app"), state.nonce, time.time())
    tampered = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    with pytest.raises(SSOError, match="verify"):
        asyncio.run(ours.identity_in(tampered, state.nonce, time.time()))
    with pytest.raises(SSOError, match="refused the code"):  # a code works once
        asyncio.run(ours.exchange(state, "not-a-code"))


def test_a_token_from_another_provider_is_refused(setup, oidc_provider):
    other = oidc_provider()
    other.add_account("alice", email=ALICE, password=PASSWORD)
    other.add_client([setup.callback], client_id="sealgate")
    other.start()
    theirs = relying_party(setup, issuer=other.issuer)
    theirs._client_secret = other.clients[0].client_secret  # noqa: SLF001 - their client

    async def flow() -> tuple[str, Any]:
        url, state = await theirs.start("/")
        with other.http() as idp_browser:
            back = sign_in(idp_browser, url, login="alice", password=PASSWORD,
                           redirect_uri=setup.callback)  # fmt: skip
        return await theirs.exchange(state, back.params["code"]), state

    token, state = asyncio.run(flow())
    with pytest.raises(SSOError):
        asyncio.run(relying_party(setup).identity_in(token, state.nonce, time.time()))


def test_without_the_key_secret_nobody_is_signed_in(make_gateway, oidc_provider, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp = oidc_provider()
    idp.add_account("alice", email=ALICE, password=PASSWORD)
    client = idp.add_client([f"{base}/sso/corp/callback"], client_id="sealgate")
    idp.start()
    secret_file = tmp_path / "secret"
    secret_file.write_text(client.client_secret)
    running = make_gateway(
        portal={"listen": f"127.0.0.1:{port}", "url": "", "backoff_seconds": 0},
        sso={
            "providers": [provider_table(idp.issuer, str(secret_file), scopes=["openid", "email"])]
        },  # fmt: skip
    )
    setup = Setup(idp, running, base, str(secret_file))
    browser = Browser(base)
    try:
        answer = arrive(setup, browser)
        assert answer.status_code == 401 and "Sign-in refused" in answer.text
        assert "sg_account" not in browser.http.cookies
    finally:
        browser.close()


def test_a_person_the_directory_deactivated_is_not_signed_in(setup):
    store = setup.running.gateway.vault.store
    directory = Directory(store)
    now = datetime.now(UTC)
    fields = UserFields(user_name=ALICE, external_id=None, display_name="Alice", name=None,
                        active=True)  # fmt: skip
    person = directory.add_user(fields, now)
    browser = Browser(setup.base)
    try:
        make_key(browser, page_of(arrive(setup, browser)))  # active: signed in
        directory.replace_user(person.user_id, replace(fields, active=False), now,
                               expected_version=person.version)  # fmt: skip
        assert api(browser, "/account/inbox", {}).status_code == 401  # the session ended
        refused = arrive(setup, browser)
        assert refused.status_code == 403 and "switched off" in refused.text
        assert api(browser, "/account/inbox", {}).status_code == 401  # nothing signed in
    finally:
        browser.close()


def test_a_colleague_reads_protected_internal_mail_after_single_sign_on(setup, sink):
    """Where a policy protects mail between colleagues (HR here), it is sealed to the
    colleague's account and read in the same inbox, after signing in with the organisation."""
    browser = Browser(setup.base)
    try:
        private = make_key(browser, page_of(arrive(setup, browser)))  # Alice's account
        with setup.running.client() as smtp:
            smtp.sendmail("bob@example.org", [ALICE],
                          protected_message(to=ALICE, subject="[hr] Your appraisal"))  # fmt: skip
        (listed,) = api(browser, "/account/inbox", {}).json()["messages"]
        assert listed["sender"] == "bob@example.org" and listed["opens_here"] is True
        opened = api(browser, f"/account/messages/{listed['envelope_id']}/open", {}).json()
    finally:
        browser.close()
    K = keys.unwrap_content_key(private, keys.b64url_decode(opened["wrapped_key"]))
    assert len(K) == 32
    assert not [m for m in sink.messages if b"Your appraisal" in m.data]  # nothing in the clear
