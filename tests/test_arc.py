"""ARC chain validation (RFC 8617 §5.2) against the test DNS (tests/support/zones.py).

ARC sets are made by dkimpy's own sealer with the test zone's RSA key (selector ``sel``), so
the signatures and the published keys are real; verification goes through our resolver.
"""

from __future__ import annotations

import re

import authres
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from publicsuffixlist import PublicSuffixList

from gateway.mailauth.verify import Verdict, Verdicts, Verifier
from tests.support.unbound import TestDNS

AUTHSERV = "mx.sealgate.example"
GOOD_IP = "192.0.2.10"
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    return PublicSuffixList()


@pytest.fixture
def verifier(test_dns: TestDNS, psl: PublicSuffixList) -> Verifier:
    return Verifier(test_dns.resolver(timeout=2.0, attempts=1), AUTHSERV, psl)


@pytest.fixture(scope="module")
def pem(test_dns: TestDNS) -> bytes:
    return test_dns.keys.dkim_rsa.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def message(body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: Alice <alice@signed.test>\r\nTo: bob@example.org\r\nSubject: greetings\r\n"
        b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <arc1@signed.test>\r\n\r\n" + body
    )


def seal(data: bytes, pem: bytes, hop: str, results: str, domain: bytes = b"signed.test") -> bytes:
    """``data`` as the intermediary ``hop`` forwards it: its A-R field, then its ARC set."""
    data = f"Authentication-Results: {hop}; {results}\r\n".encode() + data
    arc_set = dkim.arc_sign(
        data,
        b"sel",
        domain,
        pem,
        hop.encode(),
        signature_algorithm=b"rsa-sha256",
        include_headers=SIGNED,
    )
    assert len(arc_set) == 3
    return b"".join(arc_set) + data


def two_hops(pem: bytes) -> bytes:
    first = seal(message(), pem, "hop1.signed.test", "dkim=none")
    return seal(first, pem, "hop2.signed.test", "arc=pass")


def check(verifier: Verifier, data: bytes) -> Verdicts:
    return verifier.verify(
        data, mail_from="a@signed.test", helo="mail.signed.test", client_ip=GOOD_IP
    )


def test_one_set_passes(verifier: Verifier, pem: bytes) -> None:
    data = seal(message(), pem, "hop1.signed.test", "dkim=none")
    verdicts = check(verifier, data)
    assert verdicts.arc.result == "pass"
    assert verdicts.arc.secure  # signed.test is DNSSEC-signed
    assert verdicts.arc.get("header.oldest-pass") is None
    assert verdicts.as_facts()["arc"] == "pass"


def test_two_hops_pass_and_show_in_the_header(verifier: Verifier, pem: bytes) -> None:
    verdicts = check(verifier, two_hops(pem))
    assert verdicts.arc.result == "pass"
    header = verifier.header(verdicts)
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert b"smtp.remote-ip" not in header
    parsed = authres.parse(re.sub(r"\r\n", "", header.decode()).strip())
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"),
        ("spf", "none"),
        ("dkim", "none"),
        ("arc", "pass"),
        ("dmarc", "pass"),
    ]


def test_oldest_pass_when_an_older_signature_broke(verifier: Verifier, pem: bytes) -> None:
    first = seal(message(), pem, "hop1.signed.test", "dkim=none")
    first = first.replace(b"Subject: greetings", b"Subject: [list] greetings")
    verdicts = check(verifier, seal(first, pem, "hop2.signed.test", "arc=pass"))
    assert verdicts.arc.result == "pass"
    assert verdicts.arc.get("header.oldest-pass") == "2"
    assert b"header.oldest-pass=2" in verifier.header(verdicts)


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"Hello.", b"Hello!"), (b"Subject: greetings", b"Subject: urgent")],
    ids=["body", "header"],
)
def test_modified_after_sealing_fails(
    verifier: Verifier, pem: bytes, old: bytes, new: bytes
) -> None:
    data = two_hops(pem).replace(old, new)
    verdicts = check(verifier, data)
    assert verdicts.arc.result == "fail"
    assert verdicts.as_facts()["arc"] == "fail"
    assert b"arc=fail" in verifier.header(verdicts)


def test_a_removed_set_fails(verifier: Verifier, pem: bytes) -> None:
    data = two_hops(pem)
    head, body = data.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    kept = [field for field in fields if not re.match(rb"ARC-[\w-]+: i=1;", field)]
    assert len(kept) == len(fields) - 3
    assert check(verifier, b"\r\n".join(kept) + b"\r\n\r\n" + body).arc.result == "fail"


def test_a_chain_reported_failed_fails(verifier: Verifier, pem: bytes) -> None:
    first = seal(message(), pem, "hop1.signed.test", "dkim=none")
    data = seal(first, pem, "hop2.signed.test", "arc=fail")
    assert b"cv=fail" in data
    assert check(verifier, data).arc.result == "fail"


def test_a_forged_seal_fails(verifier: Verifier, pem: bytes) -> None:
    data = two_hops(pem)
    data = re.sub(rb"(ARC-Seal: i=2;[^\r]*?cv=)pass", rb"\1none", data, count=1)
    assert b"cv=none" in data.split(b"ARC-Seal: i=1")[0]
    assert check(verifier, data).arc.result == "fail"


def test_no_arc_fields_is_none(verifier: Verifier) -> None:
    verdicts = check(verifier, message())
    assert verdicts.arc.result == "none"
    assert verdicts.as_facts()["arc"] == "none"
    assert not re.search(rb"\barc=", verifier.header(verdicts))


def test_key_lookup_failure_is_temperror(verifier: Verifier, pem: bytes) -> None:
    data = seal(message(), pem, "hop1.bogus.test", "dkim=none", domain=b"bogus.test")
    verdicts = check(verifier, data)
    assert verdicts.arc.result == "temperror"
    assert not verdicts.arc.secure
    assert b"arc=temperror" in verifier.header(verdicts)


def test_verdicts_built_without_arc_default_to_none() -> None:
    verdict = Verdict("spf", "pass", False, ())
    verdicts = Verdicts(spf=verdict, helo=verdict, dkim=(), dmarc=verdict, dmarc_policy=None)
    assert verdicts.arc.result == "none"
    assert verdicts.as_facts()["arc"] == "none"
