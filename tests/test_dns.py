"""The mail-authentication resolver against real DNS: signed zones validated by unbound.

What matters to verdicts: "secure" only from a trusted validator, a failure is ``temperror``
and never "no record" (nor cached), denials are told apart, and no library reaches the system
resolver configuration. Tests that count round trips or simulate outages run their own small
authoritative server instead of the session's shared one.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dkim
import dns.asyncresolver
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.mailauth.dns import TEMPERROR, Answer, Resolver, TemporaryDNSError
from tests.support.dnsserver import AuthoritativeServer, SilentServer
from tests.support.unbound import TestDNS
from tests.support.zones import BIG_TXT, SOA_MINIMUM, ZoneSpec, dkim_record, tlsa_record

SPF = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"


@pytest.fixture
def own_server() -> Iterator[AuthoritativeServer]:
    """An unsigned ``cache.test`` on a server of the test's own, whose queries can be counted."""
    spec = ZoneSpec(
        "cache.test",
        {
            "@": [("TXT", "apex")],
            "ttl1": [("TXT", "short-lived", 1)],
            "a": [("TXT", "a")],
            "b": [("TXT", "b")],
            "c": [("TXT", "c")],
            "big": [("TXT", BIG_TXT)],
        },
        signed=False,
    )
    server = AuthoritativeServer([spec.build()])
    server.start()
    yield server
    server.stop()


def asked(server: AuthoritativeServer, name: str) -> list[str]:
    """The transports of the queries ``server`` received for ``name``."""
    return [query.transport for query in server.queries if query.name == name]


def direct(server: AuthoritativeServer, **options: Any) -> Resolver:
    host, port = server.address
    return Resolver([host], port=port, **options)


async def test_signed_zone_answers_are_secure_through_the_validator(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()

    spf = await resolver.query("signed.test", "TXT")
    assert (spf.status, spf.records, spf.secure) == ("ok", (SPF,), True)
    assert 0 <= spf.ttl <= 5  # unbound's cache-max-ttl; 0 from a cache entry about to expire
    mx = await resolver.query("signed.test", "MX")
    assert (mx.records, mx.secure) == (("10 mx.signed.test.",), True)
    tlsa = await resolver.query("_25._tcp.mx.signed.test", "TLSA")
    assert (tlsa.records, tlsa.secure) == ((tlsa_record(test_dns.keys.mx_tls),), True)
    assert (await resolver.query("mx.signed.test", "A")).records == ("127.0.0.1",)
    assert (await resolver.query("mx.signed.test", "AAAA")).records == ("::1",)
    alias = await resolver.query("alias.signed.test", "TXT")
    assert (alias.status, alias.records, alias.secure) == ("ok", ("the target",), True)


async def test_unsigned_zone_answers_are_not_secure(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()

    spf = await resolver.query("unsigned.test", "TXT")
    assert (spf.status, spf.records, spf.secure) == ("ok", (SPF,), False)
    missing = await resolver.query("nothere.unsigned.test", "TXT")
    assert (missing.status, missing.secure) == ("nxdomain", False)


async def test_a_bogus_zone_is_a_temporary_error_never_no_record(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()

    for name, rdtype in [
        ("bogus.test", "TXT"),
        ("_dmarc.bogus.test", "TXT"),
        ("sel._domainkey.bogus.test", "TXT"),
        ("_25._tcp.mx.bogus.test", "TLSA"),
        ("nothere.bogus.test", "TXT"),  # a denial whose NSEC proof fails validation
        ("mx.bogus.test", "TXT"),
    ]:
        assert await resolver.query(name, rdtype) == TEMPERROR, name


async def test_nxdomain_and_nodata_are_distinguished_and_authenticated(
    test_dns: TestDNS,
) -> None:
    resolver = test_dns.resolver()

    missing = await resolver.query("nothere.signed.test", "TXT")
    assert (missing.status, missing.records, missing.secure) == ("nxdomain", (), True)
    no_txt = await resolver.query("mx.signed.test", "TXT")
    assert (no_txt.status, no_txt.records, no_txt.secure) == ("nodata", (), True)
    empty_non_terminal = await resolver.query("_domainkey.signed.test", "TXT")
    assert (empty_non_terminal.status, empty_non_terminal.secure) == ("nodata", True)
    outside = await resolver.query("example.com", "A")  # unbound is hermetic: no Internet
    assert (outside.status, outside.secure) == ("nxdomain", False)


async def test_ad_bit_counts_only_from_trusted_validators(test_dns: TestDNS) -> None:
    # A real authoritative server does not validate: no AD, so not secure even when trusted.
    assert (await direct(test_dns.server).query("signed.test", "TXT")).secure is False

    liar = AuthoritativeServer([test_dns.zones["signed.test"].build()], claim_ad=True)
    liar.start()
    try:
        believed = await direct(liar).query("signed.test", "TXT")
        assert (believed.status, believed.secure) == ("ok", True)  # the AD bit is what is read
        untrusting = direct(liar, trusted_validators=[ipaddress.ip_network("192.0.2.0/24")])
        for name in ("signed.test", "nothere.signed.test"):
            answer = await untrusting.query(name, "TXT")
            assert answer.status in ("ok", "nxdomain")
            assert answer.secure is False, name
    finally:
        liar.stop()


async def test_a_validating_resolver_not_trusted_by_configuration_is_not_believed(
    test_dns: TestDNS,
) -> None:
    resolver = test_dns.resolver(trusted_validators=[])

    spf = await resolver.query("signed.test", "TXT")
    assert (spf.status, spf.secure) == ("ok", False)
    assert (await resolver.query("nothere.signed.test", "TXT")).secure is False


async def test_a_temporary_failure_is_not_cached(own_server: AuthoritativeServer) -> None:
    resolver = direct(own_server, timeout=0.3, attempts=1)
    host, port = own_server.address
    own_server.stop()

    silent = SilentServer(host, port)  # the nameserver takes the query and never answers
    try:
        started = time.monotonic()
        assert await resolver.query("cache.test", "TXT") == TEMPERROR
        assert 0.25 < time.monotonic() - started < 2
    finally:
        silent.close()
    assert await resolver.query("cache.test", "TXT") == TEMPERROR  # nothing listens any more

    own_server.start()
    back = await resolver.query("cache.test", "TXT")
    assert (back.status, back.records) == ("ok", ("apex",))


async def test_the_next_nameserver_is_asked_when_one_fails(test_dns: TestDNS) -> None:
    host, port = test_dns.resolver_address
    resolver = Resolver(["127.0.0.2", host], port=port, timeout=0.2)  # nothing on 127.0.0.2

    answer = await resolver.query("signed.test", "TXT")
    assert (answer.status, answer.secure) == ("ok", True)


async def test_names_that_time_out_are_temporary_errors(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver(timeout=0.2, attempts=2)

    started = time.monotonic()
    assert await resolver.query("x.timeout.test", "TXT") == TEMPERROR
    assert 0.35 < time.monotonic() - started < 2
    # The silent zone does not spoil the validator for the others.
    assert (await resolver.query("signed.test", "MX")).secure is True


async def test_the_cache_respects_ttls(own_server: AuthoritativeServer) -> None:
    resolver = direct(own_server)

    first = await resolver.query("ttl1.cache.test", "TXT")
    again = await resolver.query("ttl1.cache.test", "TXT")
    assert first.records == again.records == ("short-lived",)
    assert first.ttl == again.ttl == 1
    assert asked(own_server, "ttl1.cache.test.") == ["udp"]
    await asyncio.sleep(1.1)
    assert (await resolver.query("ttl1.cache.test", "TXT")).status == "ok"
    assert asked(own_server, "ttl1.cache.test.") == ["udp", "udp"]

    # Denials are cached for the SOA's negative TTL (RFC 2308).
    for _ in range(2):
        missing = await resolver.query("nothere.cache.test", "TXT")
        assert missing.status == "nxdomain" and 0 < missing.ttl <= SOA_MINIMUM
        no_mx = await resolver.query("a.cache.test", "MX")
        assert no_mx.status == "nodata" and 0 < no_mx.ttl <= SOA_MINIMUM
    assert asked(own_server, "nothere.cache.test.") == ["udp"]
    assert asked(own_server, "a.cache.test.") == ["udp"]


async def test_the_cache_is_a_bounded_lru(own_server: AuthoritativeServer) -> None:
    resolver = direct(own_server, cache_size=2)

    for name in ("a", "b", "a", "c", "a", "b"):
        assert (await resolver.query(f"{name}.cache.test", "TXT")).records == (name,)
    # "a" stayed as the most recently used; "c" pushed out "b", which had to be asked again.
    assert asked(own_server, "a.cache.test.") == ["udp"]
    assert asked(own_server, "b.cache.test.") == ["udp", "udp"]


async def test_a_big_answer_falls_back_to_tcp(
    own_server: AuthoritativeServer, test_dns: TestDNS
) -> None:
    assert len(BIG_TXT) > 1232

    answer = await direct(own_server).query("big.cache.test", "TXT")
    assert answer.records == (BIG_TXT,)
    assert asked(own_server, "big.cache.test.") == ["udp", "tcp"]  # truncated, then TCP

    validated = await test_dns.resolver().query("big.signed.test", "TXT")
    assert (validated.status, validated.records, validated.secure) == ("ok", (BIG_TXT,), True)


def test_query_blocking_from_threads_shares_the_cache(own_server: AuthoritativeServer) -> None:
    resolver = direct(own_server)
    names = [f"{name}.cache.test" for name in "abc"] * 10

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda name: resolver.query_blocking(name, "TXT"), names))
    assert [answer.records for answer in answers] == [(name[0],) for name in names]
    asked_before = len(own_server.queries)
    # The event-loop side finds what the threads cached.
    assert asyncio.run(resolver.query("a.cache.test", "TXT")).records == ("a",)
    assert len(own_server.queries) == asked_before


def test_query_blocking_validates_like_query(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()

    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                resolver.query_blocking,
                ["signed.test", "unsigned.test", "nothere.signed.test", "bogus.test"],
                ["TXT"] * 4,
            )
        )
    assert [(a.status, a.secure) for a in answers] == [
        ("ok", True),
        ("ok", False),
        ("nxdomain", True),
        ("temperror", False),
    ]


async def test_query_blocking_refuses_to_block_the_event_loop(test_dns: TestDNS) -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        test_dns.resolver().query_blocking("signed.test", "TXT")


def test_dkim_txt_joins_strings_and_raises_on_temporary_failure(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()
    published = dkim_record(test_dns.keys.dkim_rsa)
    assert len(published) > 255  # stored as several character-strings

    assert resolver.dkim_txt(b"sel._domainkey.signed.test.") == published.encode()
    assert resolver.dkim_txt(b"nothere._domainkey.signed.test.") is None  # NXDOMAIN
    assert resolver.dkim_txt(b"mx.signed.test.") is None  # NODATA
    assert resolver.dkim_txt(b"\xff._domainkey.signed.test.") is None  # not a name at all
    with pytest.raises(TemporaryDNSError):
        resolver.dkim_txt(b"sel._domainkey.bogus.test.")


def test_dkimpy_sees_a_temporary_failure_not_a_missing_key(test_dns: TestDNS) -> None:
    resolver = test_dns.resolver()
    key = test_dns.keys.dkim_rsa.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )

    def signed(domain: bytes) -> bytes:
        message = b"From: a@" + domain + b"\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        headers = [b"from", b"to", b"subject"]
        return dkim.sign(message, b"sel", domain, key, include_headers=headers) + message

    assert dkim.verify(signed(b"signed.test"), dnsfunc=resolver.dkim_txt) is True
    # dkimpy would report a DnsTimeoutError as a plain failure; ours escapes it as temperror.
    with pytest.raises(TemporaryDNSError):
        dkim.verify(signed(b"bogus.test"), dnsfunc=resolver.dkim_txt)


def test_the_system_resolver_configuration_is_never_read(
    test_dns: TestDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the system resolver configuration was consulted")

    real_open = builtins.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == "/etc/resolv.conf":
            refuse()
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", refuse)
    monkeypatch.setattr(dns.resolver, "get_default_resolver", refuse)
    monkeypatch.setattr(dns.asyncresolver, "get_default_resolver", refuse)
    monkeypatch.setattr(builtins, "open", guarded_open)

    resolver = test_dns.resolver()
    assert resolver.nameservers == (test_dns.resolver_address,)
    assert resolver.query_blocking("signed.test", "TXT").secure is True
    assert asyncio.run(resolver.query("unsigned.test", "TXT")).status == "ok"


def test_only_ip_addresses_are_nameservers() -> None:
    with pytest.raises(ValueError):
        Resolver(["resolver.example"])
    with pytest.raises(ValueError):
        Resolver([])


async def test_a_name_the_dns_cannot_hold_has_no_records(test_dns: TestDNS) -> None:
    answer = await test_dns.resolver().query("x" * 64 + ".signed.test", "TXT")
    assert answer == Answer("nxdomain", (), False, 0)


async def test_records_can_change_at_runtime(test_dns: TestDNS) -> None:
    name = "runtime.signed.test"
    assert (await test_dns.resolver().query(name, "TXT")).status == "nxdomain"

    test_dns.set_records(name, [("TXT", "first")])
    first = await test_dns.resolver().query(name, "TXT")
    assert (first.records, first.secure) == (("first",), True)
    test_dns.set_records(name, [("TXT", "second")])
    assert (await test_dns.resolver().query(name, "TXT")).records == ("second",)
    test_dns.set_records(name, [])
    gone = await test_dns.resolver().query(name, "TXT")
    assert (gone.status, gone.secure) == ("nxdomain", True)
