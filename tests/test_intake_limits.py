"""Connection slots: no client can take them all from the MTA in front.

The MTA is a client in ``smtp.allow_networks``; here that is 127.0.0.1 alone, and
"other" clients (the ones that must authenticate) connect from further loopback
addresses, 127.0.0.2 and up, which Linux routes to ``lo`` without any set-up.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from gateway import config
from gateway.intake.access import hash_password
from gateway.intake.capacity import client_key
from tests.support.gateway import wait_for
from tests.support.postfix import postfix_instance
from tests.support.smtpraw import RawSMTP

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n"
PASSWORD = "correct horse battery staple"
MTA_ONLY = ["127.0.0.1/32"]


def send_message(smtp: RawSMTP) -> tuple[int, str]:
    assert smtp.command("MAIL FROM:<a@example.org>")[0] == 250
    assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
    assert smtp.command("DATA")[0] == 354
    smtp.send(MESSAGE + b".\r\n")
    return smtp.reply()


def final_words(smtp: RawSMTP, within: float) -> bytes:
    """Everything the server still sends until it closes the connection."""
    smtp.sock.settimeout(within)
    received = smtp.buffer
    try:
        while chunk := smtp.sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {within} s; received {received!r}") from None
    return received


@pytest.fixture
def connections() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def open_from(stack: ExitStack, port: int, source: str) -> RawSMTP:
    return stack.enter_context(RawSMTP(port, source=source))


def test_other_clients_cannot_crowd_out_the_mta(make_gateway, sink, connections):
    gateway = make_gateway(
        smtp={
            "allow_networks": MTA_ONLY,
            "max_connections": 20,
            "reserved_share": 0.5,
            "max_connections_per_client": 4,
        }
    )
    # One address: its own limit.
    greetings = [open_from(connections, gateway.port, "127.0.0.2").greeting for _ in range(6)]
    assert [code for code, _ in greetings] == [220] * 4 + [421] * 2
    assert greetings[-1][1] == (
        "421 4.7.0 Too many connections from your address; please try again later"
    )
    # Many addresses: together no more than what is not kept for the MTA (20 - 10).
    for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        for _ in range(4):
            open_from(connections, gateway.port, source)
    assert gateway.gateway.intake.connections == 10
    # The MTA still gets its ten, and mail goes through while the others idle.
    mta = [open_from(connections, gateway.port, "127.0.0.1") for _ in range(10)]
    assert all(smtp.greeting[0] == 220 for smtp in mta)
    mta[0].command("EHLO mta.test")
    assert send_message(mta[0])[0] == 250
    assert len(sink.messages) == 1
    # max_connections still bounds the whole.
    code, text = open_from(connections, gateway.port, "127.0.0.1").greeting
    assert text == "421 4.7.0 Too many connections; please try again later"


def test_real_postfix_delivers_while_220_idle_connections_are_held(make_gateway, sink, connections):
    """The attack as reported, with the default limits and a real Postfix in front."""
    gateway = make_gateway(smtp={"allow_networks": MTA_ONLY})
    greetings = Counter(
        open_from(connections, gateway.port, f"127.0.0.{2 + n // 10}").greeting[0]
        for n in range(220)
    )
    assert greetings == {220: 100, 421: 120}
    with postfix_instance() as postfix:
        postfix.start_relayhost(gateway.port)
        postfix.submit("alice@example.org", ["bob@example.net"], MESSAGE)

        def delivered() -> bool:
            postfix.flush()
            return len(sink.messages) == 1 and not postfix.queue()

        postfix.wait_for(delivered, timeout=30, what="the message delivered", interval=0.5)
        log = postfix.maillog()
        assert "status=sent" in log and "421" not in log, postfix.maillog_tail()


def test_the_mta_has_no_per_address_limit(make_gateway, sink, connections):
    gateway = make_gateway(
        smtp={"allow_networks": MTA_ONLY, "max_connections": 30, "max_connections_per_client": 2}
    )
    mta = [open_from(connections, gateway.port, "127.0.0.1") for _ in range(25)]
    assert all(smtp.greeting[0] == 220 for smtp in mta)


def test_a_slot_is_given_back_when_a_connection_closes(make_gateway, connections):
    gateway = make_gateway(smtp={"allow_networks": MTA_ONLY, "max_connections_per_client": 1})
    with RawSMTP(gateway.port, source="127.0.0.2") as first:
        assert first.greeting[0] == 220
        assert open_from(connections, gateway.port, "127.0.0.2").greeting[0] == 421
    wait_for(lambda: gateway.gateway.intake.connections == 0, what="the connection to close")
    assert open_from(connections, gateway.port, "127.0.0.2").greeting[0] == 220


def test_idle_client_that_never_authenticates_is_closed(make_gateway):
    gateway = make_gateway(
        smtp={"allow_networks": MTA_ONLY, "auth_timeout": 0.5, "mail_timeout": 30}
    )
    started = time.monotonic()
    with RawSMTP(gateway.port, source="127.0.0.2") as smtp:
        smtp.command("EHLO other.test")
        # Being busy does not buy time.
        for _ in range(3):
            assert smtp.command("NOOP")[0] == 250
            time.sleep(0.1)
        words = final_words(smtp, within=3)
        assert words == b"421 4.7.0 Not authenticated in time; closing the connection\r\n"
        assert time.monotonic() - started >= 0.5
    wait_for(lambda: gateway.gateway.intake.connections == 0, what="the slot to be given back")


def test_authenticated_client_keeps_its_connection(make_gateway, sink, certs):
    gateway = make_gateway(
        smtp={
            "allow_networks": MTA_ONLY,
            "auth_timeout": 3,
            "tls": {"certificate": str(certs.certificate), "key": str(certs.key)},
            "auth": {"users": [{"name": "relay", "password_hash": hash_password(PASSWORD)}]},
        }
    )
    with smtplib.SMTP(
        "127.0.0.1", gateway.port, timeout=15, source_address=("127.0.0.2", 0)
    ) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(certs.ca)))
        client.login("relay", PASSWORD)
        time.sleep(3.5)  # past auth_timeout: authenticated, the deadline no longer applies
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    (arrived,) = sink.messages
    assert b"with ESMTPSA id" in arrived.data


def test_mta_that_never_starts_a_transaction_is_closed(make_gateway):
    gateway = make_gateway(smtp={"allow_networks": MTA_ONLY, "mail_timeout": 0.6})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO mta.test")
        for command in ("NOOP", "RSET", "EHLO mta.test", "NOOP"):
            assert smtp.command(command)[0] == 250
            time.sleep(0.1)
        words = final_words(smtp, within=3)
        assert words == b"421 4.4.2 No mail transaction started in time; closing the connection\r\n"


def test_the_mail_deadline_starts_again_after_each_transaction(make_gateway, sink):
    gateway = make_gateway(smtp={"allow_networks": MTA_ONLY, "mail_timeout": 1})
    with RawSMTP(gateway.port) as smtp:
        smtp.command("EHLO mta.test")
        for _ in range(2):
            time.sleep(0.6)
            # A transaction under way is never cut, however long it takes.
            assert smtp.command("MAIL FROM:<a@example.org>")[0] == 250
            time.sleep(1.2)
            assert smtp.command("RCPT TO:<b@example.net>")[0] == 250
            assert smtp.command("DATA")[0] == 354
            smtp.send(MESSAGE + b".\r\n")
            assert smtp.reply()[0] == 250
        assert final_words(smtp, within=3).startswith(b"421 4.4.2")
    assert len(sink.messages) == 2


# -- configuration ------------------------------------------------------------------


def test_defaults_keep_half_for_the_mta_and_give_it_a_minute():
    smtp = config.parse({}).smtp
    assert (smtp.max_connections, smtp.connections_for_others) == (200, 100)
    assert smtp.max_connections_per_client == 10
    assert (smtp.auth_timeout, smtp.mail_timeout) == (30, 60)


def test_without_allow_networks_nothing_is_kept_apart():
    assert config.parse({"smtp": {"allow_networks": []}}).smtp.connections_for_others == 200


@pytest.mark.parametrize(
    ("smtp", "problem"),
    [
        ({"reserved_share": 1.5}, "smtp.reserved_share: must be at most 1, got 1.5"),
        ({"reserved_share": -0.1}, "smtp.reserved_share: must be at least 0, got -0.1"),
        ({"max_connections_per_client": 0}, "smtp.max_connections_per_client: must be at least 1"),
        ({"auth_timeout": 0}, "smtp.auth_timeout: must be greater than 0"),
        ({"mail_timeout": "soon"}, 'smtp.mail_timeout: expected a number, got "soon"'),
    ],
)
def test_bad_limits_name_the_key(smtp, problem):
    with pytest.raises(config.ConfigError) as error:
        config.parse({"smtp": smtp})
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_a_share_that_leaves_auth_users_nothing_is_refused(certs):
    with pytest.raises(config.ConfigError) as error:
        config.parse(
            {
                "smtp": {
                    "reserved_share": 1,
                    "tls": {"certificate": str(certs.certificate), "key": str(certs.key)},
                    "auth": {"users": [{"name": "relay", "password_hash": hash_password("x")}]},
                }
            }
        )
    (problem,) = error.value.problems
    assert "reserved_share = 1 leaves no connection for the smtp.auth.users" in problem


def test_an_ipv6_client_counts_by_its_slash_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_a_second_loopback_address_is_usable():
    """The tests above rely on it; say so plainly if a system lacks it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
