"""The recipient's whole experience in a real browser (Debian's chromium via Playwright).

SMTP in -> notification at the upstream -> the link opened in chromium -> a
code by email -> verified -> text, sanitised HTML and every attachment, each
with the SHA-256 of what was sent -> a secure reply that reaches the original
sender threaded, DKIM-signed and readable only with the gateway's reply key.
Along the way: no CSP violation, the security headers on every response, and
screenshots of the main pages into docs/screenshots/ (linked from the README).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from gateway.envelope import keys
from gateway.envelope.reply import ReplyError, ReplyKey
from gateway.mailauth.dkimsign import SigningKey, generate_key
from tests.support.browser import chromium
from tests.support.gateway import wait_for
from tests.support.portal import Browser, code_in, code_mail, portal_url
from tests.support.protected import link_in, notifications

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def signing(tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_bytes(generate_key("rsa"))
    return path, SigningKey.from_pem_file("example.org", "s1", path).dns_record()


@pytest.fixture
def portal(make_gateway, signing):
    path, _ = signing
    return make_gateway(
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0},
        notify={"from_address": "secure@example.org", "organisation": "Example Care"},
        dkim={"keys": [{"domain": "example.org", "selector": "s1", "key_file": str(path)}]},
    )


class Watch:
    """Everything a page did that a test must check: console, errors, response headers."""

    def __init__(self, page, origin: str = "http://127.0.0.1") -> None:
        """Headers are checked on responses from ``origin`` (the portal's; not a peer's such
        as an identity provider's on another loopback port)."""
        self.origin = origin
        self.console: list[str] = []
        self.errors: list[str] = []
        self.missing_headers: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", self._response)

    def _response(self, response) -> None:
        if not response.url.startswith(self.origin):
            return
        headers = response.headers
        for name in SECURITY_HEADERS:
            if name not in headers:
                self.missing_headers.append(f"{name} on {response.url}")

    def assert_clean(self) -> None:
        violations = [m for m in self.console if "Content Security Policy" in m]
        assert not violations, violations
        assert not self.errors, self.errors
        assert not [m for m in self.console if m.startswith("error")], self.console
        assert not self.missing_headers, self.missing_headers


def rich_message(attachments: dict[str, bytes]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "[secure] Lab results"
    msg["Message-ID"] = "<lab-1@example.org>"
    msg.set_content("Hello Bob,\nyour results are attached.\n")
    msg.add_alternative(
        '<p style="color: #1a5e20">Hello <b>Bob</b>, your <i>results</i> are attached.</p>'
        '<script>document.title="pwned"</script><img src="https://tracker.example/p.gif">',
        subtype="html",
    )
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def verify_with_email_code(page, sink, to: str = "bob@example.net") -> None:
    before = len(sink.messages)
    page.click('button[data-method="email"]')
    code = code_in(code_mail(sink, to, before))
    page.wait_for_selector("#sg-step-code:not([hidden])")
    page.fill("#sg-code", code)
    page.click("#sg-code-submit")
    page.wait_for_selector("#sg-step-message:not([hidden])", timeout=20_000)


def test_recipient_verifies_reads_downloads_and_replies(portal, sink, browser, signing, tmp_path):
    attachments = {"results.pdf": os.urandom(300_000), "scan.bin": os.urandom(70_000)}
    with portal.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], rich_message(attachments))
    notice = notifications(sink.messages)["bob@example.net"]
    link = link_in(notice)
    url = link.url(portal_url(portal))

    # The notification, rendered as a mail client would show its HTML part.
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    mail_page = context.new_page()
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    mail_page.set_content(parsed.get_body(("html",)).get_content())
    shot(mail_page, "notification-email")
    mail_page.close()

    page = context.new_page()
    watch = Watch(page)
    page.goto(url)
    page.wait_for_selector("#sg-step-method:not([hidden])")
    shot(page, "verify-desktop")
    verify_with_email_code(page, sink)

    assert "your results are attached" in page.text_content("#sg-text-alt")
    frame = page.frame_locator("#sg-html")
    assert "your results are attached" in frame.locator("body").inner_text()
    assert frame.locator("script").count() == 0
    assert page.get_attribute("#sg-html", "sandbox") == ""
    assert page.title() != "pwned"
    shot(page, "message-desktop")

    downloaded = {}
    for item in page.locator("#sg-attachment-list li").all():
        name = item.locator(".sg-file-name").inner_text().strip()
        with page.expect_download() as info:
            item.locator(".sg-download").click()
        downloaded[info.value.suggested_filename] = Path(info.value.path()).read_bytes()
        assert name == info.value.suggested_filename
    assert {n: hashlib.sha256(d).hexdigest() for n, d in downloaded.items()} == {
        n: hashlib.sha256(d).hexdigest() for n, d in attachments.items()
    }
    with page.expect_download() as info:
        page.click("#sg-original .sg-download")
    original = Path(info.value.path()).read_bytes()
    assert b"Message-ID: <lab-1@example.org>" in original
    assert info.value.suggested_filename.endswith(".eml")

    # A secure reply with an attachment.
    reply_file = os.urandom(20_000)
    page.fill("#sg-reply-text", "Thank you, I will call on Monday.")
    page.set_input_files(
        "#sg-reply-files",
        files=[{"name": "consent.bin", "mimeType": "application/octet-stream",
                "buffer": reply_file}],
    )  # fmt: skip
    before = len(sink.messages)
    with page.expect_request(lambda r: r.url.endswith("/reply")) as sent:
        page.click("#sg-reply-send")
    blob = sent.value.post_data_buffer
    page.wait_for_selector("#sg-reply-status:not(:empty)")
    wait_for(lambda: any(m.rcpt_tos == ("alice@example.org",) for m in sink.messages[before:]),
             what="the secure reply upstream")  # fmt: skip
    (reply,) = [m for m in sink.messages[before:] if m.rcpt_tos == ("alice@example.org",)]
    watch.assert_clean()

    # The upload is ciphertext that only the gateway's reply key opens.
    assert b"call on Monday" not in blob and reply_file[:64] not in blob
    reply_key = ReplyKey.load_or_create(tmp_path / "var" / "reply-key.pem")
    content = reply_key.open(blob, max_plaintext=10_000_000)
    assert content.text == "Thank you, I will call on Monday."
    with pytest.raises(ReplyError):
        ReplyKey.load_or_create(tmp_path / "other-key.pem", bits=2048).open(
            blob, max_plaintext=10_000_000
        )

    # Delivered into the sender's mailbox: threaded, marked, signed, with the attachment.
    message = email.message_from_bytes(reply.data, policy=email.policy.default)
    assert message["In-Reply-To"] == "<lab-1@example.org>"
    assert "<lab-1@example.org>" in message["References"]
    assert message["X-Sealgate-Secure-Reply"]
    assert "bob@example.net" in message["Reply-To"]
    assert "call on Monday" in message.get_body(("plain",)).get_content()
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "consent.bin" and part.get_content() == reply_file
    _, record = signing
    assert dkim.verify(
        reply.data,
        dnsfunc=lambda name, timeout=5: (
            record.encode() if name == b"s1._domainkey.example.org." else None
        ),
    )
    # ... and the sealed text is gone from the store once delivered.
    store = portal.gateway.vault.store
    with store.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT count(*) FROM replies WHERE blob IS NOT NULL").scalar()
            == 0
        )

    # The same message on a phone.
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    small = phone.new_page()
    small_watch = Watch(small)
    small.goto(url)
    small.wait_for_selector("#sg-step-method:not([hidden])")
    shot(small, "verify-phone")
    verify_with_email_code(small, sink)
    shot(small, "message-phone")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"
    small_watch.assert_clean()
    phone.close()
    context.close()


def test_a_25_mb_attachment_downloads_intact(make_gateway, sink, browser):
    portal = make_gateway(
        smtp={"max_message_size": 40 * 1024 * 1024},
        portal={"listen": "127.0.0.1:0", "url": "", "backoff_seconds": 0},
    )
    big = os.urandom(25 * 1024 * 1024)
    with portal.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], rich_message({"big.bin": big}))
    link = link_in(notifications(sink.messages)["bob@example.net"])
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    watch = Watch(page)
    page.goto(link.url(portal_url(portal)))
    verify_with_email_code(page, sink)
    with page.expect_download(timeout=60_000) as info:
        page.locator("#sg-attachment-list .sg-download").first.click()
    data = Path(info.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(big).hexdigest()
    watch.assert_clean()
    context.close()


def test_a_link_without_its_secret_explains_itself(portal, sink, browser):
    with portal.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], rich_message({}))
    link = link_in(notifications(sink.messages)["bob@example.net"])
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page)
    page.goto(f"{portal_url(portal)}/m/{keys.b64url(link.link_id)}")  # the fragment lost
    page.wait_for_selector("#sg-step-link:not([hidden])")
    assert len(sink.messages) == 1  # nothing was sent
    watch.assert_clean()
    context.close()


def test_revoked_message_page_names_the_sender(portal, sink, browser):
    with portal.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], rich_message({}))
    link = link_in(notifications(sink.messages)["bob@example.net"])
    store = portal.gateway.vault.store
    envelope_id = store.reader_by_link(link.id_hash)[0].envelope_id
    store.shred(envelope_id, "revoked", detail="test")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    watch = Watch(page)
    response = page.goto(link.url(portal_url(portal)))
    assert response.status == 410
    assert "alice@example.org" in page.inner_text("main")
    shot(page, "revoked-phone")
    watch.console = [m for m in watch.console if "410" not in m]  # the page's own status
    watch.assert_clean()
    context.close()


def test_after_a_flood_of_code_requests_the_page_takes_a_code_already_sent(
    portal, sink, browser
):
    """A link holder made the portal send the hour's codes (all to Bob). Bob's page says
    when a new code can be sent, keeps asking for one disabled, and opens the message with
    the first code in his mailbox."""
    with portal.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], rich_message({}))
    link = link_in(notifications(sink.messages)["bob@example.net"])
    stranger = Browser(portal_url(portal))
    try:
        before = len(sink.messages)
        asked = [stranger.post(link, "code", {"method": "email"}) for _ in range(6)]
        assert [a.status_code for a in asked] == [200] * 5 + [429]
        wait_for(lambda: len(code_mails(sink, before)) == 5, what="five code mails")
        first = code_in(code_mails(sink, before)[0])
    finally:
        stranger.close()
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(page)
    page.goto(link.url(portal_url(portal)))
    page.click('button[data-method="email"]')
    page.wait_for_selector("#sg-step-code:not([hidden])")
    said = page.text_content("#sg-error") or ""
    assert "still works" in said and "ask for a new code in 60 minutes" in said, said
    assert page.is_disabled("#sg-resend") and page.is_enabled("#sg-code-submit")
    page.fill("#sg-code", first)
    page.click("#sg-code-submit")
    page.wait_for_selector("#sg-step-message:not([hidden])", timeout=20_000)
    assert "your results are attached" in page.text_content("#sg-text-alt")
    assert not watch.errors, watch.errors
    context.close()


def code_mails(sink, after: int) -> list:
    return [
        m
        for m in sink.messages[after:]
        if m.rcpt_tos == ("bob@example.net",) and b"/m/" not in m.data
    ]
