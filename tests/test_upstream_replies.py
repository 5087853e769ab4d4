"""Every branch of the upstream reply mapping (docs/relay.md), seen from the client."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.support.smtpraw import RawSMTP

MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: mapping\r\n"
    b"Message-ID: <mapping@example.org>\r\n\r\nbody\r\n"
)


def submit(
    port: int, recipients=("bob@example.net",), sender="alice@example.org"
) -> tuple[int, str]:
    """Send MESSAGE; the reply to the end of data (or to the first refused command)."""
    with RawSMTP(port) as smtp:
        smtp.command("EHLO client.test")
        code, text = smtp.command(f"MAIL FROM:<{sender}>")
        if code != 250:
            return code, text
        for recipient in recipients:
            smtp.command(f"RCPT TO:<{recipient}>")
        assert smtp.command("DATA")[0] == 354
        smtp.send(MESSAGE + b".\r\n")
        return smtp.reply()


@pytest.mark.parametrize(
    ("stage", "upstream", "expected"),
    [
        ("mail", "451 4.3.2 Try later", "451 4.3.2 Upstream deferred the sender: Try later"),
        ("mail", "421 4.4.2 Closing", "451 4.4.2 Upstream deferred the sender: Closing"),
        (
            "mail",
            "553 5.7.1 Sender not allowed",
            "553 5.7.1 Upstream refused the sender: Sender not allowed",
        ),
        ("mail", "501 5.5.4 Bad syntax", "451 4.3.0 Upstream deferred the sender: Bad syntax"),
        (
            "rcpt",
            "450 4.2.0 Mailbox busy",
            "451 4.2.0 Upstream deferred recipient bob@example.net: Mailbox busy",
        ),
        (
            "rcpt",
            "550 5.1.1 No such user",
            "550 5.1.1 Upstream refused recipient bob@example.net: No such user",
        ),
        ("data", "451 4.3.0 Queue full", "451 4.3.0 Upstream deferred the message: Queue full"),
        ("data", "554 5.7.1 Spam", "554 5.7.1 Upstream refused the message: Spam"),
        ("data", "552 Too big", "552 5.0.0 Upstream refused the message: Too big"),
        ("data", "500 Line too long", "554 5.0.0 Upstream refused the message: Line too long"),
    ],
)
def test_upstream_reply_is_mapped(gateway, sink, stage, upstream, expected):
    if stage == "mail":
        sink.behaviour.mail_reply = upstream
    elif stage == "rcpt":
        sink.behaviour.rcpt_replies["bob@example.net"] = upstream
    else:
        sink.behaviour.data_reply = upstream
    code, text = submit(gateway.port)
    assert text == expected
    assert sink.messages == []


def test_upstream_text_is_sanitised(gateway, sink):
    sink.behaviour.data_reply = "554 5.7.1 Bad \x1b[31m thing\x07 " + "x" * 400
    code, text = submit(gateway.port)
    assert code == 554
    assert "\x1b" not in text and "\x07" not in text
    assert len(text) < 260


def test_unreachable_upstream_answers_451(gateway, sink, loop_thread):
    loop_thread.run(sink.stop())
    code, text = submit(gateway.port)
    assert text == "451 4.4.1 Upstream unreachable; try again later"


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_connection_dropped_by_upstream_answers_451(gateway, sink, stage):
    sink.behaviour.drop_at = stage
    code, text = submit(gateway.port)
    assert code == 451, text
    assert sink.messages == []


@pytest.mark.parametrize("stage", ["mail", "data"])
def test_stalled_upstream_times_out_with_451(make_gateway, sink, stage):
    gateway = make_gateway(upstream={"command_timeout": 0.5, "data_timeout": 0.5})
    sink.behaviour.stall_at = stage
    sink.behaviour.stall_seconds = 5
    code, text = submit(gateway.port)
    assert code == 451, text
    assert sink.messages == []


def test_recovers_after_upstream_comes_back(gateway, sink, loop_thread):
    assert submit(gateway.port)[0] == 250
    loop_thread.run(sink.stop())
    assert submit(gateway.port)[0] == 451
    loop_thread.run(sink.start())
    assert submit(gateway.port)[0] == 250
    assert len(sink.messages) == 2


def test_stale_pooled_connection_is_replaced_without_failing(gateway, sink, loop_thread):
    assert submit(gateway.port)[0] == 250
    # The upstream drops its idle connections (restart, idle timeout): the
    # pooled one is dead, and the next message must still go through.
    loop_thread.run(sink.stop())
    loop_thread.run(sink.start())
    assert submit(gateway.port)[0] == 250
    assert len(sink.messages) == 2


def test_one_recipient_deferred_defers_all_and_delivers_nothing(gateway, sink):
    sink.behaviour.rcpt_replies["carol@example.net"] = "452 4.2.2 Mailbox full"
    code, text = submit(gateway.port, recipients=("bob@example.net", "carol@example.net"))
    assert text == "451 4.2.2 Upstream deferred recipient carol@example.net: Mailbox full"
    assert sink.messages == []
    # Nothing was sent, so the retry delivers exactly once.
    sink.behaviour.rcpt_replies.clear()
    assert submit(gateway.port, recipients=("bob@example.net", "carol@example.net"))[0] == 250
    assert [m.rcpt_tos for m in sink.messages] == [("bob@example.net", "carol@example.net")]


def test_all_recipients_refused_is_a_permanent_refusal(gateway, sink):
    sink.behaviour.rcpt_replies = {
        "bob@example.net": "550 5.1.1 No such user",
        "carol@example.net": "550 5.1.1 No such user",
    }
    code, text = submit(gateway.port, recipients=("bob@example.net", "carol@example.net"))
    assert text == "550 5.1.1 Upstream refused all 2 recipients: No such user"
    assert sink.messages == []


def test_partly_refused_delivers_the_rest_and_bounces_the_refused(gateway, sink):
    sink.behaviour.rcpt_replies["carol@example.net"] = "550 5.1.1 <carol@example.net>: No such user"
    code, text = submit(
        gateway.port, recipients=("bob@example.net", "carol@example.net", "dave@example.net")
    )
    assert code == 250, text
    bounce, delivered = sink.messages
    assert delivered.rcpt_tos == ("bob@example.net", "dave@example.net")
    assert delivered.data.endswith(MESSAGE)
    # The sender learns which recipient did not get it, in a standard DSN.
    assert bounce.mail_from == "<>" and bounce.rcpt_tos == ("alice@example.org",)
    report = email.message_from_bytes(bounce.data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text_status = status.as_string()
    assert "Final-Recipient: rfc822; carol@example.net" in text_status
    assert "Status: 5.1.1" in text_status
    assert "Action: failed" in text_status
    assert "bob@example.net" not in text_status
    assert "X-Sealgate-Loop:" in bounce.data.decode()


def test_partly_refused_defers_when_the_bounce_cannot_be_sent(gateway, sink):
    sink.behaviour.rcpt_replies = {
        "carol@example.net": "550 5.1.1 No such user",
        "alice@example.org": "451 4.3.0 Cannot take bounces now",
    }
    code, text = submit(gateway.port, recipients=("bob@example.net", "carol@example.net"))
    assert code == 451, text
    assert sink.messages == []


def test_partly_refused_with_null_sender_delivers_without_bounce(gateway, sink):
    sink.behaviour.rcpt_replies["carol@example.net"] = "550 5.1.1 No such user"
    code, text = submit(
        gateway.port, recipients=("bob@example.net", "carol@example.net"), sender=""
    )
    assert code == 250, text
    (delivered,) = sink.messages
    assert delivered.rcpt_tos == ("bob@example.net",)
