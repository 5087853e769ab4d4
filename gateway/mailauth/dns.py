"""The one DNS resolver every mail-authentication check uses.

SPF, DKIM, DMARC, ARC and the recipient-domain transport checks all look names up here, through
:meth:`Resolver.query` (asyncio), :meth:`Resolver.query_blocking` (synchronous libraries run in
worker threads: pyspf's lookup hook) or :meth:`Resolver.dkim_txt` (dkimpy's ``dnsfunc``). One
resolver means one set of nameservers from the configuration, one cache, and one answer to the
questions that decide verdicts:

**Three outcomes, never two.** An :class:`Answer` is ``ok`` (records), ``nxdomain`` or
``nodata`` (the name or the record does not exist: a permanent, authoritative "no"), or
``temperror`` (SERVFAIL, REFUSED, a timeout, a network error). A temporary failure is never
reported as "no record" and never cached: mail checkers that turned a timeout into "no DKIM key"
or cached a failed lookup as "no DMARC record" let forged mail through, and RFC 7208 §5 /
RFC 7489 §6.6.2 make such failures ``temperror``, not ``none``.

**DNSSEC status from the AD bit of a trusted validator only.** A validating resolver sets AD
only when every RRset of the answer, including the proofs of a denial, was authenticated
(RFC 4035 §3.2.3; RFC 6840 §5.7-5.8, which is also why queries carry the DO bit). But the bit
is one unauthenticated header flag: RFC 4035 §4.9.3 says a stub must not rely on it unless it
trusts the resolver and the path to it. So, as Postfix does for DANE, AD counts only from
nameservers inside ``trusted_validators`` (by default loopback: a validating resolver on this
host), and checking one RRSIG against the zone's own key is not attempted here, because without
the chain to a trust anchor it proves nothing. ``secure`` is what policies may rely on.

**Never /etc/resolv.conf.** The dnspython resolvers are built with ``configure=False`` and given
the configured nameservers only, so no library falls back to the system's resolver behind our
back (and tests can point everything at their own DNS). Each nameserver gets its own dnspython
resolver because dnspython does not say which nameserver sent an NXDOMAIN, and the AD bit of a
denial is only worth what that nameserver is trusted for. Nameservers are tried in order; the
next one is asked only when one fails (SERVFAIL, REFUSED, no answer within ``timeout`` after
``attempts`` tries, unreachable).

Queries use EDNS0 with a 1232-byte buffer (the DNS flag day 2020 size that avoids IP
fragmentation) and fall back to TCP when an answer is truncated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.txtbase
import dns.resolver

logger = logging.getLogger(__name__)

Status = Literal["ok", "nxdomain", "nodata", "temperror"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)
EDNS_PAYLOAD = 1232
# Our cache only saves round trips to the (caching) validating resolver; a short ceiling bounds
# how long a changed record (a revoked DKIM key, a stricter DMARC policy) goes unnoticed.
MAX_CACHE_TTL = 300
# RFC 2308 takes the negative TTL from the SOA in the denial; without one, stay brief.
NEGATIVE_TTL_WITHOUT_SOA = 30


class TemporaryDNSError(Exception):
    """A lookup failed temporarily (SERVFAIL, timeout, unreachable): the answer is unknown.

    Deliberately not a ``dkim.DKIMException``: dkimpy catches those and reports a plain
    verification failure, and a DNS failure must surface as ``temperror`` instead.
    """


@dataclass(frozen=True)
class Answer:
    """The outcome of one lookup.

    ``records`` are the rdata as text: TXT character-strings joined without quotes (bytes that
    are not UTF-8 become U+FFFD: SPF, DKIM and DMARC records are ASCII), MX as
    ``"preference exchange."``, other types in presentation format. After a CNAME chain they
    are the records of its target. ``secure`` is true only when the AD bit was set by a trusted
    validating nameserver; it applies to denials too (an authenticated NXDOMAIN). ``ttl`` is
    what is left of the answer's lifetime in our cache.
    """

    status: Status
    records: tuple[str, ...]
    secure: bool
    ttl: int


TEMPERROR = Answer("temperror", (), False, 0)
# A name that cannot be encoded in the DNS (empty or over-long label, bad IDN) cannot exist.
NO_SUCH_NAME = Answer("nxdomain", (), False, 0)


@dataclass(frozen=True)
class _Nameserver:
    address: str
    trusted: bool
    async_resolver: dns.asyncresolver.Resolver
    blocking_resolver: dns.resolver.Resolver


_Key = tuple[dns.name.Name, dns.rdatatype.RdataType]
_Outcome = dns.resolver.Answer | dns.exception.DNSException
_R = TypeVar("_R", bound=dns.resolver.BaseResolver)


class _Cache:
    """A bounded LRU of answers until their TTL runs out; shared by threads and the event loop."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[_Key, tuple[Answer, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> Answer | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            answer, expires = entry
            remaining = expires - time.monotonic()
            if remaining <= 0:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return dataclasses.replace(answer, ttl=math.ceil(remaining))

    def put(self, key: _Key, answer: Answer) -> None:
        if answer.status == "temperror" or answer.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (answer, time.monotonic() + answer.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class Resolver:
    """Tri-state, DNSSEC-aware lookups against the configured nameservers only.

    ``nameservers`` are IP addresses (no names: resolving the resolver would need a resolver);
    ``timeout`` is per try and ``attempts`` the tries per nameserver that does not answer, so a
    lookup takes at most ``len(nameservers) * timeout * attempts`` seconds before it is a
    ``temperror``. ``trusted_validators`` are the networks whose AD bit is believed.
    """

    def __init__(
        self,
        nameservers: list[str],
        *,
        port: int = 53,
        timeout: float = 5.0,
        attempts: int = 2,
        trusted_validators: Sequence[Network] = LOOPBACK,
        cache_size: int = 10000,
    ) -> None:
        if not nameservers:
            raise ValueError("at least one nameserver is needed")
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        servers = []
        for address in nameservers:
            ip = ipaddress.ip_address(address)  # ValueError for anything but an IP address
            servers.append(
                _Nameserver(
                    address=str(ip),
                    trusted=any(ip in network for network in trusted_validators),
                    async_resolver=_configure(
                        dns.asyncresolver.Resolver(configure=False), ip, port, timeout, attempts
                    ),
                    blocking_resolver=_configure(
                        dns.resolver.Resolver(configure=False), ip, port, timeout, attempts
                    ),
                )
            )
        self._servers = tuple(servers)
        self._cache = _Cache(cache_size)

    @property
    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """(address, port) of every nameserver the dnspython resolvers will actually ask."""
        used = []
        for server in self._servers:
            for resolver in (server.async_resolver, server.blocking_resolver):
                for nameserver in resolver.nameservers:
                    assert isinstance(nameserver, dns.nameserver.Do53Nameserver)
                    used.append((nameserver.address, nameserver.port))
        return tuple(dict.fromkeys(used))

    async def query(self, name: str, rdtype: str) -> Answer:
        """Look ``name`` up for ``rdtype`` (``"TXT"``, ``"MX"``, ``"TLSA"``...)."""
        key, known = self._known(name, rdtype)
        if known is not None:
            return known
        for server in self._servers:
            outcome: _Outcome
            try:
                outcome = await server.async_resolver.resolve(
                    key[0], key[1], raise_on_no_answer=False
                )
            except dns.exception.DNSException as error:
                outcome = error
            answer = self._interpret(server, key, outcome)
            if answer is not None:
                return answer
        return TEMPERROR

    def query_blocking(self, name: str, rdtype: str) -> Answer:
        """:meth:`query` for synchronous libraries, from a worker thread (never the event loop).

        Shares the cache with :meth:`query` and is safe to call from many threads at once.
        Calling it on a thread that runs an event loop would stall every connection on that
        loop for up to the whole lookup time, so that is refused.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("query_blocking() on the event loop: await query() instead")
        key, known = self._known(name, rdtype)
        if known is not None:
            return known
        for server in self._servers:
            outcome: _Outcome
            try:
                outcome = server.blocking_resolver.resolve(key[0], key[1], raise_on_no_answer=False)
            except dns.exception.DNSException as error:
                outcome = error
            answer = self._interpret(server, key, outcome)
            if answer is not None:
                return answer
        return TEMPERROR

    def _known(self, name: str, rdtype: str) -> tuple[_Key, Answer | None]:
        """The cache key, and the answer when no query is needed (cached, or not a DNS name)."""
        key = _key(name, rdtype)
        if key is None:
            return (dns.name.root, dns.rdatatype.TXT), NO_SUCH_NAME
        return key, self._cache.get(key)

    def dkim_txt(
        self, name: bytes, timeout: int = 5, *, seen: list[Answer] | None = None
    ) -> bytes | None:
        """dkimpy's ``dnsfunc``: the key record at ``name``, or None when there is none.

        Raises :class:`TemporaryDNSError` when the lookup fails temporarily, so that dkimpy's
        caller sees a ``temperror`` rather than "no key" (which dkimpy would turn into a
        permanent failure). Several different TXT records at one selector are undefined
        (RFC 6376 §3.6.2.2): rather than pick one at random, that counts as no usable key.
        ``timeout`` is dkimpy's; the configured timeout and attempts apply instead.
        ``seen`` collects the answers, for callers that report their DNSSEC status.
        """
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return None
        answer = self.query_blocking(text, "TXT")
        if seen is not None:
            seen.append(answer)
        if answer.status == "temperror":
            raise TemporaryDNSError(f"DNS lookup of {text} TXT failed temporarily")
        records = set(answer.records)
        if len(records) != 1:
            return None
        return records.pop().encode()

    def _interpret(
        self,
        server: _Nameserver,
        key: _Key,
        outcome: _Outcome,
    ) -> Answer | None:
        """The answer from ``server``, cached; None when it failed and the next one is due."""
        if isinstance(outcome, dns.resolver.NXDOMAIN):
            # dnspython leaves NXDOMAIN.response() unannotated; it returns the QueryMessage.
            response: dns.message.QueryMessage = outcome.response(key[0])  # type: ignore[no-untyped-call]
            answer = _denial("nxdomain", response, server.trusted)
        elif isinstance(outcome, dns.resolver.Answer):
            if outcome.rrset is None:
                answer = _denial("nodata", outcome.response, server.trusted)
            else:
                answer = Answer(
                    "ok",
                    tuple(_text(rdata) for rdata in outcome.rrset),
                    _authenticated(outcome.response, server.trusted),
                    min(outcome.chaining_result.minimum_ttl, MAX_CACHE_TTL),
                )
        else:
            logger.debug(
                "DNS lookup of %s %s at %s failed: %s",
                key[0],
                dns.rdatatype.to_text(key[1]),
                server.address,
                outcome,
            )
            return None
        self._cache.put(key, answer)
        return answer


def _configure(
    resolver: _R,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    timeout: float,
    attempts: int,
) -> _R:
    resolver.nameservers = [dns.nameserver.Do53Nameserver(str(ip), port)]
    resolver.timeout = timeout
    resolver.lifetime = timeout * attempts
    resolver.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
    return resolver


def _key(name: str, rdtype: str) -> _Key | None:
    """The cache key (absolute name, type); None for a name the DNS cannot hold."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException:
        return None
    return (qname, dns.rdatatype.RdataType.make(rdtype))


def _authenticated(response: dns.message.Message, trusted: bool) -> bool:
    return trusted and bool(response.flags & dns.flags.AD)


def _denial(status: Status, response: dns.message.QueryMessage, trusted: bool) -> Answer:
    ttl = response.resolve_chaining().minimum_ttl
    if not any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.authority):
        ttl = min(ttl, NEGATIVE_TTL_WITHOUT_SOA)
    return Answer(status, (), _authenticated(response, trusted), min(ttl, MAX_CACHE_TTL))


def _text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return rdata.to_text()
