"""Second factors against a link holder who guesses (issue 11, findings 2 and 7).

A forwarded link is in a stranger's hands: a weak access code must not be
usable at all, guessing the sender's access code has a budget over the
message's life, and no flood of wrong guesses keeps the mailbox owner out,
because the emailed code (which only the owner receives) keeps working.
"""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from gateway.identity.secondfactor import factors, weak_access_code
from gateway.store.schema import codes, throttles
from tests.support.gateway import POLICIES
from tests.support.portal import Browser, code_in, code_mail, portal_url, send_protected
from tests.support.protected import notifications, protected_message

FAST = {"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0}
ATTACKER = {"X-Forwarded-For": "198.51.100.66"}  # through the trusted proxy (the test)
OWNER = {"X-Forwarded-For": "203.0.113.10"}


def text_of(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.mark.parametrize(
    "code",
    [
        "3",
        "1234567",
        "Tulip 42",
        "11111111",
        "12121212",
        "abab abab",
        "12345678",
        "87654321",
        "78901234",
        "ABCDEFGH",
        "  9 8 7 6 5 4 3 2  ",
    ],  # fmt: skip
)
def test_weak_access_codes(code: str) -> None:
    assert weak_access_code(code)


@pytest.mark.parametrize("code", ["tulip 4242", "7391 8264", "violet-kite", "a1b2c3d4"])
def test_access_codes_strong_enough(code: str) -> None:
    assert not weak_access_code(code)


def test_a_weak_access_code_counts_as_not_supplied() -> None:
    secret = b"k" * 32
    anyway = factors(None, phone=None, access_code="3", secret=secret, sms=False)
    assert anyway.methods == ("email",) and anyway.access_code_hash is None
    assert anyway.weak_access_code and not anyway.missing
    demanded = factors(["access-code"], phone=None, access_code="3", secret=secret, sms=False)
    assert demanded.methods == () and demanded.missing == ("access-code",)
    strong = factors(["access-code"], phone=None, access_code="tulip 4242", secret=secret,
                     sms=False)  # fmt: skip
    assert strong.methods == ("access-code",) and not strong.weak_access_code


def test_a_one_character_access_code_opens_nothing_and_the_sender_is_told(
    make_gateway, sink, caplog
):
    caplog.set_level(logging.WARNING, logger="sealgate")
    running = make_gateway(portal=FAST, notify={"receipt": True})
    link = send_protected(running, sink, extra_headers={"X-Sealgate-Access-Code": "3"})
    browser = Browser(portal_url(running))
    try:
        assert '"methods": ["email"]' in browser.page(link).text  # not offered
        guesses = [
            browser.post(link, "verify", {"method": "access-code", "code": str(n)})
            for n in range(10)
        ]
        assert {g.status_code for g in guesses} == {403}
        assert browser.post(link, "open").status_code == 401
        assert browser.verify_by_email(link, sink).status_code == 200  # the owner's way in
    finally:
        browser.close()
    (receipt,) = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    assert "too easy to guess" in text_of(receipt.data)
    assert "at least 8 characters" in text_of(receipt.data)
    assert any("access code too weak" in r.getMessage() for r in caplog.records)


def test_a_rule_demanding_the_access_code_holds_the_recipient_of_a_weak_one(
    make_gateway, sink, tmp_path
):
    pack = tmp_path / "code-only.toml"
    pack.write_text(
        '[[rules]]\nname = "code-only"\naction = "protect"\nverify = ["access-code"]\n'
        'when.subject_tag = ["[code]"]\n'
    )
    running = make_gateway(
        portal=FAST, policy={"packs": [str(POLICIES / "baseline.toml"), str(pack)]}
    )
    with running.client() as client:  # accepted: the recipient waits, sealed
        client.sendmail(
            "alice@example.org",
            ["dave@example.net"],
            protected_message(
                subject="[code] Results",
                to="dave@example.net",
                extra_headers={"X-Sealgate-Access-Code": "1234"},
            ),  # fmt: skip
        )
    assert not notifications(sink.messages)  # nobody got a link
    (notice,) = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    text = text_of(notice.data)
    assert "dave@example.net" in text and "at least 8 characters" in text


def test_the_access_code_budget_closes_that_way_in_but_not_the_emailed_code(make_gateway, sink):
    running = make_gateway(portal={**FAST, "access_code_attempts": 3, "link_attempts": 100})
    link = send_protected(running, sink, extra_headers={"X-Sealgate-Access-Code": "tulip 4242"})
    store = running.gateway.vault.store
    browser = Browser(portal_url(running))
    try:
        wrong = [
            browser.post(link, "verify", {"method": "access-code", "code": f"tulip 424{n}"})
            for n in range(3, 6)
        ]
        assert [w.status_code for w in wrong] == [401, 401, 403]
        assert wrong[0].json()["attempts_left"] == 2
        assert wrong[-1].json()["error"] == "closed"
        with store.engine.begin() as conn:  # hours later: no hourly count is left
            conn.execute(delete(throttles))
        right = browser.post(link, "verify", {"method": "access-code", "code": "tulip 4242"})
        assert right.status_code == 403 and right.json()["error"] == "closed"  # for good
        assert '"methods": ["email"]' in browser.page(link).text
        assert browser.verify_by_email(link, sink).status_code == 200
        assert browser.post(link, "open").status_code == 200
    finally:
        browser.close()


def test_a_right_access_code_costs_nothing_of_the_budget(make_gateway, sink):
    running = make_gateway(portal={**FAST, "access_code_attempts": 2})
    link = send_protected(running, sink, extra_headers={"X-Sealgate-Access-Code": "tulip 4242"})
    for _ in range(4):  # the recipient on four devices
        browser = Browser(portal_url(running))
        try:
            right = browser.post(link, "verify", {"method": "access-code", "code": "tulip4242"})
            assert right.status_code == 200
        finally:
            browser.close()
    browser = Browser(portal_url(running))
    try:
        typo = browser.post(link, "verify", {"method": "access-code", "code": "tulip 4243"})
        assert typo.status_code == 401 and typo.json()["attempts_left"] == 1
    finally:
        browser.close()


def test_a_flood_of_wrong_guesses_does_not_lock_the_owner_out(make_gateway, sink):
    """Whoever holds only the link guesses access codes and emailed codes as fast as the
    portal lets them; the owner then asks for a code and gets in at once."""
    running = make_gateway(
        portal={
            **FAST,
            "code_attempts": 3,
            "link_attempts": 4,
            "backoff_seconds": 1,
            "trusted_proxies": ["127.0.0.1/32"],
        }  # fmt: skip
    )
    link = send_protected(running, sink, extra_headers={"X-Sealgate-Access-Code": "violet 7391"})
    attacker = Browser(portal_url(running))
    owner = Browser(portal_url(running))
    try:
        flood = [
            attacker.post(
                link, "verify", {"method": "access-code", "code": f"guess {n}"}, headers=ATTACKER
            )  # fmt: skip
            for n in range(12)
        ]
        assert flood[-1].status_code == 429  # access-code entry locked for the hour
        before = len(sink.messages)
        assert attacker.post(link, "code", {"method": "email"}, headers=ATTACKER).status_code == 200
        mailed = code_in(code_mail(sink, "bob@example.net", before))
        for n in range(5):  # against the emailed code it cannot read
            attacker.post(link, "verify", {"method": "email", "code": f"00000{n}"},
                          headers=ATTACKER)  # fmt: skip
        # That code is spent (the owner would have to ask again) ...
        spent = owner.post(link, "verify", {"method": "email", "code": mailed}, headers=OWNER)
        assert spent.status_code == 401
        # ... and asking again works at once, and the fresh code opens the message.
        before = len(sink.messages)
        asked = owner.post(link, "code", {"method": "email"}, headers=OWNER)
        assert asked.status_code == 200, asked.text
        fresh = code_in(code_mail(sink, "bob@example.net", before))
        right = owner.post(link, "verify", {"method": "email", "code": fresh}, headers=OWNER)
        assert right.status_code == 200, right.text
        assert owner.post(link, "open", headers=OWNER).status_code == 200
    finally:
        attacker.close()
        owner.close()


def ask_for_codes(browser: Browser, link, sink, headers: dict[str, str]) -> tuple[list[str], Any]:
    """Ask for email codes until the portal refuses; the codes mailed, and the refusal."""
    mailed = []
    for _ in range(20):
        before = len(sink.messages)
        asked = browser.post(link, "code", {"method": "email"}, headers=headers)
        if asked.status_code != 200:
            return mailed, asked
        mailed.append(code_in(code_mail(sink, "bob@example.net", before)))
    raise AssertionError("no send limit")


def test_a_link_holder_who_makes_us_send_every_code_does_not_lock_the_owner_out(make_gateway, sink):
    """Whoever holds only the link asks for codes until the hour's limit and enters wrong
    ones; every code went to the owner, who opens the message with any of them."""
    running = make_gateway(portal={**FAST, "trusted_proxies": ["127.0.0.1/32"]})
    link = send_protected(running, sink)
    attacker = Browser(portal_url(running))
    try:
        mailed, refused = ask_for_codes(attacker, link, sink, ATTACKER)
        assert len(mailed) == 5  # codes_per_hour
        assert refused.status_code == 429 and refused.json()["error"] == "send-limit"
        for n in range(4):  # one try short of spending the codes
            wrong = attacker.post(link, "verify", {"method": "email", "code": f"00000{n}"},
                                  headers=ATTACKER)  # fmt: skip
            assert wrong.status_code == 401, wrong.text
    finally:
        attacker.close()
    for code in (mailed[0], mailed[2]):  # the first, and another on a second device
        owner = Browser(portal_url(running))
        try:
            right = owner.post(link, "verify", {"method": "email", "code": code}, headers=OWNER)
            assert right.status_code == 200, right.text
            assert owner.post(link, "open", headers=OWNER).status_code == 200
        finally:
            owner.close()


def test_live_codes_share_their_tries(make_gateway, sink):
    """Five codes live at once give a guesser no more tries than one: each wrong entry is
    compared with all of them and costs each one try, so an hour allows at most
    codes_per_hour x code_attempts comparisons, however the requests are spread."""
    running = make_gateway(portal={**FAST, "code_attempts": 3})
    link = send_protected(running, sink)
    attacker, owner = Browser(portal_url(running)), Browser(portal_url(running))

    def guess() -> int:
        wrong = attacker.post(link, "verify", {"method": "email", "code": "000000"})
        assert wrong.status_code == 401
        return int(wrong.json()["attempts_left"])

    try:
        mailed, _ = ask_for_codes(attacker, link, sink, {})
        assert [guess(), guess()] == [2, 1]  # across all five, not 3 tries each
        # The owner's right code costs the others nothing ...
        right = owner.post(link, "verify", {"method": "email", "code": mailed[0]})
        assert right.status_code == 200, right.text
        # ... and the third wrong entry spends all four that are left.
        assert [guess(), guess()] == [0, 0]
        for code in mailed[1:]:
            spent = attacker.post(link, "verify", {"method": "email", "code": code})
            assert spent.status_code == 401 and spent.json()["attempts_left"] == 0
        # And the hour's limit stops new ones: 5 codes x 3 tries is all this hour gives.
        refused = attacker.post(link, "code", {"method": "email"})
        assert refused.status_code == 429 and refused.json()["error"] == "send-limit"
    finally:
        attacker.close()
        owner.close()


def test_the_send_limit_says_when_a_new_code_can_be_sent_and_the_hour_rolls(make_gateway, sink):
    running = make_gateway(portal={**FAST, "codes_per_hour": 2})
    link = send_protected(running, sink)
    store = running.gateway.vault.store
    browser = Browser(portal_url(running))

    def age_code(n: int, minutes: int) -> None:
        """The n-th code (in sending order) was sent ``minutes`` ago."""
        with store.engine.begin() as conn:
            ids = conn.execute(select(codes.c.code_id).order_by(codes.c.code_id)).scalars().all()
            sent = datetime.now(UTC) - timedelta(minutes=minutes)
            conn.execute(update(codes).where(codes.c.code_id == ids[n]).values(created_at=sent))

    try:
        mailed, refused = ask_for_codes(browser, link, sink, {})
        assert len(mailed) == 2
        assert refused.json()["error"] == "send-limit"
        assert 3590 <= refused.json()["retry_after"] <= 3600
        assert refused.headers["retry-after"] == str(refused.json()["retry_after"])
        age_code(0, 50)  # the window rolls: the first code leaves it in ten minutes
        again = browser.post(link, "code", {"method": "email"})
        assert again.status_code == 429 and 590 <= again.json()["retry_after"] <= 600
        age_code(0, 61)  # ... and has left it: one code can be sent, not a new hour's worth
        assert browser.post(link, "code", {"method": "email"}).status_code == 200
        age_code(1, 20)
        full = browser.post(link, "code", {"method": "email"})
        assert full.status_code == 429 and 2390 <= full.json()["retry_after"] <= 2400
        # Refused sends take nothing away: the codes mailed still open the message.
        right = browser.post(link, "verify", {"method": "email", "code": mailed[1]})
        assert right.status_code == 200, right.text
    finally:
        browser.close()
