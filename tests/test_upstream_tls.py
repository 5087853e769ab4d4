"""The upstream connection: TLS modes, certificate checks and AUTH."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from tests.support.sink import Sink

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: tls\r\n\r\nbody\r\n"


def server_context(certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.certificate, certs.key)
    return context


@pytest.fixture
def start_sink(loop_thread) -> Iterator[Callable[..., Sink]]:
    started: list[Sink] = []

    def start(**kwargs) -> Sink:
        sink = Sink(**kwargs)
        loop_thread.run(sink.start())
        started.append(sink)
        return sink

    yield start
    for sink in started:
        loop_thread.run(sink.stop())


def send(gateway) -> tuple[int, bytes]:
    with gateway.client() as client:
        client.ehlo()
        client.mail("a@example.org")
        client.rcpt("b@example.net")
        return client.data(MESSAGE)


def upstream(sink: Sink, certs, **settings) -> dict:
    return {"host": "localhost", "port": sink.port, "ca_file": str(certs.ca), **settings}


def test_starttls_to_upstream(make_gateway, start_sink, certs):
    tls_sink = start_sink(tls=server_context(certs))
    gateway = make_gateway(upstream=upstream(tls_sink, certs, tls="starttls"))
    assert send(gateway)[0] == 250
    (arrived,) = tls_sink.messages
    assert arrived.tls


def test_implicit_tls_to_upstream(make_gateway, start_sink, certs):
    tls_sink = start_sink(tls=server_context(certs), implicit_tls=True)
    gateway = make_gateway(upstream=upstream(tls_sink, certs, tls="implicit"))
    assert send(gateway)[0] == 250
    assert tls_sink.messages[0].tls


def test_untrusted_certificate_defers(make_gateway, start_sink, certs):
    tls_sink = start_sink(tls=server_context(certs))
    settings = upstream(tls_sink, certs, tls="starttls")
    del settings["ca_file"]  # the system's CAs do not know our test CA
    gateway = make_gateway(upstream=settings)
    code, text = send(gateway)
    assert (code, text) == (451, b"4.7.5 TLS with the upstream failed; try again later")
    assert tls_sink.messages == []


def test_wrong_host_name_defers(make_gateway, start_sink, certs):
    tls_sink = start_sink(tls=server_context(certs))
    gateway = make_gateway(
        upstream=upstream(tls_sink, certs, tls="implicit", server_name="mx.elsewhere.example")
    )
    assert send(gateway) == (451, b"4.7.5 TLS with the upstream failed; try again later")
    assert tls_sink.messages == []


def test_server_name_matches_certificate_when_connecting_by_address(
    make_gateway, start_sink, certs
):
    tls_sink = start_sink(tls=server_context(certs))
    gateway = make_gateway(
        upstream=upstream(
            tls_sink, certs, host="127.0.0.1", tls="starttls", server_name="localhost"
        )
    )
    assert send(gateway)[0] == 250


def test_verification_can_be_turned_off(make_gateway, start_sink, certs):
    tls_sink = start_sink(tls=server_context(certs))
    settings = upstream(tls_sink, certs, tls="starttls", verify_certificate=False)
    del settings["ca_file"]
    gateway = make_gateway(upstream=settings)
    assert send(gateway)[0] == 250


def test_required_starttls_not_offered_defers(make_gateway, start_sink, certs):
    plain_sink = start_sink()
    gateway = make_gateway(upstream=upstream(plain_sink, certs, tls="starttls"))
    code, text = send(gateway)
    assert (code, text) == (451, b"4.7.4 Upstream does not offer STARTTLS; try again later")
    assert plain_sink.messages == []


def test_upstream_auth(make_gateway, start_sink, certs, tmp_path):
    auth_sink = start_sink(tls=server_context(certs), credentials=("sealgate", "up-secret"))
    password_file = tmp_path / "upstream.password"
    password_file.write_text("up-secret\n")
    gateway = make_gateway(
        upstream=upstream(
            auth_sink, certs, tls="starttls", username="sealgate", password_file=str(password_file)
        )
    )
    assert send(gateway)[0] == 250
    assert auth_sink.messages[0].login == "sealgate"


def test_upstream_auth_refused_defers(make_gateway, start_sink, certs):
    auth_sink = start_sink(tls=server_context(certs), credentials=("sealgate", "up-secret"))
    gateway = make_gateway(
        upstream=upstream(auth_sink, certs, tls="starttls", username="sealgate", password="wrong")
    )
    code, text = send(gateway)
    assert (code, text) == (451, b"4.3.5 Upstream refused Sealgate's credentials; try again later")
    assert auth_sink.messages == []


def test_upstream_without_smtputf8_refuses_utf8_mail_permanently(make_gateway, start_sink, certs):
    old_sink = start_sink(smtputf8=False)
    gateway = make_gateway(upstream={"port": old_sink.port})
    with gateway.client() as client:
        client.ehlo()
        client.mail("jörg@bücher.example", options=["SMTPUTF8"])
        client.rcpt("b@example.net")
        code, text = client.data(MESSAGE)
    assert (code, text) == (
        554,
        b"5.6.7 Upstream does not support SMTPUTF8, which this message needs",
    )
