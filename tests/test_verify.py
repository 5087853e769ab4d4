"""SPF, DKIM and DMARC verification against the test DNS (tests/support/zones.py)."""

from __future__ import annotations

import re
from pathlib import Path

import authres
import publicsuffixlist
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from gateway.mailauth.dkimsign import Signer, SigningKey
from gateway.mailauth.verify import Verdicts, Verifier, _authserv_id, strip_forged_results
from tests.support.unbound import TestDNS

AUTHSERV = "mx.sealgate.example"
GOOD_IP = "192.0.2.10"  # inside the zones' ip4:192.0.2.0/24
BAD_IP = "198.51.100.9"


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    """The packaged list plus ``test``: relaxed alignment must see signed.test as an organisation."""
    source = Path(publicsuffixlist.__file__).with_name("public_suffix_list.dat").read_text()
    return PublicSuffixList(source=source + "\ntest\n", accept_unknown=False)


@pytest.fixture
def verifier(test_dns: TestDNS, psl: PublicSuffixList) -> Verifier:
    return Verifier(test_dns.resolver(timeout=2.0, attempts=1), AUTHSERV, psl)


@pytest.fixture(scope="module")
def records(test_dns: TestDNS) -> None:
    """Names of this module's own, set once."""
    test_dns.set_records("vspf-soft.signed.test", [("TXT", "v=spf1 ip4:192.0.2.0/24 ~all")])
    test_dns.set_records("vspf-neutral.signed.test", [("TXT", "v=spf1 ?all")])
    test_dns.set_records("vspf-perm.signed.test", [("TXT", "v=spf1 bogusmech -all")])
    test_dns.set_records("vspf-temp.signed.test", [("TXT", "v=spf1 include:bogus.test -all")])


def message(from_: str = "Alice <alice@signed.test>", body: bytes = b"Hello.\r\n") -> bytes:
    return (
        f"From: {from_}\r\nTo: bob@example.org\r\nSubject: greetings\r\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <v1@signed.test>\r\n\r\n"
    ).encode() + body


def signed(test_dns: TestDNS, data: bytes, *keys: tuple[str, str, object]) -> bytes:
    signing = [
        SigningKey(domain, selector, "rsa-sha256" if selector != "ed" else "ed25519-sha256", key)  # type: ignore[arg-type]
        for domain, selector, key in keys
    ]
    return Signer(signing).sign(data) + data


def rsa(test_dns: TestDNS, domain: str = "signed.test") -> tuple[str, str, object]:
    return (domain, "sel", test_dns.keys.dkim_rsa)


def check(verifier: Verifier, data: bytes, mail_from: str, ip: str = GOOD_IP) -> Verdicts:
    return verifier.verify(data, mail_from=mail_from, helo="mail.signed.test", client_ip=ip)


# SPF -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("records")
@pytest.mark.parametrize(
    ("mail_from", "ip", "expected"),
    [
        ("a@signed.test", GOOD_IP, "pass"),
        ("a@signed.test", BAD_IP, "fail"),
        ("a@vspf-soft.signed.test", BAD_IP, "softfail"),
        ("a@vspf-neutral.signed.test", BAD_IP, "neutral"),
        ("a@vspf-nothing.signed.test", GOOD_IP, "none"),
        ("a@bogus.test", GOOD_IP, "temperror"),
        ("a@vspf-temp.signed.test", GOOD_IP, "temperror"),
        ("a@vspf-perm.signed.test", GOOD_IP, "permerror"),
    ],
)
def test_spf_results(verifier: Verifier, mail_from: str, ip: str, expected: str) -> None:
    verdicts = check(verifier, message(), mail_from, ip)
    assert verdicts.spf.result == expected
    assert ("smtp.mailfrom", mail_from) in verdicts.spf.properties
    assert verdicts.spf.secure == (expected not in ("temperror",))


def test_spf_null_sender_uses_helo(verifier: Verifier) -> None:
    verdicts = verifier.verify(message(), mail_from="<>", helo="signed.test", client_ip=GOOD_IP)
    assert verdicts.spf.result == verdicts.helo.result == "pass"
    assert verdicts.mail_from_null


def test_spf_unsigned_zone_is_not_secure(verifier: Verifier) -> None:
    verdicts = check(verifier, message(), "a@unsigned.test")
    assert verdicts.spf.result == "pass"
    assert not verdicts.spf.secure


# DKIM ------------------------------------------------------------------------------------


def test_dkim_rsa_and_ed25519_pass(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(
        test_dns, message(), rsa(test_dns), ("signed.test", "ed", test_dns.keys.dkim_ed25519)
    )
    verdicts = check(verifier, data, "a@signed.test")
    assert [v.result for v in verdicts.dkim] == ["pass", "pass"]
    assert [v.get("header.s") for v in verdicts.dkim] == ["sel", "ed"]
    assert all(v.secure and v.get("header.d") == "signed.test" for v in verdicts.dkim)


def test_dkim_body_tamper_fails(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message(), rsa(test_dns)).replace(b"Hello.", b"Hello!")
    (verdict,) = check(verifier, data, "a@signed.test").dkim
    assert verdict.result == "fail"
    assert "body hash" in verdict.reason


def test_dkim_header_tamper_fails(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message(), rsa(test_dns)).replace(b"greetings", b"urgent")
    (verdict,) = check(verifier, data, "a@signed.test").dkim
    assert verdict.result == "fail"


def test_every_signature_is_checked(verifier: Verifier, test_dns: TestDNS) -> None:
    wrong = ed25519.Ed25519PrivateKey.generate()  # not the key published at ed._domainkey
    data = signed(test_dns, message(), ("signed.test", "ed", wrong))
    data = signed(test_dns, data, rsa(test_dns))
    verdicts = check(verifier, data, "a@signed.test", BAD_IP)
    assert [(v.get("header.s"), v.result) for v in verdicts.dkim] == [
        ("sel", "pass"),
        ("ed", "fail"),
    ]
    assert verdicts.dmarc.result == "pass"


def test_signature_not_covering_from_fails(verifier: Verifier, test_dns: TestDNS) -> None:
    signature = Signer(
        [SigningKey("signed.test", "sel", "rsa-sha256", test_dns.keys.dkim_rsa)]
    ).sign(message())
    signature = re.sub(rb"h=[^;]*", b"h=to:subject:date:message-id", signature)
    (verdict,) = check(verifier, signature + message(), "a@signed.test").dkim
    assert verdict.result == "fail"
    assert "From" in verdict.reason


def test_dkim_unsigned_zone_is_not_secure(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message("a@unsigned.test"), rsa(test_dns, "unsigned.test"))
    (verdict,) = check(verifier, data, "a@unsigned.test").dkim
    assert verdict.result == "pass"
    assert not verdict.secure


def test_dkim_key_lookup_failure_is_temperror(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message("a@bogus.test"), rsa(test_dns, "bogus.test"))
    (verdict,) = check(verifier, data, "a@bogus.test").dkim
    assert verdict.result == "temperror"
    assert not verdict.secure


# DMARC -----------------------------------------------------------------------------------


def test_dmarc_pass_via_spf(verifier: Verifier) -> None:
    verdicts = check(verifier, message(), "bounce@signed.test")
    assert verdicts.dmarc.result == "pass"
    assert verdicts.dmarc.secure
    facts = verdicts.as_facts()
    assert facts["spf"] == "pass" and facts["dmarc"] == "pass" and facts["secure"] is True
    assert facts["from_domain"] == "signed.test" and facts["dkim_aligned"] is False


def test_dmarc_pass_via_dkim(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message(), rsa(test_dns))
    verdicts = check(verifier, data, "bounce@unsigned.test", BAD_IP)
    assert verdicts.spf.result == "fail"
    assert verdicts.dmarc.result == "pass"
    assert verdicts.as_facts()["dkim_aligned"] is True


def test_dmarc_fail_with_reject(verifier: Verifier) -> None:
    verdicts = check(verifier, message(), "bounce@signed.test", BAD_IP)
    assert verdicts.dmarc.result == "fail"
    assert verdicts.dmarc_policy == "reject"
    assert verdicts.as_facts()["dmarc_policy"] == "reject"
    assert verdicts.dmarc.secure


def test_dmarc_unaligned_spf_pass_fails(verifier: Verifier) -> None:
    verdicts = check(verifier, message(), "bounce@unsigned.test", GOOD_IP)
    assert verdicts.spf.result == "pass"
    assert verdicts.dmarc.result == "fail"


def test_dmarc_subdomain_policy(verifier: Verifier) -> None:
    verdicts = check(verifier, message("alice@news.signed.test"), "b@news.signed.test", BAD_IP)
    assert verdicts.dmarc.result == "fail"
    assert verdicts.dmarc_policy == "quarantine"  # sp of signed.test


def test_dmarc_relaxed_alignment_across_subdomains(verifier: Verifier) -> None:
    verdicts = check(verifier, message("alice@news.signed.test"), "b@signed.test", GOOD_IP)
    assert verdicts.dmarc.result == "pass"
    assert verdicts.as_facts()["spf_aligned"] is True


def test_dmarc_record_lookup_failure_is_temperror(verifier: Verifier) -> None:
    verdicts = check(verifier, message("alice@bogus.test"), "b@signed.test")
    assert verdicts.dmarc.result == "temperror"
    assert verdicts.dmarc_policy is None
    assert not verdicts.dmarc.secure


@pytest.mark.usefixtures("records")
def test_dmarc_aligned_dns_failure_is_temperror(verifier: Verifier) -> None:
    verdicts = check(verifier, message("alice@vspf-temp.signed.test"), "b@vspf-temp.signed.test")
    assert verdicts.spf.result == "temperror"
    assert verdicts.dmarc.result == "temperror"


def test_dmarc_unsigned_zone_is_not_secure(verifier: Verifier) -> None:
    verdicts = check(verifier, message("a@unsigned.test"), "b@unsigned.test")
    assert verdicts.dmarc.result == "pass"
    assert verdicts.dmarc_policy == "none"
    assert not verdicts.dmarc.secure and not verdicts.as_facts()["secure"]


def test_dmarc_several_from_addresses_is_permerror(verifier: Verifier) -> None:
    verdicts = check(verifier, message("a@signed.test, b@unsigned.test"), "b@signed.test")
    assert verdicts.dmarc.result == "permerror"


# Authentication-Results --------------------------------------------------------------------


def test_header_renders_and_parses(verifier: Verifier, test_dns: TestDNS) -> None:
    data = signed(test_dns, message(), rsa(test_dns))
    header = verifier.header(check(verifier, data, "bounce@signed.test"))
    assert header.startswith(f"Authentication-Results: {AUTHSERV};".encode())
    assert header.endswith(b"\r\n") and b"\n" not in header.replace(b"\r\n", b"")
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    parsed = authres.parse(re.sub(r"\r\n", "", header.decode()).strip())
    assert parsed.authserv_id == AUTHSERV
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"),
        ("spf", "none"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
    ]


def test_header_does_not_let_the_sender_inject(verifier: Verifier) -> None:
    verdicts = check(verifier, message(), "x;dmarc=pass@signed.test", BAD_IP)
    header = verifier.header(verdicts).decode()
    parsed = authres.parse(header.replace("\r\n", "").strip())
    assert [r.method for r in parsed.results] == ["spf", "spf", "dkim", "dmarc"]
    assert "dmarc=pass" not in header


def test_strip_forged_results() -> None:
    data = (
        b"Received: from x\r\n"
        b"Authentication-Results: MX.Sealgate.Example; dkim=pass header.d=bank.example\r\n"
        b"Authentication-Results: (forged) mx.sealgate.example;\r\n\tspf=pass\r\n"
        b"authentication-results : mx.sealgate.example 1; dmarc=pass\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"Authentication-Results: mx.sealgate.example.evil; spf=fail\r\n"
        b"Subject: x\r\n\r\n"
        b"Authentication-Results: mx.sealgate.example; in the body stays\r\n"
    )
    stripped = strip_forged_results(data, AUTHSERV)
    assert stripped == (
        b"Received: from x\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"Authentication-Results: mx.sealgate.example.evil; spf=fail\r\n"
        b"Subject: x\r\n\r\n"
        b"Authentication-Results: mx.sealgate.example; in the body stays\r\n"
    )


def strip_forged_results_by_lines(data: bytes, authserv_id: str) -> bytes:
    """The first strip_forged_results, which split the whole message into lines: the model."""
    wanted = authserv_id.strip().lower()
    lines = data.splitlines(keepends=True)
    kept: list[bytes] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line in (b"\r\n", b"\n"):
            kept.extend(lines[index:])
            break
        end = index + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1
        field = lines[index:end]
        forged = re.match(rb"^authentication-results[ \t]*:", line, re.IGNORECASE)
        if not (forged and _authserv_id(b"".join(field)) == wanted):
            kept.extend(field)
        index = end
    return b"".join(kept)


_PIECE = st.sampled_from(
    [b"Authentication-Results: mx.sealgate.example; spf=pass", b"Subject: x",
     b"authentication-results:(c) MX.sealgate.example", b"Authentication-Results: other; x",
     b" folded", b"\tfolded", b"", b"\r\n", b"\n", b"\r", b"body"]
)  # fmt: skip
_ENDING = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_PIECE, _ENDING).map(b"".join), max_size=14))
def test_strip_forged_results_reads_the_header_only_and_changes_nothing_else(pieces) -> None:
    """The same result as splitting the whole message, whatever its line ends."""
    data = b"".join(pieces)
    stripped = strip_forged_results(data, AUTHSERV)
    assert stripped == strip_forged_results_by_lines(data, AUTHSERV)
    if stripped == data:
        assert stripped is data, "nothing stripped: the message itself, not a copy"
