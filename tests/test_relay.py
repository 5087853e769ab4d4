"""Client -> Sealgate -> upstream: what arrives, and what the client is told."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import message
from tests.support.smtpraw import RawSMTP

ORIGINAL = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Message-ID: <figures-1@example.org>\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
    b"  trailing spaces  \r\n"
    b"\r\n"
    b"\r\n"
)


def prepended(data: bytes, original: bytes) -> list[str]:
    """Names of the header fields Sealgate put in front of ``original``."""
    assert data.endswith(original), "the original bytes must arrive unchanged"
    prefix = data[: len(data) - len(original)]
    return [name for name, _, _ in message.fields(prefix)]


def test_bytes_arrive_unchanged_apart_from_prepended_headers(gateway, sink):
    with gateway.client() as client:
        client.sendmail("alice@example.org", ["bob@example.net"], ORIGINAL)
    (arrived,) = sink.messages
    assert prepended(arrived.data, ORIGINAL) == ["received", "x-sealgate-loop"]
    assert arrived.mail_from == "alice@example.org"
    assert arrived.rcpt_tos == ("bob@example.net",)


def test_reply_names_our_queue_id_only_after_upstream_accepted(gateway, sink):
    with gateway.client() as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt("bob@example.net")
        code, text = client.data(ORIGINAL)
    assert code == 250
    assert text.startswith(b"2.0.0 Ok: queued as ")
    queue_id = text.split()[-1].decode()
    assert f"id {queue_id};".encode() in sink.messages[0].data


@pytest.mark.parametrize(
    "sender",
    ["", "alice@example.org", '"alice smith"@example.org', "alice+tag@sub.example.org"],
)
def test_envelope_sender_kept_exactly(gateway, sink, sender):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command(f"MAIL FROM:<{sender}>")[0] == 250
        assert smtp.command("RCPT TO:<bob@example.net>")[0] == 250
        assert smtp.command("DATA")[0] == 354
        smtp.send(ORIGINAL + b".\r\n")
        assert smtp.reply()[0] == 250
    assert sink.messages[0].mail_from == (sender or "<>")


def test_many_recipients_kept_in_order(gateway, sink):
    recipients = [f"user{i}@example.net" for i in range(30)] + ["bob@EXAMPLE.net"]
    with gateway.client() as client:
        client.sendmail("alice@example.org", recipients, ORIGINAL)
    assert sink.messages[0].rcpt_tos == tuple(recipients)


def test_smtputf8_addresses_and_headers_survive(gateway, sink):
    body = (
        "From: Jörg <jörg@bücher.example>\r\n"
        "To: Zoë <zoë@例え.jp>\r\n"
        "Subject: Grüße\r\n"
        "\r\n"
        "Schöne Grüße aus Köln\r\n"
    ).encode()
    with RawSMTP(gateway.port) as smtp:
        code, ehlo = smtp.command("EHLO client.test")
        assert "SMTPUTF8" in ehlo
        assert smtp.command("MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME")[0] == 250
        assert smtp.command("RCPT TO:<zoë@例え.jp>")[0] == 250
        assert smtp.command("DATA")[0] == 354
        smtp.send(body + b".\r\n")
        assert smtp.reply()[0] == 250
    (arrived,) = sink.messages
    assert arrived.mail_from == "jörg@bücher.example"
    assert arrived.rcpt_tos == ("zoë@例え.jp",)
    assert "SMTPUTF8" in arrived.mail_options
    assert arrived.data.endswith(body)


def test_8bit_body_survives_byte_for_byte(gateway, sink):
    body = (
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: latin-1\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Caf\xe9 cr\xe8me \xff\xfe\x80 and a NUL-free binary-ish line \x01\x02\r\n"
    )
    with gateway.client() as client:
        client.sendmail("a@example.org", ["b@example.net"], body, mail_options=["BODY=8BITMIME"])
    (arrived,) = sink.messages
    assert arrived.data.endswith(body)
    assert "BODY=8BITMIME" in arrived.mail_options


def test_long_lines_are_relayed_not_refused(gateway, sink):
    long_line = b"x" * 5000
    body = b"Subject: long\r\n\r\n" + long_line + b"\r\n." + long_line + b"\r\nend\r\n"
    with gateway.client() as client:
        client.sendmail("a@example.org", ["b@example.net"], body)
    assert sink.messages[0].data.endswith(body)


def _dkim_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_sender_dkim_signature_still_verifies_after_relay(gateway, sink):
    import base64

    private, public = _dkim_key()
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"sel._domainkey.example.org." else None

    unsigned = (
        b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: signed\r\n"
        b"Date: Sat, 28 Nov 2026 10:00:00 +0100\r\nMessage-ID: <signed@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe,   with  odd  spacing \r\n.leading dot\r\n\r\n"
    )
    for canonicalization in ((b"simple", b"simple"), (b"relaxed", b"relaxed")):
        signature = dkim.sign(
            unsigned, b"sel", b"example.org", private, canonicalize=canonicalization
        )
        signed = signature + unsigned
        assert dkim.verify(signed, dnsfunc=dns)
        with gateway.client() as client:
            client.sendmail(
                "alice@example.org", ["bob@example.net"], signed, mail_options=["BODY=8BITMIME"]
            )
        assert dkim.verify(sink.messages[-1].data, dnsfunc=dns), canonicalization


def test_message_without_body_separator_or_empty_is_relayed(gateway, sink):
    for body in (b"Subject: only a header\r\n", b""):
        with RawSMTP(gateway.port) as smtp:
            smtp.command("EHLO client.test")
            smtp.command("MAIL FROM:<a@example.org>")
            smtp.command("RCPT TO:<b@example.net>")
            assert smtp.command("DATA")[0] == 354
            smtp.send(body + b".\r\n")
            assert smtp.reply()[0] == 250
        assert sink.messages[-1].data.endswith(body)


def test_pipelined_commands_get_replies_in_order(gateway, sink):
    with RawSMTP(gateway.port) as smtp:
        code, ehlo = smtp.command("EHLO client.test")
        assert "PIPELINING" in ehlo
        smtp.send(
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
            b"RCPT TO:<c@example.net>\r\nDATA\r\n"
        )
        assert [smtp.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        smtp.send(ORIGINAL + b".\r\nQUIT\r\n")
        assert smtp.reply()[0] == 250
        assert smtp.reply()[0] == 221
    assert sink.messages[0].rcpt_tos == ("b@example.net", "c@example.net")


def test_several_messages_on_one_connection(gateway, sink):
    with gateway.client() as client:
        for n in range(5):
            client.sendmail("a@example.org", [f"b{n}@example.net"], ORIGINAL)
    assert [m.rcpt_tos for m in sink.messages] == [(f"b{n}@example.net",) for n in range(5)]


def test_upstream_connections_are_reused(gateway, sink):
    for n in range(4):
        with gateway.client() as client:
            client.sendmail("a@example.org", ["b@example.net"], ORIGINAL)
    assert len(sink.messages) == 4
    assert sink.connections == 1


def test_enhanced_status_codes_everywhere(gateway):
    with RawSMTP(gateway.port) as smtp:
        assert "ENHANCEDSTATUSCODES" in smtp.command("EHLO client.test")[1]
        assert smtp.command("RCPT TO:<b@example.net>") == (
            503,
            "503 5.5.1 Error: need MAIL command",
        )
        code, text = smtp.command("NOOP")
        assert text == "250 2.0.0 OK"
        code, text = smtp.command("BOGUS")
        assert code == 500 and text.startswith("500 5.5.2 ")
        assert smtp.command("QUIT")[1].startswith("221 2.0.0")


def test_too_many_recipients_get_452(make_gateway, sink):
    gateway = make_gateway(smtp={"max_recipients": 3})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        smtp.command("MAIL FROM:<a@example.org>")
        codes = [smtp.command(f"RCPT TO:<r{i}@example.net>") for i in range(4)]
        assert [c for c, _ in codes] == [250, 250, 250, 452]
        assert codes[-1][1].startswith("452 4.5.3")
        assert smtp.command("DATA")[0] == 354
        smtp.send(ORIGINAL + b".\r\n")
        assert smtp.reply()[0] == 250
    assert sink.messages[0].rcpt_tos == ("r0@example.net", "r1@example.net", "r2@example.net")


def test_smtplib_reports_no_refusals_for_a_clean_relay(gateway, sink):
    with gateway.client() as client:
        refused = client.sendmail("a@example.org", ["b@example.net", "c@example.net"], ORIGINAL)
    assert refused == {}
    assert sink.messages[0].rcpt_tos == ("b@example.net", "c@example.net")


# Any octet but CR, LF (line ends) and NUL (refused: RFC 5321 2.3.8, tests/test_intake.py).
_LINE = st.binary(max_size=120).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(st.one_of(_LINE, st.sampled_from([b".", b"..", b".x", b"", b"x."])), max_size=40)
)
def test_any_message_arrives_byte_for_byte(gateway, sink, lines):
    """Dots, empty lines, 8-bit bytes: what the client meant is what the upstream gets."""
    original = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        smtp.command("MAIL FROM:<a@example.org> BODY=8BITMIME")
        smtp.command("RCPT TO:<b@example.net>")
        assert smtp.command("DATA")[0] == 354
        # The end of data and the next command arrive in one packet (pipelining).
        smtp.send(stuffed + b".\r\nNOOP\r\n")
        code, text = smtp.reply()
        assert code == 250, text
        assert smtp.reply()[0] == 250
    assert prepended(sink.messages[-1].data, original) == ["received", "x-sealgate-loop"]
