"""The passkey challenge tokens and what the portal says when passkeys cannot work.

The WebAuthn ceremonies themselves run in Chromium with a virtual authenticator
(tests/test_account_browser.py); here, what needs no browser.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from gateway.identity.passkeys import CHALLENGE_MINUTES, PasskeyError, Passkeys
from gateway.service import passkeys
from tests.support.portal import Browser, portal_url, send_protected

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def rp() -> Passkeys:
    return Passkeys(os.urandom(32), "secure.example.org", "Example", "https://secure.example.org")


def test_sign_in_options_name_no_account(rp):
    options, token = rp.authentication(NOW)
    parsed = json.loads(options)
    assert parsed["rpId"] == "secure.example.org"
    assert parsed.get("allowCredentials", []) == []  # discoverable: nobody's are listed
    assert token


def test_registration_options_are_for_the_account(rp):
    options, _ = rp.registration("bob@example.net", [b"existing-credential"], NOW)
    parsed = json.loads(options)
    assert parsed["user"]["name"] == "bob@example.net"
    assert parsed["authenticatorSelection"]["residentKey"] == "required"
    assert len(parsed["excludeCredentials"]) == 1


@pytest.mark.parametrize(
    "change",
    ["tampered", "another key", "expired", "from the future", "another purpose", "garbage"],
)
def test_a_challenge_token_is_refused_when_it_is_not_this_ones(rp, change):
    _, token = rp.authentication(NOW)
    when = NOW
    if change == "tampered":
        token = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    elif change == "another key":
        rp = Passkeys(os.urandom(32), rp.rp_id, rp.rp_name, rp.origin)
    elif change == "expired":
        when = NOW + timedelta(minutes=CHALLENGE_MINUTES, seconds=1)
    elif change == "from the future":
        when = NOW - timedelta(minutes=2)
    elif change == "another purpose":
        _, token = rp.registration("bob@example.net", [], NOW)
    else:
        token = "!!"
    with pytest.raises(PasskeyError):
        rp.authenticate(token, "{}", [], when)


def test_passkeys_need_a_portal_url_with_a_host_name():
    assert passkeys(b"k" * 32, "http://127.0.0.1:8080", "Example") is None
    assert passkeys(b"k" * 32, "https://[::1]/", "Example") is None
    named = passkeys(b"k" * 32, "https://secure.example.org", "Example")
    assert named is not None and named.rp_id == "secure.example.org"
    assert named.origin == "https://secure.example.org"


def test_the_portal_on_an_ip_address_says_passkeys_are_off(make_gateway, sink):
    running = make_gateway(portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0})
    link = send_protected(running, sink)
    browser = Browser(portal_url(running))
    try:
        browser.page(link)
        headers = {"X-CSRF-Token": browser.csrf or "", "Origin": browser.base}
        answer = browser.http.post("/account/passkey/sign-in-options", json={}, headers=headers)
        assert answer.status_code == 404 and answer.json()["error"] == "passkeys-off"
    finally:
        browser.close()
