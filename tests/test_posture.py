"""Recipient-domain transport posture: DANE, MTA-STS (served by a local HTTPS server with a
test CA, found through the test DNS), TLS-RPT, and the ``recipient_tls`` policy condition."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mailauth.posture import PolicyError, PostureChecker, StsPolicy, parse_sts_policy
from gateway.policy.engine import Policy
from gateway.policy.facts import Lookups, gather
from gateway.policy.packs import PolicyError as PackError
from tests.support.certs import CertFiles, make_certificates
from tests.support.unbound import TestDNS
from tests.support.zones import tlsa_record

POLICY = "version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"
# Names whose policy host is in the test certificate; "wrongcert" is deliberately not.
SERVED = ("enforce", "testing", "mismatch", "modenone", "cached")


@dataclass
class PolicyServer:
    """An HTTPS server answering /.well-known/mta-sts.txt per Host from ``policies``."""

    port: int
    ca: Path
    policies: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)


def _handler(server: PolicyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            server.hits[host] = server.hits.get(host, 0) + 1
            status, media_type, body = server.policies.get(host, (404, "text/plain", "no"))
            if self.path != "/.well-known/mta-sts.txt":
                status, media_type, body = 404, "text/plain", "no"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _sts_domain(test_dns: TestDNS, label: str, *, policy_host: bool = True) -> str:
    """``<label>.sts.signed.test``: MX mx.sts.signed.test (no TLSA), STS and TLS-RPT records."""
    domain = f"{label}.sts.signed.test"
    test_dns.set_records(domain, [("MX", "10 mx.sts.signed.test.")])
    test_dns.set_records(f"_mta-sts.{domain}", [("TXT", f"v=STSv1; id={label}1")])
    if policy_host:
        test_dns.set_records(f"mta-sts.{domain}", [("A", "127.0.0.1")])
    return domain


@pytest.fixture(scope="module")
def sts(test_dns: TestDNS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    test_dns.set_records("mx.sts.signed.test", [("A", "127.0.0.1")])
    for label in (*SERVED, "wrongcert"):
        _sts_domain(test_dns, label)
    _sts_domain(test_dns, "nohost", policy_host=False)
    test_dns.set_records(
        "_smtp._tls.enforce.sts.signed.test", [("TXT", "v=TLSRPTv1; rua=mailto:tls@example.org")]
    )
    files: CertFiles = make_certificates(
        tmp_path_factory.mktemp("sts-certs"),
        tuple(f"mta-sts.{label}.sts.signed.test" for label in SERVED),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.certificate, files.key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state = PolicyServer(httpd.server_address[1], files.ca)
    httpd.RequestHandlerClass = _handler(state)
    for label, mode, mx in (
        ("enforce", "enforce", "*.sts.signed.test"),
        ("testing", "testing", "*.sts.signed.test"),
        ("mismatch", "enforce", "mx.elsewhere.example"),
        ("modenone", "none", "*.sts.signed.test"),
        ("cached", "enforce", "mx.sts.signed.test"),
        ("wrongcert", "enforce", "*.sts.signed.test"),
    ):
        body = POLICY.format(mode=mode, mx=mx)
        state.policies[f"mta-sts.{label}.sts.signed.test"] = (200, "text/plain", body)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    httpd.shutdown()
    thread.join(5)
    httpd.server_close()


@pytest.fixture
def checker(test_dns: TestDNS, sts: PolicyServer) -> PostureChecker:
    return PostureChecker(test_dns.resolver(), https_port=sts.port, ca_file=sts.ca, timeout=3)


def test_dane_for_a_signed_domain_with_tlsa(checker: PostureChecker) -> None:
    posture = checker.check("signed.test")
    assert posture.mx == ("mx.signed.test",)
    assert posture.dnssec and posture.dane
    assert posture.mta_sts == "none" and not posture.tls_rpt
    assert posture.enforced == "dane"


def test_no_dane_when_the_tlsa_record_is_not_validated(test_dns: TestDNS) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    test_dns.set_records("_25._tcp.mx.unsigned.test", [("TLSA", tlsa_record(key))])
    assert test_dns.resolver().query_blocking("_25._tcp.mx.unsigned.test", "TLSA").status == "ok"
    posture = PostureChecker(test_dns.resolver()).check("UNSIGNED.test.")
    assert posture.domain == "unsigned.test"
    assert posture.mx == ("mx.unsigned.test",)
    assert not posture.dnssec and not posture.dane
    assert posture.mta_sts == "none"
    assert posture.enforced is None


def test_bogus_domain_is_neither_secure_nor_known(test_dns: TestDNS) -> None:
    posture = PostureChecker(test_dns.resolver(timeout=1, attempts=1)).check("bogus.test")
    assert posture.mx == () and not posture.dnssec and not posture.dane
    assert posture.mta_sts == "temperror"  # unknown, never "none"
    assert posture.enforced is None


def test_mta_sts_enforce_over_https_with_the_test_ca(checker: PostureChecker) -> None:
    posture = checker.check("enforce.sts.signed.test")
    assert posture.mx == ("mx.sts.signed.test",)
    assert posture.dnssec and not posture.dane  # no TLSA for mx.sts.signed.test
    assert posture.mta_sts == "enforce"
    assert posture.tls_rpt
    assert posture.enforced == "mta-sts"


def test_mta_sts_testing_none_and_uncovered_mx(checker: PostureChecker) -> None:
    assert checker.check("testing.sts.signed.test").mta_sts == "testing"
    assert checker.check("modenone.sts.signed.test").mta_sts == "none"
    mismatch = checker.check("mismatch.sts.signed.test")
    assert mismatch.mta_sts == "testing" and mismatch.enforced is None


def test_wrong_certificate_is_a_temperror(checker: PostureChecker) -> None:
    posture = checker.check("wrongcert.sts.signed.test")
    assert posture.mta_sts == "temperror" and posture.enforced is None


def test_untrusted_ca_and_missing_policy_host_are_temperrors(
    test_dns: TestDNS, sts: PolicyServer
) -> None:
    untrusted = PostureChecker(test_dns.resolver(), https_port=sts.port, timeout=3)
    assert untrusted.check("enforce.sts.signed.test").mta_sts == "temperror"
    checker = PostureChecker(test_dns.resolver(), https_port=sts.port, ca_file=sts.ca)
    assert checker.check("nohost.sts.signed.test").mta_sts == "temperror"


def test_no_record_is_none(checker: PostureChecker) -> None:
    posture = checker.check("unsigned.test")
    assert posture.mta_sts == "none" and not posture.tls_rpt


def test_policy_is_cached_per_record_id(
    test_dns: TestDNS, sts: PolicyServer, checker: PostureChecker
) -> None:
    host = "mta-sts.cached.sts.signed.test"
    assert checker.check("cached.sts.signed.test").mta_sts == "enforce"
    fresh = PostureChecker(test_dns.resolver(), https_port=sts.port, ca_file=sts.ca)
    before = sts.hits.get(host, 0)
    assert fresh.check("cached.sts.signed.test").mta_sts == "enforce"
    assert fresh.check("cached.sts.signed.test").mta_sts == "enforce"
    assert sts.hits[host] == before + 1


def test_policy_parsing_is_strict() -> None:
    policy = parse_sts_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: *.Example.org\r\nmx: mail.example.net\r\nmax_age: 604800\r\n"
    )
    assert policy == StsPolicy("enforce", ("*.example.org", "mail.example.net"), 604800)
    assert policy.covers("mx1.example.org") and policy.covers("MAIL.example.net.")
    assert not policy.covers("example.org") and not policy.covers("a.b.example.org")
    for broken in (
        "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforced\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n",
        "<html>not a policy</html>",
    ):
        with pytest.raises(PolicyError):
            parse_sts_policy(broken)


PACK = """
[[rules]]
name = "protect-all"
action = "protect"

[[rules]]
name = "tls-recipients"
action = "relay"
override = true
when.recipient_tls = ["dane", "mta-sts"]
"""

MESSAGE = b"From: alice@example.org\r\nTo: x@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def test_policy_relays_to_domains_enforcing_tls_and_protects_the_rest(
    tmp_path: Path, checker: PostureChecker
) -> None:
    (tmp_path / "pack.toml").write_text(PACK)
    policy = Policy.load([tmp_path / "pack.toml"])
    recipients = ["bob@signed.test", "carol@unsigned.test", "dave@enforce.sts.signed.test"]
    facts = gather(MESSAGE, "alice@example.org", None, lookups=Lookups(posture=checker))
    decisions = policy.decide(facts, recipients)
    assert decisions["bob@signed.test"].action == "relay"
    assert any(
        r.why == "recipient domain enforces TLS with DANE"
        for r in decisions["bob@signed.test"].reasons
    )
    assert decisions["dave@enforce.sts.signed.test"].action == "relay"
    assert decisions["carol@unsigned.test"].action == "protect"
    # Without a posture checker in the facts (no [mailauth] verify) the condition never holds.
    without = policy.decide(gather(MESSAGE, "alice@example.org", None), recipients)
    assert {d.action for d in without.values()} == {"protect"}


def test_recipient_tls_none_and_unknown_values(tmp_path: Path, checker: PostureChecker) -> None:
    (tmp_path / "none.toml").write_text(
        '[[rules]]\nname = "plain"\naction = "protect"\nwhen.recipient_tls = ["none"]\n'
    )
    policy = Policy.load([tmp_path / "none.toml"])
    facts = gather(MESSAGE, "alice@example.org", None, lookups=Lookups(posture=checker))
    decisions = policy.decide(facts, ["bob@signed.test", "carol@unsigned.test"])
    assert decisions["bob@signed.test"].action == "relay"
    assert decisions["carol@unsigned.test"].action == "protect"
    (tmp_path / "bad.toml").write_text(
        '[[rules]]\nname = "x"\naction = "protect"\nwhen.recipient_tls = ["starttls"]\n'
    )
    with pytest.raises(PackError, match="unknown mechanism 'starttls'"):
        Policy.load([tmp_path / "bad.toml"])
