"""DKIM signing (gateway/mailauth/dkimsign.py), checked by verifiers that share none of its code.

Three checks, each independent of the others:

- **RFC 8463 Appendix A**: signing the RFC's message with its keys, its header list and its
  timestamp must give the very ``b=`` values printed in the RFC, for Ed25519 and RSA (both
  algorithms are deterministic). This is the independent check for Ed25519, which Debian 12's
  Mail::DKIM does not implement.
- **dkimpy's verifier** (``dkim.DKIM(...).verify(idx, dnsfunc=...)`` for every signature, not
  only the first) with a dict-backed ``dnsfunc``. It shares the canonicalisation code with the
  signer, so it proves the plumbing, not the canonicalisation. For Ed25519 it needs PyNaCl.
- **Perl's Mail::DKIM** (Debian ``libmail-dkim-perl``), a separate implementation: a script
  written by the test is run as ``perl SCRIPT PORT`` (no shell), reads length-prefixed
  messages on stdin, feeds each to ``Mail::DKIM::Verifier`` and prints one line per signature.
  It gets the public keys through real DNS queries: the script sets
  ``Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'],
  port => PORT))``, and :class:`TxtServer` below (dnspython messages over a UDP socket on
  127.0.0.1, port 0, in a thread; one per module, stopped at the end) answers TXT queries for
  the test selectors and NXDOMAIN for everything else. Overriding Mail::DKIM's lookup inside
  Perl would need its internal record objects; a real DNS answer exercises its TXT parsing
  too, including a record split into several character-strings as RSA-2048 needs.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import dkim
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dkim.util import parse_tag_value

from gateway.mailauth.dkimsign import (
    DKIMKeyError,
    Signer,
    SigningError,
    SigningKey,
    generate_key,
)

DOMAIN = "example.org"
NOW = 1_795_000_000

# RFC 8463 Appendix A: keys (A.1), the signed message and its two signatures (A.3).
RFC8463_RSA_PEM = b"""-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi
Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM
KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB
AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm
6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe
zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy
6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc
uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy
WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd
WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a
licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst
o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe
uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL
-----END RSA PRIVATE KEY-----
"""
RFC8463_ED25519_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_RSA_RECORD = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6"
    "wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5Q"
    "jvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)
RFC8463_ED25519_RECORD = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_MESSAGE = b"""\
From: Joe SixPack <joe@football.example.com>\r
To: Suzie Q <suzie@shopping.example.net>\r
Subject: Is dinner ready?\r
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r
\r
Hi.\r
\r
We lost the game.  Are you hungry yet?\r
\r
Joe.\r
"""
RFC8463_BODY_HASH = b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
RFC8463_ED25519_B = (
    b"/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
)
RFC8463_RSA_B = (
    b"F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOe"
    b"S9mPYQTnGdaSGsgeefOsk2JzdA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8="
)

# A throwaway 512-bit key (cryptography refuses to generate one): below RFC 8301's minimum.
RSA_512_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAtVXSEnazJ5AqueRu
0+IjUvI/UO5XLWbALUn20zE4DrzKrSwe5YcpvlQ2gmI5MBuHIcLfYfV7lyzspwIr
2vvAoQIDAQABAkANAHFGh6JC1PBrUbiskotL2Di3+c7gX3yqAqKi8+V8EOgyvPnM
jrnriGJWsLWTC1u8xPYIiY4gLYwaDOQEFmgBAiEA8VYtGwRrD6oCEQ1ulA13wQJ2
s2gclVK/SD00dK28jUECIQDAWl1KSuF0qjt9YgtwMcnr7Jfoxn7O9uvpMEYAx6x7
YQIgJq8ikccWhi9BH4ygofi6rmR/tGhG1KSr5p9w7hb/N0ECIExMi+zIPx4T2H0n
wvnCBiJ7OtauxeY6s+FPsLTmf1iBAiEA4PV2SpWVkB+Hr5vYOXNp/Kesheu1D/iX
6xpPViU4uXk=
-----END PRIVATE KEY-----
"""

PERL_VERIFIER = r"""
use strict;
use warnings;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my $port = shift @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $port, recurse => 0,
    retry => 1, udp_timeout => 5, tcp_timeout => 5));
binmode STDIN;
binmode STDOUT;
while (defined(my $size = <STDIN>)) {
    chomp $size;
    read(STDIN, my $message, $size) == $size or die "short message\n";
    $message =~ s/\015?\012/\015\012/g;    # the verifier wants SMTP's CRLF
    my $dkim = Mail::DKIM::Verifier->new();
    $dkim->PRINT($message);
    $dkim->CLOSE();
    for my $sig ($dkim->signatures) {
        print join("\t", map { $_ // '' } $sig->domain, $sig->selector, $sig->algorithm,
                   $sig->result, $sig->result_detail), "\n";
    }
    print "END\n";
}
"""


# --- the key server and the two verifiers -------------------------------------------------


class TxtServer:
    """A UDP DNS server on 127.0.0.1 answering TXT queries from ``records`` (name -> value)."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dkim-txt-dns", daemon=True)

    def __enter__(self) -> TxtServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            self._socket.sendto(self._answer(query), client)

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        value = self.records.get(question.name.to_text(omit_final_dot=True).lower())
        if value is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            # One TXT record of character-strings of at most 255 bytes (RFC 1035 §3.3.14).
            raw = value.encode("ascii")
            strings = " ".join(f'"{raw[i : i + 255].decode()}"' for i in range(0, len(raw), 255))
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
            response.answer.append(dns.rrset.from_rdata(question.name, 60, rdata))
        return response.to_wire()


PerlResult = tuple[str, str, str, str, str]  # domain, selector, algorithm, result, detail


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.from_pem(DOMAIN, "rsa2026", generate_key("rsa"))


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return SigningKey.from_pem(DOMAIN, "ed2026", generate_key("ed25519"))


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    """A key for another domain, for the explicit ``domain=`` case."""
    return SigningKey.from_pem("relay.example.net", "r1", generate_key("ed25519"))


@pytest.fixture(scope="module")
def records(rsa_key: SigningKey, ed_key: SigningKey, other_key: SigningKey) -> dict[str, str]:
    keys = (rsa_key, ed_key, other_key)
    return {key.dns_name: key.dns_record() for key in keys}


@pytest.fixture(scope="module")
def dns_port(records: dict[str, str]) -> Iterator[int]:
    with TxtServer(records) as server:
        yield server.port


@pytest.fixture(scope="module")
def perl_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("perl") is None:
        pytest.fail("perl is missing: `make system-packages` installs libmail-dkim-perl")
    check = subprocess.run(
        ["perl", "-MMail::DKIM::Verifier", "-MNet::DNS::Resolver", "-e", "1"],
        capture_output=True,
        timeout=30,
    )
    if check.returncode != 0:
        pytest.fail("Mail::DKIM is missing: `make system-packages` installs libmail-dkim-perl")
    script = tmp_path_factory.mktemp("perl") / "dkim-verify.pl"
    script.write_text(PERL_VERIFIER)
    return script


@pytest.fixture
def perl_verify(perl_script: Path, dns_port: int) -> Callable[..., list[list[PerlResult]]]:
    """Mail::DKIM's verdicts: for each message, one (domain, selector, ...) per signature."""

    def verify(*messages: bytes) -> list[list[PerlResult]]:
        data = b"".join(b"%d\n%s" % (len(message), message) for message in messages)
        done = subprocess.run(
            ["perl", str(perl_script), str(dns_port)], input=data, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        results: list[list[PerlResult]] = [[]]
        for line in done.stdout.decode().splitlines():
            if line == "END":
                results.append([])
            else:
                domain, selector, algorithm, result, detail = line.split("\t")
                results[-1].append((domain, selector, algorithm, result, detail))
        assert results.pop() == []
        assert len(results) == len(messages), done.stdout.decode()
        return results

    return verify


@pytest.fixture
def need_nacl() -> None:
    """dkimpy verifies Ed25519 only with PyNaCl (RFC 8463 support is optional there)."""
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        pytest.fail("dkimpy needs PyNaCl to verify Ed25519: add pynacl to the test extras")


@pytest.fixture
def dkimpy_verify(records: dict[str, str]) -> Callable[[bytes], list[bool]]:
    """dkimpy's verdict for every DKIM-Signature of a message, top to bottom."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        value = records.get(name.decode("ascii").rstrip(".").lower())
        return None if value is None else value.encode("ascii")

    def verify(message: bytes) -> list[bool]:
        count = len(re.findall(rb"(?im)^dkim-signature:", _header_block(message)))
        checker = dkim.DKIM(message)
        return [_verdict(checker, i, dnsfunc) for i in range(count)]

    return verify


def _verdict(checker: dkim.DKIM, idx: int, dnsfunc: Callable[..., bytes | None]) -> bool:
    """``DKIM.verify`` raises on some failures (a body hash mismatch); ``dkim.verify`` does not."""
    try:
        return bool(checker.verify(idx=idx, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def _header_block(message: bytes) -> bytes:
    return re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]


def _tags(field: bytes) -> dict[bytes, bytes]:
    """The tags of one DKIM-Signature field, unfolded."""
    value = field.split(b":", 1)[1]
    return parse_tag_value(re.sub(rb"\r?\n[ \t]", b" ", value))  # type: ignore[no-any-return]


def _fields(signature: bytes) -> list[bytes]:
    """The DKIM-Signature fields in what :meth:`Signer.sign` returned."""
    return [b"DKIM-Signature:" + part for part in signature.split(b"DKIM-Signature:")[1:]]


# --- messages -----------------------------------------------------------------------------

NOTIFICATION = b"""\
From: Sealgate <noreply@example.org>\r
To: Bob <bob@example.net>\r
Subject: A protected message is waiting for you\r
Date: Sat, 28 Nov 2026 08:00:00 +0000\r
Message-ID: <n1.abc@example.org>\r
Reply-To: alice@example.org\r
Auto-Submitted: auto-generated\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: 7bit\r
X-Sealgate-Id: 1234\r
\r
Alice sent you a protected message. Open it here:\r
https://mail.example.org/m/abcdef\r
"""

FOLDED = b"""\
Received: from mx.example.org by relay.example.org; Sat, 28 Nov 2026 08:00:00 +0000\r
From: "Sealgate, the gateway" <noreply@example.org>\r
To: Bob <bob@example.net>, Carol <carol@example.com>,\r
\tDave <dave@example.com>,\r
    Erin <erin@example.com>\r
Cc: frank@example.com\r
Subject: A subject folded\r
  over   two lines\r
Date: Sat, 28 Nov 2026 08:00:00 +0000\r
Message-ID: <n2.abc@example.org>\r
In-Reply-To: <orig@example.net>\r
References: <a@example.net>\r
 <b@example.net> <orig@example.net>\r
\r
Body with trailing spaces   \r
and \t tabs \t inside.\r
\r
\r
\r
"""

UTF8 = """\
From: Jürgen Groß <noreply@example.org>\r
To: Zoë <zoe@example.net>\r
Subject: Grüße aus Köln – 你好\r
Date: Sat, 28 Nov 2026 08:00:00 +0000\r
Message-ID: <n3.abc@example.org>\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: 8bit\r
\r
Schöne Grüße, 你好, Ελληνικά.\r
""".encode()

LONG_LINES = (
    b"From: noreply@example.org\r\nTo: bob@example.net\r\n"
    b"Subject: " + b"long subject " * 70 + b"\r\n"
    b"Message-ID: <n4.abc@example.org>\r\n\r\n" + b"x" * 5000 + b"\r\n" + b"word " * 2000 + b"\r\n"
)

EMPTY_BODY = b"From: noreply@example.org\r\nTo: bob@example.net\r\nSubject: empty\r\n\r\n"

MULTIPART = b"""\
From: noreply@example.org\r
To: bob@example.net\r
Subject: multipart\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary="XYZ"\r
\r
--XYZ\r
Content-Type: text/plain; charset=us-ascii\r
\r
See the attachment.\r
--XYZ\r
Content-Type: application/octet-stream; name="a.bin"\r
Content-Transfer-Encoding: base64\r
\r
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\r
--XYZ--\r
"""

MESSAGES = {
    "notification": NOTIFICATION,
    "lf-line-endings": NOTIFICATION.replace(b"\r\n", b"\n"),
    "folded-headers": FOLDED,
    "utf8-headers": UTF8,
    "long-lines": LONG_LINES,
    "empty-body": EMPTY_BODY,
    "no-body-at-all": EMPTY_BODY[:-2],
    "multipart": MULTIPART,
}


# --- RFC 8463 Appendix A: known answers ----------------------------------------------------


def rfc8463_keys() -> list[SigningKey]:
    seed = base64.b64decode(RFC8463_ED25519_SEED)
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return [
        SigningKey("football.example.com", "brisbane", "ed25519-sha256", ed),
        SigningKey.from_pem("football.example.com", "test", RFC8463_RSA_PEM),
    ]


def test_rfc8463_appendix_a_signatures_are_reproduced_exactly() -> None:
    keys = rfc8463_keys()
    assert [key.dns_record() for key in keys] == [RFC8463_ED25519_RECORD, RFC8463_RSA_RECORD]
    signer = Signer(
        keys,
        signed_headers=("from", "to", "subject", "date", "message-id"),
        oversigned=("from", "subject", "date"),
        clock=lambda: 1528637909,
    )
    ed_field, rsa_field = _fields(signer.sign(RFC8463_MESSAGE))
    for field, algorithm, selector, b in (
        (ed_field, b"ed25519-sha256", b"brisbane", RFC8463_ED25519_B),
        (rsa_field, b"rsa-sha256", b"test", RFC8463_RSA_B),
    ):
        tags = _tags(field)
        assert tags[b"a"] == algorithm
        assert tags[b"s"] == selector
        assert tags[b"h"] == b"from : to : subject : date : message-id : from : subject : date"
        assert tags[b"bh"] == RFC8463_BODY_HASH
        assert re.sub(rb"\s+", b"", tags[b"b"]) == b
        assert list(tags) == [b"v", b"a", b"c", b"d", b"i", b"q", b"s", b"t", b"h", b"bh", b"b"]


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MESSAGES)
def test_rsa_signature_verifies_with_dkimpy_and_perl(
    name: str,
    rsa_key: SigningKey,
    dkimpy_verify: Callable[[bytes], list[bool]],
    perl_verify: Callable[..., list[list[PerlResult]]],
) -> None:
    message = MESSAGES[name]
    signed = Signer([rsa_key], clock=lambda: NOW).sign(message) + message
    assert dkimpy_verify(signed) == [True]
    assert perl_verify(signed) == [[(DOMAIN, "rsa2026", "rsa-sha256", "pass", "pass")]]


@pytest.mark.parametrize("name", MESSAGES)
@pytest.mark.usefixtures("need_nacl")
def test_rsa_and_ed25519_signatures_on_one_message(
    name: str,
    rsa_key: SigningKey,
    ed_key: SigningKey,
    dkimpy_verify: Callable[[bytes], list[bool]],
    perl_verify: Callable[..., list[list[PerlResult]]],
) -> None:
    message = MESSAGES[name]
    fields = Signer([rsa_key, ed_key]).sign(message)
    signed = fields + message
    assert [_tags(field)[b"a"] for field in _fields(fields)] == [b"rsa-sha256", b"ed25519-sha256"]
    assert dkimpy_verify(signed) == [True, True]
    ((rsa_result, ed_result),) = perl_verify(signed)
    assert rsa_result == (DOMAIN, "rsa2026", "rsa-sha256", "pass", "pass")
    # Mail::DKIM 1.20230212 (Debian 12) has no Ed25519 and says so; a later one must pass it.
    assert ed_result[:3] == (DOMAIN, "ed2026", "ed25519-sha256")
    assert ed_result[3:] in {
        ("invalid", "invalid (unsupported algorithm ed25519-sha256)"),
        ("pass", "pass"),
    }


@pytest.mark.usefixtures("need_nacl")
def test_ed25519_alone_verifies_with_dkimpy(
    ed_key: SigningKey, dkimpy_verify: Callable[[bytes], list[bool]]
) -> None:
    signed = Signer([ed_key]).sign(NOTIFICATION) + NOTIFICATION
    assert dkimpy_verify(signed) == [True]


def test_signature_fields_follow_the_profile(rsa_key: SigningKey) -> None:
    fields = Signer([rsa_key], clock=lambda: NOW).sign(FOLDED)
    tags = _tags(fields)
    assert tags[b"v"] == b"1"
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.org"
    assert tags[b"s"] == b"rsa2026"
    assert tags[b"t"] == str(NOW).encode()
    assert b"l" not in tags and b"x" not in tags
    # Present fields only, each as often as present, From once more; never Received or X-.
    assert tags[b"h"].split(b" : ") == [
        b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
        b"references", b"from",
    ]  # fmt: skip
    assert _tags(Signer([rsa_key]).sign(NOTIFICATION))[b"h"].split(b" : ") == [
        b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
        b"content-transfer-encoding", b"reply-to", b"auto-submitted", b"from",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["notification", "lf-line-endings"])
def test_fields_use_the_message_line_ending(name: str, rsa_key: SigningKey) -> None:
    message = MESSAGES[name]
    fields = Signer([rsa_key]).sign(message)
    linesep = b"\r\n" if name == "notification" else b"\n"
    lines = fields.split(linesep)
    assert lines[-1] == b"" and len(lines) > 3
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(line.startswith((b"DKIM-Signature: ", b" ")) for line in lines[:-1])


# --- tampering -----------------------------------------------------------------------------


def _tamper(signed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in signed
    return signed.replace(old, new, 1)


TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "body changed": lambda m: _tamper(m, b"Open it here", b"Open it there"),
    "signed header changed": lambda m: _tamper(m, b"is waiting for you", b"is waiting for yoU"),
    "To added below the signed one": lambda m: _tamper(
        m, b"Date:", b"To: mallory@example.com\r\nDate:"
    ),
    "From added on top": lambda m: b"From: Mallory <mallory@example.org>\r\n" + m,
    "From added below": lambda m: _tamper(m, b"\r\n\r\n", b"\r\nFrom: mallory@example.org\r\n\r\n"),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
@pytest.mark.usefixtures("need_nacl")
def test_tampering_breaks_both_signatures_for_both_verifiers(
    tampering: str,
    rsa_key: SigningKey,
    ed_key: SigningKey,
    dkimpy_verify: Callable[[bytes], list[bool]],
    perl_verify: Callable[..., list[list[PerlResult]]],
) -> None:
    signed = Signer([rsa_key, ed_key]).sign(NOTIFICATION) + NOTIFICATION
    tampered = TAMPERINGS[tampering](signed)
    assert dkimpy_verify(tampered) == [False, False]
    ((rsa_result, _ed_result),) = perl_verify(tampered)
    assert rsa_result[3] == "fail", rsa_result


@pytest.mark.usefixtures("need_nacl")
def test_tolerated_changes_still_verify(
    rsa_key: SigningKey,
    ed_key: SigningKey,
    dkimpy_verify: Callable[[bytes], list[bool]],
    perl_verify: Callable[..., list[list[PerlResult]]],
) -> None:
    """The controls: what relaxed/relaxed tolerates, and unsigned fields added on the way."""
    signed = Signer([rsa_key, ed_key]).sign(NOTIFICATION) + NOTIFICATION
    changed = [
        b"Received: from relay.example.org by mx.example.net\r\n" + signed,
        _tamper(signed, b"Subject: A protected", b"subject:\tA   protected"),
        _tamper(signed, b"is waiting for you", b"is waiting\r\n  for you"),
        _tamper(
            signed,
            b"https://mail.example.org/m/abcdef\r\n",
            b"https://mail.example.org/m/abcdef  \r\n\r\n",
        ),
    ]
    for message in changed:
        assert dkimpy_verify(message) == [True, True]
    for rsa_result, _ed_result in perl_verify(*changed):
        assert rsa_result[3] == "pass", rsa_result


def test_without_oversigning_a_from_added_on_top_would_pass(
    rsa_key: SigningKey,
    perl_verify: Callable[..., list[list[PerlResult]]],
) -> None:
    """The control for "From added on top": the failure above is the oversigning's doing.

    Fields are selected bottom-up (RFC 6376 §5.4.2), so a signature listing From once still
    covers the original From when another one is put on top, where mail readers show it.
    """
    pem = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    field = dkim.DKIM(NOTIFICATION).sign(
        b"rsa2026", DOMAIN.encode(), pem, canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject"],
    )  # fmt: skip
    signed = field + NOTIFICATION
    forged = b"From: Mallory <mallory@example.org>\r\n" + signed
    assert [result[3] for (result,) in perl_verify(signed, forged)] == ["pass", "pass"]


# --- signing domain ------------------------------------------------------------------------


def test_no_key_for_the_from_domain_gives_nothing(rsa_key: SigningKey) -> None:
    message = NOTIFICATION.replace(b"noreply@example.org", b"noreply@elsewhere.example")
    assert Signer([rsa_key]).sign(message) == b""


def test_from_domain_is_matched_case_insensitively(rsa_key: SigningKey) -> None:
    message = NOTIFICATION.replace(b"noreply@example.org", b"noreply@Example.ORG.")
    assert _tags(Signer([rsa_key]).sign(message))[b"d"] == b"example.org"


@pytest.mark.usefixtures("need_nacl")
def test_explicit_domain_signs_for_that_domain(
    rsa_key: SigningKey, other_key: SigningKey, dkimpy_verify: Callable[[bytes], list[bool]]
) -> None:
    signer = Signer([rsa_key, other_key])
    fields = signer.sign(NOTIFICATION, domain="Relay.Example.NET")
    assert [_tags(field)[b"d"] for field in _fields(fields)] == [b"relay.example.net"]
    assert dkimpy_verify(fields + NOTIFICATION) == [True]
    assert signer.sign(NOTIFICATION, domain="nokey.example.com") == b""


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"To: bob@example.net\r\nSubject: x\r\n\r\nbody\r\n", "0 From fields"),
        (b"From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n", "2 From fields"),
        (b"From: a@example.org, b@example.com\r\n\r\nbody\r\n", "names 2 domains"),
        (b"From: undisclosed\r\n\r\nbody\r\n", "names 0 domains"),
        (b"From: a@example.org\r\nbad header line\r\n\r\nbody\r\n", "cannot parse"),
        (b"From: a@exa_mple.org\r\n\r\nbody\r\n", "not a valid domain"),
    ],
)
def test_unsignable_messages_are_refused(rsa_key: SigningKey, message: bytes, error: str) -> None:
    with pytest.raises(SigningError, match=error):
        Signer([rsa_key]).sign(message)


def test_two_mailboxes_of_one_domain_are_fine(rsa_key: SigningKey) -> None:
    message = b"From: a@example.org, B <b@EXAMPLE.org>\r\nTo: c@example.net\r\n\r\nhi\r\n"
    assert _tags(Signer([rsa_key]).sign(message))[b"d"] == b"example.org"


@pytest.mark.usefixtures("need_nacl")
def test_concurrent_signing_from_threads(
    rsa_key: SigningKey, ed_key: SigningKey, dkimpy_verify: Callable[[bytes], list[bool]]
) -> None:
    signer = Signer([rsa_key, ed_key])
    messages = [NOTIFICATION.replace(b"abcdef", b"link%03d" % i) for i in range(32)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        signed = list(pool.map(lambda m: signer.sign(m) + m, messages))
    assert all(dkimpy_verify(message) == [True, True] for message in signed)


# --- keys ----------------------------------------------------------------------------------


def test_key_files_of_both_kinds(tmp_path: Path) -> None:
    for kind, algorithm, key_type in (
        ("rsa", "rsa-sha256", "rsa"),
        ("ed25519", "ed25519-sha256", "ed25519"),
    ):
        path = tmp_path / f"{kind}.pem"
        path.write_bytes(generate_key(kind))  # type: ignore[arg-type]
        key = SigningKey.from_pem_file("Example.ORG", "s1", path)
        assert (key.domain, key.selector, key.algorithm) == ("example.org", "s1", algorithm)
        assert key.dns_name == "s1._domainkey.example.org"
        record = parse_tag_value(key.dns_record().encode())
        assert record[b"v"] == b"DKIM1" and record[b"k"] == key_type.encode()
    assert len(base64.b64decode(record[b"p"])) == 32  # RFC 8463 §4.2: the raw public key


def test_rsa_key_from_pkcs1_pem_and_its_record() -> None:
    key = SigningKey.from_pem("football.example.com", "test", RFC8463_RSA_PEM)
    assert key.dns_record() == RFC8463_RSA_RECORD


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"not a key", "not a usable PEM private key"),
        (RSA_512_PEM, "has 512 bits; DKIM signers must use at least 1024"),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "only RSA (rsa-sha256, RFC 6376) and Ed25519",
        ),
        (
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
            "the private key is encrypted",
        ),
    ],
)
def test_unusable_key_files_name_the_file(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(content)
    with pytest.raises(DKIMKeyError, match=re.escape(f"{path}: ") + ".*" + re.escape(error)):
        SigningKey.from_pem_file(DOMAIN, "s1", path)


def test_missing_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.pem"
    with pytest.raises(DKIMKeyError, match=re.escape(f"{path}: cannot read the DKIM key")):
        SigningKey.from_pem_file(DOMAIN, "s1", path)


def test_rsa_1024_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sealgate.mailauth.dkimsign"):
        SigningKey.from_pem("football.example.com", "test", RFC8463_RSA_PEM)
    assert "RSA key of 1024 bits" in caplog.text


def test_key_and_algorithm_must_agree() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(DKIMKeyError, match="rsa-sha256 needs an RSA private key"):
        SigningKey(DOMAIN, "s1", "rsa-sha256", ed)


@pytest.mark.parametrize(
    ("domain", "selector"),
    [("localhost", "s1"), ("exa mple.org", "s1"), (DOMAIN, "bad_selector"), (DOMAIN, "")],
)
def test_bad_domain_or_selector(domain: str, selector: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        SigningKey(domain, selector, "ed25519-sha256", ed25519.Ed25519PrivateKey.generate())


def test_unicode_domain_becomes_a_labels() -> None:
    key = SigningKey("Bücher.example", "s1", "ed25519-sha256", ed25519.Ed25519PrivateKey.generate())
    assert key.domain == "xn--bcher-kva.example"


def test_generate_key_refuses_weak_or_unknown() -> None:
    with pytest.raises(ValueError, match="2048 to 4096 bits"):
        generate_key("rsa", bits=1024)
    with pytest.raises(ValueError, match="unknown DKIM key type"):
        generate_key("dsa")  # type: ignore[arg-type]


def test_signer_configuration_errors(rsa_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="two DKIM keys for rsa2026._domainkey.example.org"):
        Signer([rsa_key, rsa_key])
    with pytest.raises(ValueError, match="must contain 'from'"):
        Signer([rsa_key], signed_headers=("to", "subject"))
    with pytest.raises(ValueError, match="must contain 'from'"):
        Signer([rsa_key], oversigned=())
    with pytest.raises(ValueError, match="never signed"):
        Signer([rsa_key], signed_headers=("from", "dkim-signature"))
    with pytest.raises(ValueError, match="lower-case header field name"):
        Signer([rsa_key], signed_headers=("From",))
    with pytest.raises(ValueError, match="listed twice"):
        Signer([rsa_key], signed_headers=("from", "to", "to"))
