"""What a sender asks for in header fields: how long the message stays readable
(X-Sealgate-Expires) and a personal note in the notification (X-Sealgate-Note).

Seen as the people involved see it: the recipient's notification (text and HTML,
English and Dutch), the sender's receipt, the envelope's expiry and audit trail,
and, for everyone downstream, that neither field leaves Sealgate: not in relayed
copies, notifications, bounces, nor in the sealed message when it is opened.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.envelope import opener
from gateway.mail.instructions import Retention, expiry, requested
from gateway.notify import Branding, Notifier, Original, Settings
from gateway.notify.note import shown
from tests.support.protected import link_in, notifications, open_with_link, protected_message

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
LIMITS = Retention(timedelta(days=30), timedelta(days=1), timedelta(days=90))
FIELD_NAMES = (b"X-Sealgate-Expires", b"X-Sealgate-Note", b"X-Sealgate-Phone",
               b"X-Sealgate-Access-Code")  # fmt: skip
URL = "https://portal.example.org/m/abc#def"


def header(name: str, value: str) -> bytes:
    return f"From: alice@example.org\r\n{name}: {value}\r\n\r\nbody\r\n".encode()


def text_and_html(data: bytes) -> tuple[str, str]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and html is not None

    def plain(part: email.message.EmailMessage) -> str:
        return str(part.get_content()).replace("\r\n", "\n")

    return plain(text), plain(html)


def store_of(running):
    return running.gateway.vault.store


def send(running, raw: bytes, recipients=("bob@example.net",)) -> None:
    with running.client() as client:
        client.sendmail("alice@example.org", list(recipients), raw)


def only_envelope(running):
    store = store_of(running)
    (record,) = store.list()
    return record, store.events(record.envelope_id)


def expiry_events(events) -> list[str]:
    return [e.detail for e in events if e.kind == "expiry"]


# -- X-Sealgate-Expires: what a value asks for ------------------------------------------


@pytest.mark.parametrize(
    ("value", "span"),
    [
        ("14", timedelta(days=14)),
        ("14d", timedelta(days=14)),
        (" 14 days ", timedelta(days=14)),
        ("1 day", timedelta(days=1)),
        ("48h", timedelta(hours=48)),
        ("36 Hours", timedelta(hours=36)),
        # A date alone: readable through that day (UTC).
        ("2026-12-15", datetime(2026, 12, 15, 23, 59, tzinfo=UTC) - NOW),
        ("2026-12-15T17:00:00+01:00", datetime(2026, 12, 15, 16, tzinfo=UTC) - NOW),
        ("2026-12-15 17:00", datetime(2026, 12, 15, 17, tzinfo=UTC) - NOW),  # no zone: UTC
        ("Tue, 15 Dec 2026 17:00:00 +0100", datetime(2026, 12, 15, 16, tzinfo=UTC) - NOW),
        ("15 Dec 2026 17:00 -0000", datetime(2026, 12, 15, 17, tzinfo=UTC) - NOW),
    ],
)
def test_days_hours_and_dates_are_understood(value, span):
    asked = requested(value, NOW)
    assert asked is not None and asked[0] == span


@pytest.mark.parametrize(
    "value", ["", "soon", "next tuesday", "-3", "1.5", "2w", "14 weeks", "2026-13-45",
              "15 Dec 2026", "123456", "9999-12-31T23:59:59-01:00"],
)  # fmt: skip
def test_anything_else_is_not_understood(value):
    assert requested(value, NOW) is None
    asked = expiry(header("X-Sealgate-Expires", value), NOW, LIMITS)
    assert (asked.retention, asked.adjusted) == (LIMITS.default, "unknown")


def test_a_request_within_the_limits_is_applied_and_recorded():
    asked = expiry(header("X-Sealgate-Expires", "14d"), NOW, LIMITS)
    assert (asked.retention, asked.adjusted) == (timedelta(days=14), "")
    assert asked.detail == "X-Sealgate-Expires 14 days: applied"


def test_requests_outside_the_limits_are_clamped_with_the_reason():
    longer = expiry(header("X-Sealgate-Expires", "400"), NOW, LIMITS)
    assert (longer.retention, longer.adjusted) == (timedelta(days=90), "longer")
    assert longer.detail == (
        "X-Sealgate-Expires 400 days: longer than envelope.max_expiry_days, 90 days applied"
    )
    shorter = expiry(header("X-Sealgate-Expires", "2h"), NOW, LIMITS)
    assert (shorter.retention, shorter.adjusted) == (timedelta(days=1), "shorter")
    assert shorter.detail == (
        "X-Sealgate-Expires 2 hours: shorter than envelope.min_expiry_days, 1 day applied"
    )
    assert expiry(header("X-Sealgate-Expires", "9999-12-31"), NOW, LIMITS).adjusted == "longer"
    past = expiry(header("X-Sealgate-Expires", "2020-01-01"), NOW, LIMITS)
    assert past.retention == timedelta(days=1)
    assert "in the past, shorter than envelope.min_expiry_days" in past.detail


def test_without_the_field_the_default_applies_and_nothing_is_recorded():
    assert expiry(b"From: a@example.org\r\n\r\nx\r\n", NOW, LIMITS) == expiry(b"", NOW, LIMITS)
    assert expiry(b"", NOW, LIMITS).retention == timedelta(days=30)
    assert expiry(b"", NOW, LIMITS).detail == ""


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_no_value_makes_the_expiry_fail(value):
    folded = " ".join(value.split()) or "x"
    asked = expiry(header("X-Sealgate-Expires", folded), NOW, LIMITS)
    assert LIMITS.shortest <= asked.retention <= LIMITS.longest


# -- the administrator's limits --------------------------------------------------------


def test_the_limits_must_hold_the_default_and_the_error_names_the_keys():
    with pytest.raises(config.ConfigError) as refused:
        config.parse({"envelope": {"retention_days": 120, "max_expiry_days": 60}})
    assert refused.value.problems == [
        "envelope: retention_days (120) must lie between min_expiry_days (1) "
        "and max_expiry_days (60)"
    ]
    with pytest.raises(config.ConfigError, match="min_expiry_days \\(40\\)"):
        config.parse({"envelope": {"min_expiry_days": 40}})


def test_a_file_with_a_long_retention_from_before_the_limits_still_loads():
    loaded = config.parse({"envelope": {"retention_days": 365}})
    assert (loaded.envelope.max_expiry_days, loaded.envelope.min_expiry_days) == (365, 1)
    assert config.parse({}).envelope.max_expiry_days == 90


# -- X-Sealgate-Note: what the notification shows --------------------------------------


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("See https://evil.example/login now", "See [x] now"),
        ("(hxxp://x.invalid) or foo_bar://y", "[x] or [x]"),
        ("go to www.example.com/form", "go to [x]"),
        ("sign in at login.example.com:8443/a?b", "sign in at [x]"),
        ("(see example.org)", "(see [x])"),
        ("bücher.de", "[x]"),
        ("report.pdf stays, report.zip goes", "report.pdf stays, [x] goes"),
        ("ask bob.smith@example.com or call", "ask bob.smith@example.com or call"),
        ("e.g. v1.2, i.e. the numbers", "e.g. v1.2, i.e. the numbers"),
        # Hidden and control characters go first, so they cannot hide a link.
        ("exam\u00adple.com\u202e and\x00 more\r\nlines", "exam [x] and more lines"),
    ],
)
def test_a_note_shows_no_links_and_no_hidden_characters(note, expected):
    assert shown(note, 500, "[x]") == expected


def test_a_long_note_is_cut_with_an_ellipsis():
    cut = shown("word " * 200, 40, "[x]")
    assert cut is not None and len(cut) == 40 and cut.endswith("\u2026")
    assert shown("exactly forty characters, not one more!!", 40, "[x]") == (
        "exactly forty characters, not one more!!"
    )
    assert shown(" \x00\u200b ", 40, "[x]") is None


def notifier(**changes) -> Notifier:
    values = {
        "from_address": "secure@example.org",
        "hostname": "sealgate.example.org",
        "branding": Branding("Example Corp"),
        **changes,
    }
    return Notifier(Settings(**values))


def notification_with(note: str, recipient: str = "bob@example.net", **changes) -> bytes:
    data = (
        f"From: Alice Example <alice@example.org>\r\nX-Sealgate-Note: {note}\r\n"
        "Subject: x\r\n\r\nbody\r\n"
    ).encode()
    original = Original.of("alice@example.org", data)
    expires = datetime(2026, 12, 28, 14, tzinfo=UTC)
    return notifier(**changes).notification(original, recipient, URL, expires)


def test_the_note_is_marked_as_the_senders_words_and_escaped():
    text, html = text_and_html(notification_with("Hi Bob, <b>here</b> & there"))
    assert "Note from Alice Example (alice@example.org):\n> Hi Bob, <b>here</b> & there" in text
    assert "Note from Alice Example (alice@example.org):</p>" in html
    assert "Hi Bob, &lt;b&gt;here&lt;/b&gt; &amp; there</p>" in html
    assert "<b>here" not in html


def test_encoded_words_in_the_note_are_decoded():
    text, _ = text_and_html(notification_with("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="))
    assert "> Grüße aus Köln" in text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_any_note_yields_a_notification_with_one_link(note):
    value = " ".join(note.split()) or "x"
    raw = notification_with(value, max_note_length=100)
    assert raw.endswith(b"\r\n") and max(len(line) for line in raw.split(b"\r\n")) <= 998
    text, html = text_and_html(raw)
    assert "://" not in text.replace(URL, "")
    assert "<a " not in html.replace(f'<a href="{URL}"', "", 1)


# -- through the running gateway --------------------------------------------------------


def test_the_sender_sets_the_expiry_in_days(gateway, sink):
    send(gateway, protected_message(extra_headers={"X-Sealgate-Expires": "14d"}))
    record, events = only_envelope(gateway)
    assert record.expires_at - record.created_at == timedelta(days=14)
    assert expiry_events(events) == ["X-Sealgate-Expires 14 days: applied"]


def test_the_sender_sets_the_expiry_by_a_date(gateway, sink):
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    send(gateway, protected_message(extra_headers={"X-Sealgate-Expires": day.isoformat()}))
    record, _ = only_envelope(gateway)
    end_of_day = datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC)
    assert abs(record.expires_at - end_of_day) < timedelta(minutes=1)
    # The recipient's notification says until when.
    text, _ = text_and_html(notifications(sink.messages)["bob@example.net"].data)
    assert f"until {day.day} " in text and " at 23:59 UTC" in text


def test_an_rfc_5322_date_is_understood(gateway, sink):
    moment = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    value = email.utils.format_datetime(moment.astimezone(timezone(timedelta(hours=1))))
    send(gateway, protected_message(extra_headers={"X-Sealgate-Expires": value}))
    record, events = only_envelope(gateway)
    assert abs(record.expires_at - moment) < timedelta(minutes=1)
    assert expiry_events(events)[0].endswith(": applied")


def receipt_text(sink) -> str:
    (receipt,) = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    return text_and_html(receipt.data)[0]


@pytest.mark.parametrize(
    ("value", "days", "reason", "told"),
    [
        ("400", 90, "longer than envelope.max_expiry_days",
         "You asked for a longer time than allowed: the message can be read for 90 days"),
        ("2h", 1, "shorter than envelope.min_expiry_days",
         "You asked for a shorter time than allowed: the message can be read for 1 day"),
    ],
)  # fmt: skip
def test_a_request_beyond_the_limits_is_clamped_and_the_sender_told(
    make_gateway, sink, value, days, reason, told
):
    running = make_gateway(notify={"receipt": True})
    send(running, protected_message(extra_headers={"X-Sealgate-Expires": value}))
    record, events = only_envelope(running)
    assert record.expires_at - record.created_at == timedelta(days=days)
    (detail,) = expiry_events(events)
    assert reason in detail
    assert told in receipt_text(sink)
    assert "bob@example.net" in notifications(sink.messages)  # delivered all the same


def test_administrators_set_the_limits(make_gateway, sink):
    running = make_gateway(envelope={"min_expiry_days": 3, "max_expiry_days": 7,
                                     "retention_days": 5})  # fmt: skip
    send(running, protected_message(extra_headers={"X-Sealgate-Expires": "30"}))
    record, events = only_envelope(running)
    assert record.expires_at - record.created_at == timedelta(days=7)
    assert expiry_events(events) == [
        "X-Sealgate-Expires 30 days: longer than envelope.max_expiry_days, 7 days applied"
    ]


def test_a_value_not_understood_is_ignored_and_the_reason_kept(make_gateway, sink):
    running = make_gateway(notify={"receipt": True})
    send(running, protected_message(extra_headers={"X-Sealgate-Expires": "next tuesday"}))
    record, events = only_envelope(running)
    assert record.expires_at - record.created_at == timedelta(days=30)
    assert expiry_events(events) == [
        "X-Sealgate-Expires not understood (expected days, hours or a date): ignored, "
        "envelope.retention_days (30 days) applied"
    ]
    assert "(X-Sealgate-Expires) was not understood" in receipt_text(sink)


NOTE = "Hi Bob, the <lab> results & more: https://files.example.com/x"


def notice(sink, recipient: str = "bob@example.net") -> tuple[str, str]:
    return text_and_html(notifications(sink.messages)[recipient].data)


def test_the_note_appears_escaped_in_both_parts(gateway, sink):
    send(gateway, protected_message(extra_headers={"X-Sealgate-Note": NOTE}))
    text, html = notice(sink)
    assert (
        "Note from Alice Example (alice@example.org):\n"
        "> Hi Bob, the <lab> results & more: [link removed]\n"
    ) in text
    assert "Hi Bob, the &lt;lab&gt; results &amp; more: [link removed]</p>" in html
    assert "files.example.com" not in text + html


def test_a_dutch_recipient_reads_the_note_in_a_dutch_notification(gateway, sink):
    send(gateway, protected_message(to="bob@example.nl", extra_headers={"X-Sealgate-Note": NOTE}),
         recipients=("bob@example.nl",))  # fmt: skip
    text, html = notice(sink, "bob@example.nl")
    assert "Notitie van Alice Example (alice@example.org):\n> Hi Bob, the <lab> results" in text
    assert "[link verwijderd]" in text and "[link verwijderd]" in html


def test_a_note_over_the_limit_is_cut(make_gateway, sink):
    running = make_gateway(notify={"max_note_length": 20})
    send(running, protected_message(extra_headers={"X-Sealgate-Note": "one two three four five"}))
    text, html = notice(sink)
    assert "> one two three four\u2026\n" in text
    assert "one two three four\u2026</p>" in html


def test_no_note_when_the_administrator_turned_notes_off(make_gateway, sink):
    running = make_gateway(notify={"allow_note": False})
    send(running, protected_message(extra_headers={"X-Sealgate-Note": "Hi Bob, lab results"}))
    text, html = notice(sink)
    assert "Hi Bob, lab results" not in text + html
    assert "Note from" not in text + html


def test_neither_field_leaves_in_anything_that_reaches_the_upstream(make_gateway, sink):
    """A protected recipient, a colleague who gets the message as it is, a refused one
    whose bounce quotes the header: none of it carries what the sender wrote for Sealgate."""
    running = make_gateway(notify={"receipt": True})
    sink.behaviour.rcpt_replies["dave@example.org"] = "550 5.1.1 <dave@example.org>: no such user"
    fields = {
        "X-Sealgate-Expires": "14",
        "X-Sealgate-Note": "Call me about it",
        "X-Sealgate-Phone": "+31612345678",
        "X-Sealgate-Access-Code": "violet 7391",
    }
    raw = protected_message(to="bob@example.net, carol@example.org", extra_headers=fields)
    recipients = ("bob@example.net", "carol@example.org", "dave@example.org")
    send(running, raw, recipients)
    kinds = {m.rcpt_tos: m for m in sink.messages}
    assert set(kinds) == {("bob@example.net",), ("carol@example.org",), ("alice@example.org",)}
    assert len([m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]) == 2  # +DSN
    for received in sink.messages:
        for name in FIELD_NAMES:
            assert name.lower() not in received.data.lower(), (name, received.rcpt_tos)
        assert b"violet 7391" not in received.data and b"+31612345678" not in received.data
    # The colleague's copy is the original, less those fields, byte for byte.
    stripped = b"".join(
        line for line in raw.splitlines(keepends=True) if not line.startswith(b"X-Sealgate-")
    )
    assert kinds[("carol@example.org",)].data.endswith(stripped)
    # And the sealed message, opened by its recipient.
    link = link_in(kinds[("bob@example.net",)])
    manifest, _ = open_with_link(store_of(running), link)
    store = store_of(running)
    unlocked = opener.unlock_with_link(store, link)
    original = b"".join(opener.read_part(store, unlocked, manifest["original"]["part"]))
    assert original == stripped.replace(b"[secure] ", b"")


def test_mail_relayed_in_the_clear_loses_the_fields_too(gateway, sink):
    raw = protected_message(
        subject="Lunch?",
        extra_headers={"X-Sealgate-Note": "see you", "X-Sealgate-Expires": "2d"},
    )
    send(gateway, raw)
    (relayed,) = sink.messages
    assert relayed.data.endswith(
        raw.replace(b"X-Sealgate-Note: see you\r\n", b"").replace(
            b"X-Sealgate-Expires: 2d\r\n", b""
        )
    )
    assert store_of(gateway).list() == []
