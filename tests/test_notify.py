"""Notifications and the other messages Sealgate writes in its own name."""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.envelope.keys import Link
from gateway.notify import Branding, Notifier, Original, Settings, display_name

LINK = Link(bytes(range(16)), bytes(range(32)))
PORTAL = "https://portal.example.org"
URL = LINK.url(PORTAL)
SECRET = URL.partition("#")[2]
LOGO = "https://portal.example.org/assets/logo.png"
REVOKE = "https://portal.example.org/revoke/abc#def"
RELEASE = "https://portal.example.org/release/xyz#uvw"
EXPIRES = datetime(2026, 12, 28, 14, 0, tzinfo=UTC)
ENVELOPE = "0f" * 16
ORIGINAL = (
    b"From: Alice Example <alice@example.org>\r\nTo: bob@example.net\r\n"
    b"Subject: Merger plans for Q3\r\nMessage-ID: <m1@example.org>\r\n"
    b"References: <m0@example.org>\r\n\r\nThe secret body\r\n"
)
_URLS = re.compile(r"https?://[^\s\"'<>]+")


def notifier(**changes) -> Notifier:
    values = {
        "from_address": "secure@example.org",
        "hostname": "sealgate.example.org",
        "branding": Branding("Example Corp", LOGO, "#0b5cad"),
        **changes,
    }
    return Notifier(Settings(**values))


def original(data: bytes = ORIGINAL, sender: str = "alice@example.org") -> Original:
    return Original.of(sender, data)


def notification(recipient: str = "bob@example.net", data: bytes = ORIGINAL, **changes) -> bytes:
    return notifier(**changes).notification(original(data), recipient, URL, EXPIRES)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(raw: bytes) -> tuple[str, str]:
    """The decoded text and HTML parts (QP soft line breaks undone)."""
    msg = parse(raw)
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def check_wire_format(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# -- the notification ---------------------------------------------------------------


def test_english_notification_in_plain_words():
    raw = notification()
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["Subject"] == "Alice Example sent you a protected message"
    assert msg["From"].addresses[0].display_name == "Alice Example via Example Corp"
    assert msg["From"].addresses[0].addr_spec == "secure@example.org"
    assert msg["To"] == "bob@example.net"
    assert msg["Reply-To"] == "alice@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "en"
    assert msg["Message-ID"].endswith("@sealgate.example.org>")
    assert msg["Date"] is not None and msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert not any(part.is_attachment() for part in msg.walk())
    text, page = parts(raw)
    for body in (text, page):
        assert "Alice Example sent you a protected message" in body
        assert "28 December 2026 at 14:00 UTC" in body
        assert "personal" in body and "bob@example.net" in body
        assert "code" in body and "portal.example.org" in body
        assert "password" in body  # ... that it will never ask for one


def test_dutch_notification_in_plain_words():
    raw = notification(language="nl")
    msg = parse(raw)
    assert msg["Subject"] == "Alice Example heeft u een beveiligd bericht gestuurd"
    assert msg["Content-Language"] == "nl"
    text, page = parts(raw)
    for body in (text, page):
        assert "Alice Example heeft u een beveiligd bericht gestuurd" in body
        assert "28 december 2026 om 14:00 uur (UTC)" in body
        assert "persoonlijk" in body and "code" in body and "portal.example.org" in body
    assert '<html lang="nl">' in page


def test_the_html_part_is_a_complete_document_with_the_branding():
    _, page = parts(notification(branding=Branding("Example Corp", LOGO, "#ffcc00")))
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    for tag in ("<html", "<head>", '<meta charset="utf-8">', "<title>", "<body", "</body>"):
        assert tag in page
    assert "max-width:600px" in page
    assert "#ffcc00" in page
    assert "color:#000000" in page  # dark text on a light brand colour


def test_the_original_subject_and_content_stay_out_by_default():
    raw = notification()
    assert b"Merger" not in raw and b"secret body" not in raw
    text, page = parts(raw)
    assert "Merger" not in text + page


def test_an_administrator_may_choose_a_subject_per_language():
    subjects = {"en": "[{{ organisation }}] {{ subject }} (from {{ sender_name or sender }})"}
    msg = parse(notification(subject=subjects))
    assert msg["Subject"] == "[Example Corp] Merger plans for Q3 (from Alice Example)"
    dutch = parse(notification(subject=subjects, language="nl"))
    assert dutch["Subject"] == "Alice Example heeft u een beveiligd bericht gestuurd"


def test_a_bad_subject_template_is_refused_when_configured():
    with pytest.raises(ValueError, match="subject template"):
        notifier(subject={"en": "{{ nonsense }}"})
    with pytest.raises(ValueError, match="subject template"):
        notifier(subject={"nl": "{% if %}"})
    with pytest.raises(ValueError, match="unknown language"):
        notifier(subject={"de": "x"})


def test_threading_headers_keep_the_conversation_together():
    msg = parse(notification())
    assert msg["In-Reply-To"] == "<m1@example.org>"
    assert msg["References"] == "<m0@example.org> <m1@example.org>"


def test_in_reply_to_stands_in_for_missing_references():
    data = b"From: a@example.org\r\nMessage-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\n\r\nx\r\n"
    assert original(data).references == ("<m1@x>",)
    assert parse(notification(data=data))["References"] == "<m1@x> <m2@x>"


def test_a_long_references_chain_is_bounded():
    ids = " ".join(f"<r{i}@example.org>" for i in range(100))
    data = f"From: a@example.org\r\nMessage-ID: <last@x>\r\nReferences: {ids}\r\n\r\nx\r\n"
    thread = original(data.encode()).thread
    assert len(thread) == 20 and thread[0] == "<r0@example.org>" and thread[-1] == "<last@x>"


def test_a_broken_message_id_is_left_out():
    msg = parse(notification(data=b"From: a@example.org\r\nMessage-ID: not an id\r\n\r\nx\r\n"))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_the_link_appears_once_per_part_unbroken():
    raw = notification()
    assert URL.encode() not in raw  # quoted-printable folds it on the wire ...
    text, page = parts(raw)  # ... and decoding joins it again
    assert text.count(URL) == 1
    assert f'href="{html.escape(URL)}"' in page
    assert page.count(html.escape(URL)) == 1


def test_the_secret_appears_only_inside_the_link():
    raw = notification()
    text, page = parts(raw)
    assert text.count(SECRET) == text.count(URL) == 1
    assert page.count(SECRET) == page.count(URL) == 1
    assert SECRET not in str(parse(raw)["Subject"])
    headers = raw.split(b"\r\n\r\n")[0]
    assert SECRET.encode() not in headers


def test_no_urls_or_images_but_the_link_and_the_logo():
    text, page = parts(notification())
    assert _URLS.findall(text) == [URL]
    assert sorted(_URLS.findall(page)) == sorted([URL, LOGO])
    assert re.findall(r"<img\b[^>]*>", page) == [re.search(r"<img\b[^>]*>", page)[0]]
    assert f'src="{LOGO}"' in page
    _, plain_page = parts(notification(branding=Branding("Example Corp")))
    assert "<img" not in plain_page
    assert _URLS.findall(plain_page) == [URL]


def test_html_escapes_a_hostile_display_name():
    data = (
        b'From: "<img src=https://evil.example/p.gif><script>alert(1)</script>" '
        b"<a@example.org>\r\n\r\nx\r\n"
    )
    raw = notification(data=data, branding=Branding("Example Corp"))
    _, page = parts(raw)
    assert "<img" not in page and "<script" not in page
    assert "&lt;img src=https://evil.example/p.gif&gt;&lt;script&gt;" in page


def test_encoded_words_in_the_display_name_are_decoded():
    data = b"From: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.org>\r\n\r\nx\r\n"
    assert original(data).sender_name == "Zoë Müller"
    msg = parse(notification(data=data))
    assert msg["From"].addresses[0].display_name == "Zoë Müller via Example Corp"
    assert msg["Subject"] == "Zoë Müller sent you a protected message"


def test_an_encoded_display_name_cannot_smuggle_line_breaks():
    data = b"From: =?utf-8?q?Eve=0D=0ABcc=3A_x=40evil.example?= <eve@example.org>\r\n\r\nx\r\n"
    assert original(data).sender_name == "Eve Bcc: x@evil.example"
    raw = notification(data=data)
    assert b"\r\nBcc:" not in raw and parse(raw)["Bcc"] is None


@pytest.mark.parametrize(
    "field",
    [
        "=?utf-8?b?wPc=?= \u00ff".encode(),  # an encoded word that is not UTF-8, then UTF-8
        b"=?utf-8?b?wPc=?= \xff",  # ... then a raw byte that is no UTF-8 either
        b"\xc0\xf7 Alice",
    ],
)
def test_a_display_name_that_is_no_text_falls_back_to_the_address(field):
    """Attack finding 5: such a name refused a valid recipient with 553."""
    data = b"From: " + field + b" <alice@example.org>\r\n\r\nx\r\n"
    assert original(data).sender_name in (None, "=?utf-8?b?wPc=?= \u00ff")
    msg = parse(notification(data=data))
    assert msg["Subject"] == "alice@example.org sent you a protected message"
    assert msg["From"].addresses[0].display_name == "alice@example.org via Example Corp"


def test_without_a_display_name_the_address_is_shown():
    msg = parse(notification(data=b"From: alice@example.org\r\n\r\nx\r\n"))
    assert msg["Subject"] == "alice@example.org sent you a protected message"


def test_reply_to_follows_the_settings():
    assert parse(notification(reply_to="none"))["Reply-To"] is None
    assert parse(notification(reply_to="help@example.org"))["Reply-To"] == "help@example.org"
    null_sender = notifier().notification(original(sender=""), "bob@example.net", URL, EXPIRES)
    assert parse(null_sender)["Reply-To"] is None
    text, _ = parts(notification(reply_to="none"))
    assert "contact Alice Example (alice@example.org) directly" in text


def test_international_addresses_are_written_as_utf8_not_encoded_words():
    raw = notification(recipient="zoë@例え.jp")
    check_wire_format(raw)
    assert "To: zoë@例え.jp".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\nTo:")[1].split(b"\r\n")[0]
    assert str(parse(raw)["To"]) == "zoë@例え.jp"
    ascii_only = notification()
    assert ascii_only.isascii()


@pytest.mark.parametrize("recipient", ["", "bob", "bob@", "bo b@example.net", "a\r\nb@x.org"])
def test_an_address_that_cannot_be_written_is_a_value_error(recipient):
    with pytest.raises(ValueError, match="recipient"):
        notification(recipient=recipient)


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=200), message_id=st.text(max_size=300), subject=st.text(max_size=300))
def test_any_header_of_the_original_yields_a_notification(name, message_id, subject):
    def flat(value: str) -> str:
        return value.replace("\r", "").replace("\n", "")

    data = (
        f"From: {flat(name)} <a@example.org>\r\nMessage-ID: {flat(message_id)}\r\n"
        f"Subject: {flat(subject)}\r\nContent-Language: {flat(subject)}\r\n\r\nbody\r\n"
    ).encode("utf-8", "surrogateescape")
    raw = notification(data=data, subject={"en": "{{ subject }} {{ sender_name }}"})
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["To"] == "bob@example.net"
    text, page = parts(raw)
    assert text.count(URL) == 1 and page.count(URL) == 1


# -- language -----------------------------------------------------------------------


def test_language_rules():
    plain = original(b"From: a@example.org\r\n\r\nx\r\n")
    dutch_sender = original(b"From: a@example.org\r\nContent-Language: nl-NL\r\n\r\nx\r\n")
    english_sender = original(b"From: a@example.org\r\nContent-Language: de, en-GB\r\n\r\nx\r\n")
    auto = notifier(domain_languages={"nl": "nl", "example.be": "nl", "en.example.be": "en"})
    assert auto.language(plain, "bob@example.net") == "en"  # the default
    assert auto.language(plain, "bob@bedrijf.nl") == "nl"  # the domain map
    assert auto.language(plain, "bob@BEDRIJF.NL") == "nl"
    assert auto.language(plain, "bob@sub.example.be") == "nl"
    assert auto.language(plain, "bob@x.en.example.be") == "en"  # the longest suffix wins
    assert auto.language(plain, "bob@notexample.be") == "en"  # suffixes match whole labels
    assert auto.language(dutch_sender, "bob@example.net") == "nl"  # the sender's language
    assert auto.language(english_sender, "bob@bedrijf.nl") == "en"
    assert auto.language(None, "bob@bedrijf.nl") == "nl"
    assert notifier(default_language="nl").language(plain, "bob@example.net") == "nl"
    fixed = notifier(language="en", domain_languages={"nl": "nl"})
    assert fixed.language(dutch_sender, "bob@bedrijf.nl") == "en"  # configuration first


def test_settings_are_checked():
    with pytest.raises(ValueError, match="colour"):
        Branding(colour="blue")
    with pytest.raises(ValueError, match="logo_url"):
        Branding(logo_url="/assets/logo.png")
    with pytest.raises(ValueError, match="logo_url"):
        Branding(logo_url='https://x.example/"onload="x')
    with pytest.raises(ValueError, match="reply_to"):
        notifier(reply_to="nobody")
    with pytest.raises(ValueError, match="language"):
        notifier(language="de")
    with pytest.raises(ValueError, match="domain_languages"):
        notifier(domain_languages={"nl": "fr"})
    with pytest.raises(ValueError, match="from_address"):
        notifier(from_address="not an address")


# -- the other messages -------------------------------------------------------------


def test_receipt_to_the_sender():
    raw = notifier().receipt(
        original(), ENVELOPE, ["bob@example.net", "carol@example.net"], REVOKE, EXPIRES
    )
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["To"] == "alice@example.org"
    assert msg["From"].addresses[0].display_name == "Example Corp"
    assert msg["Reply-To"] is None
    assert msg["Subject"] == "Sent securely: your message to bob@example.net and 1 other"
    assert msg["In-Reply-To"] == "<m1@example.org>"
    assert msg["Auto-Submitted"] == "auto-generated"
    text, page = parts(raw)
    for body in (text, page):
        assert ENVELOPE in body and "carol@example.net" in body
        assert "28 December 2026 at 14:00 UTC" in body
        assert "Merger" not in body
    assert _URLS.findall(text) == [REVOKE]
    assert sorted(_URLS.findall(page)) == sorted([REVOKE, LOGO])
    dutch = parse(
        notifier(language="nl").receipt(original(), ENVELOPE, ["bob@example.net"], REVOKE, EXPIRES)
    )
    assert dutch["Subject"] == "Beveiligd verstuurd: uw bericht aan bob@example.net"


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [("en", "Your code: 123456", "valid for 10 minutes"), ("nl", "Uw code: 123456", "10 minuten")],
)
def test_code_email_has_the_code_and_no_link(language, subject, phrase):
    raw = notifier(branding=Branding("Example Corp")).code_email(
        "bob@example.net", "123456", 10, "alice@example.org", language
    )
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["Subject"] == subject
    assert msg["Reply-To"] == "alice@example.org"
    text, page = parts(raw)
    for body in (text, page):
        assert "123456" in body and phrase in body
        assert not _URLS.findall(body) and "<a " not in body
    assert ("ignore" if language == "en" else "negeren") in text
    with pytest.raises(ValueError, match="code"):
        notifier().code_email("bob@example.net", "12 34", 10, "a@example.org", language)


def test_read_notice():
    raw = notifier().read_notice("alice@example.org", "bob@example.net", ENVELOPE, EXPIRES, "en")
    msg = parse(raw)
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Read: your protected message to bob@example.net"
    text, _ = parts(raw)
    assert "bob@example.net opened" in text and ENVELOPE in text and "14:00 UTC" in text
    dutch = notifier().read_notice("alice@example.org", "bob@example.net", ENVELOPE, EXPIRES, "nl")
    assert "geopend" in parts(dutch)[0]


def test_held_notice_says_what_is_missing():
    held = [
        ("bob@example.net", ("phone",), "Held: needs a phone"),
        ("carol@example.net", (), "a <b>fax</b> number"),  # a rule holds carol: its words
    ]
    raw = notifier().held_notice(original(), held, RELEASE, "en")
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["To"] == "alice@example.org"
    assert msg["In-Reply-To"] == "<m1@example.org>"
    text, page = parts(raw)
    assert "bob@example.net: a mobile phone number" in text
    assert "carol@example.net: a <b>fax</b> number" in text
    assert "a &lt;b&gt;fax&lt;/b&gt; number" in page
    assert _URLS.findall(text) == [RELEASE]
    dutch = notifier().held_notice(original(), held[:1], RELEASE, "nl")
    assert "bob@example.net: een mobiel telefoonnummer" in parts(dutch)[0]


def test_secure_reply_with_attachments_round_trips():
    files = [
        ("report.pdf", "application/pdf", b"%PDF-1.7\x00\xff" * 100),
        ("notes ë.txt", "text/plain", b"a line\nanother\n"),
        ("../../etc/passwd", "multipart/mixed", b"x"),
    ]
    text = "Thanks, see attached.\r\n" + "a long line " * 200
    raw = notifier().secure_reply(
        to="alice@example.org",
        reader="bob@example.net",
        subject="Merger plans for Q3",
        text=text,
        attachments=files,
        in_reply_to="<notify1@sealgate.example.org>",
        references=["<m0@example.org>", "<m1@example.org>"],
        envelope_id=ENVELOPE,
        message_id="<reply1@sealgate.example.org>",
        language="en",
    )
    check_wire_format(raw)
    msg = parse(raw)
    assert msg["From"].addresses[0].display_name == "bob@example.net (secure reply)"
    assert msg["From"].addresses[0].addr_spec == "secure@example.org"
    assert msg["Reply-To"] == "bob@example.net"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Re: Merger plans for Q3"
    assert msg["Message-ID"] == "<reply1@sealgate.example.org>"
    assert msg["In-Reply-To"] == "<notify1@sealgate.example.org>"
    assert msg["References"] == ("<m0@example.org> <m1@example.org> <notify1@sealgate.example.org>")
    assert msg["X-Sealgate-Secure-Reply"] == ENVELOPE
    assert msg["Auto-Submitted"] is None
    body = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("Thanks, see attached.\n" + "a long line " * 10)
    assert "bob@example.net sent this reply securely" in body
    got = [
        (p.get_filename(), p.get_content_type(), p.get_content()) for p in msg.iter_attachments()
    ]
    assert got[0] == ("report.pdf", "application/pdf", files[0][2])
    assert got[1][:2] == ("notes ë.txt", "text/plain")
    assert got[1][2].replace("\r\n", "\n") == "a line\nanother\n"
    assert got[2] == ("_.._etc_passwd", "application/octet-stream", b"x")  # no path, no dot


def test_a_secure_reply_keeps_an_existing_re():
    raw = notifier().secure_reply(
        to="alice@example.org", reader="bob@example.net", subject="RE: lunch", text="ok",
        attachments=[], in_reply_to=None, references=[], envelope_id=ENVELOPE,
        message_id="<r@x>", language="nl",
    )  # fmt: skip
    msg = parse(raw)
    assert msg["Subject"] == "RE: lunch"
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert "beveiligd verstuurd" in msg.get_body(("plain",)).get_content()


def test_display_name_keeps_its_behaviour():
    assert display_name("  Alice\r\n\tExample\u200b ") == "Alice Example"
    assert display_name("\x00\x01") is None
    assert len(display_name("x" * 500)) == 78


@settings(max_examples=200, deadline=None)
@given(address=st.text(max_size=60) | st.emails())
def test_any_recipient_address_is_written_or_refused_with_a_value_error(address):
    try:
        raw = notification(recipient=address)
    except ValueError:
        return
    check_wire_format(raw)
    assert parse(raw)["To"] is not None


@settings(max_examples=100, deadline=None)
@given(subject=st.text(max_size=300), text=st.text(max_size=500), filename=st.text(max_size=300))
def test_any_secure_reply_content_is_written(subject, text, filename):
    raw = notifier().secure_reply(
        to="alice@example.org", reader="bob@example.net", subject=subject, text=text,
        attachments=[(filename, "application/octet-stream", b"data")], in_reply_to=None,
        references=[], envelope_id=ENVELOPE, message_id="<r@x>", language="en",
    )  # fmt: skip
    check_wire_format(raw)
    msg = parse(raw)
    assert str(msg["Subject"]).lower().lstrip().startswith("re:")
    (attachment,) = msg.iter_attachments()
    assert attachment.get_content() == b"data"
    assert "/" not in (attachment.get_filename() or "")
