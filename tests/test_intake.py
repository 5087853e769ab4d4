"""The SMTP front door: who may submit, what is refused, and how."""

from __future__ import annotations

import base64
import io
import logging
import smtplib
import socket
import ssl
import subprocess

import pytest

from gateway import logsetup
from gateway.intake.access import hash_password
from tests.support.gateway import wait_for
from tests.support.smtpraw import RawSMTP

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n"
PASSWORD = "correct horse battery staple"


def tls_client_context(certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca))


def send_raw(port: int, data: bytes) -> tuple[int, str]:
    with RawSMTP(port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("MAIL FROM:<a@example.org>")[0] == 250
        assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
        assert smtp.command("DATA")[0] == 354
        smtp.send(data)
        reply = smtp.reply()
        assert smtp.command("NOOP")[0] == 250, "the session goes on after a refused message"
        return reply


# -- never an open relay -------------------------------------------------------


def test_client_outside_allow_list_is_refused(make_gateway, sink):
    gateway = make_gateway(smtp={"allow_networks": ["192.0.2.0/24"]})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        code, text = smtp.command("MAIL FROM:<a@example.org>")
        assert code == 550 and text.startswith("550 5.7.1 Relay access denied")
        assert smtp.command("RCPT TO:<b@example.net>")[0] == 503
        assert smtp.command("DATA")[0] == 503
    assert sink.messages == []


def test_empty_allow_list_and_no_accounts_refuses_everyone(make_gateway, sink):
    gateway = make_gateway(smtp={"allow_networks": []})
    with pytest.raises(smtplib.SMTPSenderRefused) as refused, gateway.client() as client:
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert refused.value.smtp_code == 550
    assert sink.messages == []


@pytest.fixture
def auth_gateway(make_gateway, certs):
    return make_gateway(
        smtp={
            "allow_networks": [],
            "tls": {"certificate": str(certs.certificate), "key": str(certs.key)},
            "auth": {
                "users": [{"name": "relay", "password_hash": hash_password(PASSWORD)}],
                "max_failures": 3,
            },
        }
    )


def test_auth_is_not_offered_before_starttls(auth_gateway):
    with RawSMTP(auth_gateway.port) as smtp:
        code, ehlo = smtp.command("EHLO client.test")
        assert "STARTTLS" in ehlo and "AUTH" not in ehlo
        credentials = base64.b64encode(f"\0relay\0{PASSWORD}".encode()).decode()
        code, text = smtp.command(f"AUTH PLAIN {credentials}")
        assert code == 538, text


def test_auth_after_starttls_allows_submission(auth_gateway, sink, certs):
    with auth_gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
        client.login("relay", PASSWORD)
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    (arrived,) = sink.messages
    assert b"with ESMTPSA id" in arrived.data


def test_auth_login_mechanism_works(auth_gateway, sink, certs):
    with auth_gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        client.ehlo()
        client.user, client.password = "relay", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login)
        assert code == 235
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert len(sink.messages) == 1


def test_unauthenticated_tls_client_is_still_refused(auth_gateway, sink, certs):
    with auth_gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert refused.value.smtp_code == 550
    assert sink.messages == []


def plain_auth(client: smtplib.SMTP, user: str, password: str) -> int:
    """One AUTH PLAIN attempt (smtplib's login() would try every mechanism)."""
    client.user, client.password = user, password
    try:
        return client.auth("PLAIN", client.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as error:
        return error.smtp_code


def test_wrong_password_is_refused_and_repeated_failures_lock_out(auth_gateway, sink, certs):
    for _ in range(3):
        with auth_gateway.client() as client:
            client.starttls(context=tls_client_context(certs))
            client.ehlo()
            assert plain_auth(client, "relay", "wrong password") == 535
    with auth_gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        client.ehlo()
        assert plain_auth(client, "relay", PASSWORD) == 454
    assert sink.messages == []


def test_unknown_user_is_refused(auth_gateway, certs):
    with auth_gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("nobody", PASSWORD)


def test_require_tls_refuses_mail_before_starttls(make_gateway, sink, certs):
    gateway = make_gateway(
        smtp={
            "require_tls": True,
            "tls": {"certificate": str(certs.certificate), "key": str(certs.key)},
        }
    )
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("MAIL FROM:<a@example.org>") == (
            530,
            "530 5.7.0 Must issue a STARTTLS command first",
        )
    with gateway.client() as client:
        client.starttls(context=tls_client_context(certs))
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert b"with ESMTPS id" in sink.messages[0].data


# -- XFORWARD ---------------------------------------------------------------------


@pytest.fixture
def transaction_log():
    """The structured fields of every transaction line Sealgate logs."""
    records: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "transaction":
                records.append(dict(record.fields))

    handler = Collect()
    logger = logging.getLogger("sealgate.intake")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_xforward_from_trusted_host_is_recorded(gateway, sink, transaction_log):
    with RawSMTP(gateway.port) as smtp:
        code, ehlo = smtp.command("EHLO client.test")
        assert "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE" in ehlo
        assert smtp.command("XFORWARD NAME=mail.example.org ADDR=203.0.113.7 PORT=4711")[0] == 250
        assert (
            smtp.command("XFORWARD HELO=mail.example.org PROTO=ESMTP IDENT=[UNAVAILABLE]")[0] == 250
        )
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        smtp.command("DATA")
        smtp.send(MESSAGE + b".\r\n")
        assert smtp.reply()[0] == 250
        # Reset at the end of the transaction, like Postfix.
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        smtp.command("DATA")
        smtp.send(MESSAGE + b".\r\n")
        assert smtp.reply()[0] == 250
    first, second = transaction_log
    assert first["orig_client"] == "203.0.113.7"
    assert "orig_client" not in second


def test_xforward_is_forgotten_after_rset(gateway, sink, transaction_log):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("XFORWARD ADDR=203.0.113.7")[0] == 250
        assert smtp.command("RSET") == (250, "250 2.0.0 OK")
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        smtp.command("DATA")
        smtp.send(MESSAGE + b".\r\n")
        assert smtp.reply()[0] == 250
    (logged,) = transaction_log
    assert "orig_client" not in logged


def test_xforward_from_untrusted_host_is_refused(make_gateway):
    gateway = make_gateway(smtp={"xforward_hosts": ["192.0.2.0/24"]})
    with RawSMTP(gateway.port) as smtp:
        code, ehlo = smtp.command("EHLO client.test")
        assert "XFORWARD" not in ehlo
        assert smtp.command("XFORWARD ADDR=203.0.113.7") == (
            550,
            "550 5.7.0 Error: insufficient authorization",
        )


def test_xforward_syntax_and_state_errors(gateway):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("XFORWARD")[0] == 501
        assert smtp.command("XFORWARD COLOUR=blue")[0] == 501
        smtp.command("MAIL FROM:<a@example.org>")
        assert smtp.command("XFORWARD ADDR=203.0.113.7")[0] == 503


# -- smuggling, bare line ends, size -------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # aiosmtpd's own smuggling test: a fake end of data with a bare LF.
        b"Subject: A test\r\n\r\nTesting\n.\r\nMAIL FROM:<evil@example.org>\r\n"
        b"RCPT TO:<victim@example.net>\r\nDATA\r\nSmuggled\r\n.\r\n",
        b"Subject: A test\r\n\r\nTesting\r.\r\nSmuggled\r\n.\r\n",
        b"Subject: A test\r\n\r\nTesting\r\n.\rSmuggled\r\n.\r\n",
        b"Subject: A test\r\n\r\nTesting\n.\nSmuggled\r\n.\r\n",
        b"Subject: bare LF in a header\nX: y\r\n\r\nbody\r\n.\r\n",
    ],
    ids=["lf-dot-crlf", "cr-dot-cr", "crlf-dot-cr", "lf-dot-lf", "bare-lf-header"],
)
def test_smuggling_and_bare_line_ends_are_refused(gateway, sink, data):
    code, text = send_raw(gateway.port, data)
    assert code == 554 and text.startswith("554 5.6.0 Message refused: bare CR or LF")
    assert sink.messages == []


@pytest.mark.parametrize(
    "data",
    [
        # The attack: a line of a dot and a NUL, which some MTAs read as the end of data.
        b"Subject: A test\r\n\r\nTesting\r\n.\0\r\nMore\r\n.\r\n",
        b"Subject: NUL\0in a header\r\n\r\nbody\r\n.\r\n",
        b"Subject: A test\r\n\r\n\0\r\n.\r\n",
    ],
    ids=["dot-nul", "nul-in-header", "nul-line"],
)
def test_nul_in_the_data_is_refused(gateway, sink, data):
    code, text = send_raw(gateway.port, data)
    assert text == (
        "554 5.6.0 Message refused: NUL character in the data; mail may not contain NUL octets"
    )
    assert sink.messages == []


@pytest.mark.parametrize(
    "line",
    [b"EHLO client\0.test", b"MAIL FROM:<a\0@example.org>", b"RCPT TO:<b\0c@example.net>"],
    ids=["ehlo", "mail", "rcpt"],
)
def test_nul_in_a_command_line_is_refused(gateway, sink, line):
    with RawSMTP(gateway.port) as smtp:
        if not line.startswith(b"EHLO"):
            smtp.command("EHLO client.test")
        if line.startswith(b"RCPT"):
            smtp.command("MAIL FROM:<a@example.org>")
        assert smtp.command(line) == (
            501,
            "501 5.5.2 Syntax error: NUL character in the command line",
        )
        assert smtp.command("NOOP")[0] == 250
    assert sink.messages == []


def test_help_still_describes_each_command(gateway):
    """The commands are wrapped once on the class (NUL check): HELP keeps their syntax."""
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("HELP MAIL") == (
            250,
            "250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        )
        code, text = smtp.command("HELP")
        assert code == 250 and "RCPT" in text and "DATA" in text


# -- addresses that cannot be passed on --------------------------------------------------


@pytest.mark.parametrize("smtputf8", [b"", b" SMTPUTF8"], ids=["ascii", "smtputf8"])
@pytest.mark.parametrize(
    "address",
    [b"\xff\xfe@example.net", b"b\xc3@example.net", b"b\x01c@example.net"],
    ids=["not-utf8", "truncated-utf8", "control"],
)
def test_bad_recipient_address_is_refused_at_rcpt_and_the_others_delivered(
    gateway, sink, smtputf8, address
):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command(b"MAIL FROM:<a@example.org>" + smtputf8)[0] == 250
        assert smtp.command(b"RCPT TO:<" + address + b">") == (
            553,
            "553 5.1.3 Recipient address refused: it is not valid UTF-8 or contains "
            "control characters",
        )
        assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
        assert smtp.command("DATA")[0] == 354
        smtp.send(MESSAGE + b".\r\n")
        assert smtp.reply()[0] == 250
    (arrived,) = sink.messages
    assert arrived.rcpt_tos == ("b@example.net",)


@pytest.mark.parametrize("smtputf8", [b"", b" SMTPUTF8"], ids=["ascii", "smtputf8"])
def test_bad_sender_address_is_refused_at_mail(gateway, sink, smtputf8):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        code, text = smtp.command(b"MAIL FROM:<\xff\xfe@example.org>" + smtputf8)
        assert (code, text[:18]) == (553, "553 5.1.7 Sender a")
        assert smtp.command(b"MAIL FROM:<a@example.org>" + smtputf8)[0] == 250
    assert sink.messages == []


def test_valid_utf8_addresses_still_pass(gateway, sink):
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("MAIL FROM:<jörg@example.org> SMTPUTF8".encode())[0] == 250
        assert smtp.command("RCPT TO:<ünïcode@exämple.net>".encode())[0] == 250
        smtp.command("DATA")
        smtp.send(MESSAGE + b".\r\n")
        assert smtp.reply()[0] == 250
    (arrived,) = sink.messages
    assert (arrived.mail_from, arrived.rcpt_tos) == ("jörg@example.org", ("ünïcode@exämple.net",))


def test_oversize_message_gets_552(make_gateway, sink):
    gateway = make_gateway(smtp={"max_message_size": 4096})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert "SIZE 4096" in smtp.command("EHLO client.test")[1]
        assert smtp.command("MAIL FROM:<a@example.org> SIZE=5000")[1].startswith("552 5.3.4")
    code, text = send_raw(
        gateway.port, b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 80 + b".\r\n"
    )
    assert text == "552 5.3.4 Message size exceeds fixed maximum message size"
    code, text = send_raw(gateway.port, MESSAGE + b".\r\n")
    assert code == 250
    assert len(sink.messages) == 1


def test_memory_budget_exhausted_gets_452(make_gateway, sink):
    gateway = make_gateway(smtp={"memory_budget": 1 << 20, "max_message_size": 8 << 20})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert smtp.command("MAIL FROM:<a@example.org> SIZE=2000000")[1].startswith("452 4.3.1")
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2000 + b".\r\n"
    assert send_raw(gateway.port, big)[1].startswith("452 4.3.1")
    # The budget is released: a normal message goes through afterwards.
    assert send_raw(gateway.port, MESSAGE + b".\r\n")[0] == 250


# -- limits and errors ----------------------------------------------------------------


def test_connection_limit_answers_421(make_gateway):
    gateway = make_gateway(smtp={"max_connections": 2})
    first, second = RawSMTP(gateway.port), RawSMTP(gateway.port)
    try:
        third = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        assert third.recv(1024).startswith(b"421 4.7.0 Too many connections")
        third.close()
    finally:
        first.close()
        second.close()
    wait_for(lambda: gateway.gateway.intake.connections == 0, what="connections to close")
    with RawSMTP(gateway.port) as smtp:
        assert smtp.greeting[0] == 220


def test_idle_client_is_disconnected(make_gateway):
    gateway = make_gateway(smtp={"command_timeout": 0.5})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        assert closed_by_server(smtp, within=3)


def test_client_stalling_in_data_is_disconnected_and_nothing_relayed(make_gateway, sink):
    gateway = make_gateway(smtp={"data_timeout": 0.5, "command_timeout": 30})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO client.test")
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        assert smtp.command("DATA")[0] == 354
        smtp.send(b"Subject: half a message\r\n\r\nthe rest never comes")
        assert closed_by_server(smtp, within=3)
    assert sink.messages == []


def closed_by_server(smtp: RawSMTP, within: float) -> bool:
    smtp.sock.settimeout(within)
    try:
        return smtp.sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_unexpected_error_answers_451_without_details(gateway, sink, monkeypatch):
    from gateway.intake import handler

    def explode(*args, **kwargs):
        raise RuntimeError("/secret/path and a body fragment")

    monkeypatch.setattr(handler, "_log_transaction", explode)
    code, text = send_raw(gateway.port, MESSAGE + b".\r\n")
    assert text == "451 4.3.0 Internal error; please try again later"


def test_unexpected_pipeline_error_answers_451(gateway, sink, monkeypatch):
    async def explode(tx):
        raise KeyError("internal detail")

    monkeypatch.setattr(gateway.gateway.pipeline, "_handle", explode)
    code, text = send_raw(gateway.port, MESSAGE + b".\r\n")
    assert text == "451 4.3.0 Internal error; please try again later"
    assert sink.messages == []


# -- logs -------------------------------------------------------------------------------


def test_one_log_line_per_transaction_without_body_or_credentials(auth_gateway, sink, certs):
    stream = io.StringIO()
    logsetup.configure("debug", "json", stream=stream)
    try:
        with auth_gateway.client() as client:
            client.starttls(context=tls_client_context(certs))
            client.login("relay", PASSWORD)
            body = b"Message-ID: <log-test@example.org>\r\nSubject: Salary list\r\n\r\nTOPSECRETBODY\r\n"
            client.sendmail("a@example.org", ["b@example.net", "c@example.net"], body)
    finally:
        logsetup.configure("warning")
    output = stream.getvalue()
    assert "TOPSECRETBODY" not in output
    assert PASSWORD not in output
    assert base64.b64encode(f"\0relay\0{PASSWORD}".encode()).decode() not in output
    import json

    lines = [json.loads(line) for line in output.splitlines()]
    (tx,) = [line for line in lines if line["event"] == "transaction"]
    assert tx["message_id"] == "<log-test@example.org>"
    assert tx["nrcpt"] == 2
    assert tx["outcome"] == "relayed"
    assert tx["reply"].startswith("250 2.0.0")
    assert tx["user"] == "relay"
    assert tx["size"] == len(body)
    assert tx["queue_id"] in tx["reply"]


def test_text_log_escapes_what_clients_send():
    stream = io.StringIO()
    logsetup.configure("info", "text", stream=stream)
    try:
        logsetup.event(
            logging.getLogger("sealgate.intake"),
            logging.INFO,
            "transaction",
            message_id="<x@y>\r\n2026-01-01 info forged=line",
        )
    finally:
        logsetup.configure("warning")
    (line,) = stream.getvalue().splitlines()
    assert 'message_id="<x@y>\\r\\n2026-01-01 info forged=line"' in line


@pytest.mark.peers  # swaks, a real client
def test_swaks_over_starttls_with_auth(auth_gateway, sink):
    result = subprocess.run(
        [
            "swaks", "--server", "127.0.0.1", "--port", str(auth_gateway.port),
            "--from", "alice@example.org", "--to", "bob@example.net",
            "--tls", "--auth", "PLAIN", "--auth-user", "relay", "--auth-password", PASSWORD,
            "--header", "Subject: via swaks", "--body", "Hello from swaks",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    (arrived,) = sink.messages
    assert b"Subject: via swaks" in arrived.data
    assert b"Hello from swaks" in arrived.data
    assert b"with ESMTPSA id" in arrived.data
