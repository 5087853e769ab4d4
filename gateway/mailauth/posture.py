"""How safely a recipient's domain receives mail: DANE, MTA-STS and TLS-RPT.

Policies ask whether a recipient's domain *enforces* TLS for mail sent to it, so that an
administrator can write "relay normally to domains that enforce TLS, protect otherwise". A
domain enforces TLS when

- **DANE** (RFC 7672): its MX RRset is DNSSEC-validated and every MX host has validated
  address records and a validated TLSA RRset at ``_25._tcp.<host>`` with at least one record
  usable for SMTP (DANE-TA(2) or DANE-EE(3); the PKIX usages 0 and 1 do not count for SMTP,
  RFC 7672 §3.1.3); or
- **MTA-STS** (RFC 8461): ``_mta-sts.<domain>`` holds one ``v=STSv1; id=...`` record, the policy
  at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (fetched with certificate and host
  name verification, without following redirects) says ``mode: enforce``, and every MX host
  matches one of its ``mx`` patterns. An enforce policy that does not cover every MX host is
  reported as ``"testing"``: a compliant MTA would refuse to deliver to the uncovered hosts, so
  the domain is not counted as one that reliably receives over verified TLS.

What an MTA does with this is its own setting: the policy only assumes what the upstream MTA
enforces. For Postfix that is ``smtp_tls_security_level = dane`` (with a DNSSEC-validating
resolver) and an MTA-STS policy map (``smtp_tls_policy_maps = socketmap:...`` from
postfix-mta-sts-resolver).

Every lookup goes through the gateway's :class:`~gateway.mailauth.dns.Resolver`, including the
address of the MTA-STS policy host: the HTTPS connection goes to the A/AAAA records our resolver
returns, with SNI and certificate host name ``mta-sts.<domain>``; the system's resolver is never
asked. A DNS failure is never "no": a domain whose ``_mta-sts`` lookup fails, or whose policy
cannot be fetched or parsed, is ``"temperror"`` rather than ``"none"`` (a previously fetched
policy for the same record id is used while its ``max_age`` lasts, as RFC 8461 §5.1 asks).

Postures are cached per domain for as long as the DNS answers they rest on (at most
:data:`~gateway.mailauth.dns.MAX_CACHE_TTL`; never when a lookup failed); MTA-STS policies are
cached per domain and record id for their ``max_age``. A failed fetch is remembered for
:data:`FETCH_RETRY` seconds so that a domain with a broken policy server does not cost a
connection timeout for every message.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.mailauth.dns import MAX_CACHE_TTL, Answer, Resolver

StsMode = Literal["enforce", "testing", "none", "temperror"]
_Query = Callable[[str, str], Answer]

# RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year).
MAX_AGE_LIMIT = 31557600
# RFC 8461 §3.3 suggests a limit on the policy's size; 64 KiB is what it names.
MAX_POLICY_BYTES = 64 * 1024
FETCH_RETRY = 60
WELL_KNOWN = "/.well-known/mta-sts.txt"

_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_DOMAIN = re.compile(r"(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip
_TLSRPT = re.compile(r"v=TLSRPTv1[ \t]*;")


@dataclass(frozen=True)
class Posture:
    """What a recipient domain publishes about receiving mail over TLS.

    ``mx``: the MX hosts by preference (empty when the lookup failed or for a null MX);
    ``dnssec``: the MX answer (or its denial) was validated; ``dane``: every MX host has a
    validated, usable TLSA RRset; ``mta_sts``: ``"enforce"``, ``"testing"``, ``"none"`` (no
    record, or a policy in mode none) or ``"temperror"`` (a lookup or the policy fetch failed);
    ``tls_rpt``: ``_smtp._tls.<domain>`` holds a ``v=TLSRPTv1`` record.
    """

    domain: str
    mx: tuple[str, ...]
    dnssec: bool
    dane: bool
    mta_sts: StsMode
    tls_rpt: bool

    @property
    def enforced(self) -> str | None:
        """``"dane"``, ``"mta-sts"`` or None: how the domain makes senders use verified TLS."""
        if self.dane:
            return "dane"
        if self.mta_sts == "enforce":
            return "mta-sts"
        return None


@dataclass(frozen=True)
class StsPolicy:
    """A parsed MTA-STS policy (RFC 8461 §3.2)."""

    mode: Literal["enforce", "testing", "none"]
    mx: tuple[str, ...]
    max_age: int

    def covers(self, host: str) -> bool:
        """RFC 8461 §4.1: an exact name, or ``*.`` standing for exactly one leftmost label."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, rest = host.partition(".")
                if label and dot and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


class PolicyError(Exception):
    """The MTA-STS policy could not be fetched or is not a valid policy."""


def parse_sts_record(records: tuple[str, ...]) -> str | None:
    """The ``id`` of the one valid ``v=STSv1`` record, or None (RFC 8461 §3.1)."""
    candidates = [r for r in records if r.startswith("v=STSv1")]
    if len(candidates) != 1:
        return None
    fields = [f.strip(" \t") for f in candidates[0].split(";")]
    if fields and fields[-1] == "":
        fields.pop()  # a trailing delimiter is allowed
    if len(fields) < 2 or fields[0] != "v=STSv1":
        return None
    found: str | None = None
    for field in fields[1:]:
        key, eq, value = field.partition("=")
        if not eq or not key:
            return None
        if key == "id":
            if found is not None or not _STS_ID.fullmatch(value):
                return None
            found = value
    return found


def parse_sts_policy(text: str) -> StsPolicy:
    """Parse a policy strictly: version, mode and max_age exactly once, mx unless mode none."""
    values: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip(" \t"):
            continue
        key, colon, value = line.partition(":")
        if not colon or not key or key != key.strip(" \t"):
            raise PolicyError(f"not a policy field: {line[:80]!r}")
        values.setdefault(key, []).append(value.strip(" \t"))
    for key in ("version", "mode", "max_age"):
        if len(values.get(key, [])) != 1:
            raise PolicyError(f"{key} must appear exactly once")
    if values["version"][0] != "STSv1":
        raise PolicyError(f"unknown version {values['version'][0][:20]!r}")
    mode = values["mode"][0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"unknown mode {mode[:20]!r}")
    max_age_text = values["max_age"][0]
    if not re.fullmatch(r"[0-9]{1,10}", max_age_text) or int(max_age_text) > MAX_AGE_LIMIT:
        raise PolicyError(f"invalid max_age {max_age_text[:20]!r}")
    patterns = values.get("mx", [])
    if mode != "none" and not patterns:
        raise PolicyError("no mx pattern")
    for pattern in patterns:
        if not _DOMAIN.fullmatch(pattern) or len(pattern) > 253:
            raise PolicyError(f"invalid mx pattern {pattern[:80]!r}")
    return StsPolicy(
        mode,  # type: ignore[arg-type]  # checked against the three modes above
        tuple(p.lower().rstrip(".") for p in patterns),
        int(max_age_text),
    )


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` (found by our resolver) with SNI and verification for ``host``."""

    def __init__(
        self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclass
class _CachedPolicy:
    sts_id: str
    policy: StsPolicy | None  # None: the last fetch failed
    expires: float


class PostureChecker:
    """Checks recipient domains through ``resolver``; blocking and thread-safe.

    ``https_port`` and ``ca_file`` exist for tests (a policy server on a free port with a
    private CA, trusted in addition to the system's CAs); ``timeout`` bounds each HTTPS
    connection and read.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        https_port: int = 443,
        ca_file: Path | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._resolver = resolver
        self._port = https_port
        self._timeout = timeout
        self._tls = ssl.create_default_context()
        if ca_file is not None:
            self._tls.load_verify_locations(cafile=str(ca_file))
        self._lock = threading.Lock()
        self._postures: dict[str, tuple[Posture, float]] = {}
        self._policies: dict[str, _CachedPolicy] = {}

    def check(self, domain: str) -> Posture:
        """The posture of ``domain`` (cached; see the module's description)."""
        domain = domain.lower().rstrip(".")
        now = time.monotonic()
        with self._lock:
            cached = self._postures.get(domain)
            if cached is not None and cached[1] > now:
                return cached[0]
        posture, ttl = self._check(domain)
        if ttl > 0:
            with self._lock:
                self._postures[domain] = (posture, time.monotonic() + ttl)
                if len(self._postures) > 10000:
                    self._postures.pop(next(iter(self._postures)))
        return posture

    def _check(self, domain: str) -> tuple[Posture, int]:
        answers: list[Answer] = []

        def query(name: str, rdtype: str) -> Answer:
            answer = self._resolver.query_blocking(name, rdtype)
            answers.append(answer)
            return answer

        mx_answer = query(domain, "MX")
        mx = _mx_hosts(domain, mx_answer)
        dnssec = mx_answer.status != "temperror" and mx_answer.secure
        dane = dnssec and bool(mx) and all(self._dane(host, query) for host in mx)
        mta_sts = self._mta_sts(domain, mx, mx_answer, query)
        rpt = query(f"_smtp._tls.{domain}", "TXT")
        tls_rpt = rpt.status == "ok" and _tlsrpt(rpt.records)
        if any(a.status == "temperror" for a in answers) or mta_sts == "temperror":
            ttl = 0
        else:
            ttl = min([a.ttl for a in answers] + [MAX_CACHE_TTL])
        return Posture(domain, mx, dnssec, dane, mta_sts, tls_rpt), ttl

    @staticmethod
    def _dane(host: str, query: _Query) -> bool:
        addresses = [query(host, rdtype) for rdtype in ("A", "AAAA")]
        if not any(a.status == "ok" for a in addresses) or not all(
            a.secure and a.status != "temperror" for a in addresses
        ):
            return False
        tlsa = query(f"_25._tcp.{host}", "TLSA")
        return tlsa.status == "ok" and tlsa.secure and any(_usable_tlsa(r) for r in tlsa.records)

    def _mta_sts(
        self, domain: str, mx: tuple[str, ...], mx_answer: Answer, query: _Query
    ) -> StsMode:
        record = query(f"_mta-sts.{domain}", "TXT")
        if record.status == "temperror":
            return "temperror"
        sts_id = parse_sts_record(record.records) if record.status == "ok" else None
        if sts_id is None:
            return "none"
        policy = self._policy(domain, sts_id)
        if policy is None:
            return "temperror"
        if policy.mode != "enforce":
            return policy.mode
        if mx_answer.status == "temperror":
            return "temperror"
        return "enforce" if mx and all(policy.covers(host) for host in mx) else "testing"

    def _policy(self, domain: str, sts_id: str) -> StsPolicy | None:
        """The policy for record ``sts_id``: cached, else fetched; None if unavailable."""
        now = time.monotonic()
        with self._lock:
            cached = self._policies.get(domain)
        if cached is not None and cached.expires > now and cached.sts_id == sts_id:
            return cached.policy  # None: a recent fetch failed, not retried yet
        try:
            policy = self._fetch(domain)
        except PolicyError:
            if cached is not None and cached.policy is not None and cached.expires > now:
                return cached.policy  # RFC 8461 §5.1: keep using a valid cached policy
            with self._lock:
                self._policies[domain] = _CachedPolicy(sts_id, None, now + FETCH_RETRY)
            return None
        with self._lock:
            self._policies[domain] = _CachedPolicy(sts_id, policy, now + policy.max_age)
        return policy

    def _fetch(self, domain: str) -> StsPolicy:
        host = f"mta-sts.{domain}"
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = self._resolver.query_blocking(host, rdtype)
            if answer.status == "ok":
                addresses += [r for r in answer.records if _is_ip(r)]
        if not addresses:
            raise PolicyError(f"{host} has no address")
        problems = []
        for address in addresses:
            try:
                return self._fetch_from(host, address)
            except (OSError, http.client.HTTPException, UnicodeDecodeError) as error:
                problems.append(f"{address}: {error}")
        raise PolicyError(f"cannot fetch the MTA-STS policy of {domain}: {'; '.join(problems)}")

    def _fetch_from(self, host: str, address: str) -> StsPolicy:
        connection = _PinnedHTTPSConnection(host, address, self._port, self._tls, self._timeout)
        try:
            connection.request("GET", WELL_KNOWN, headers={"Accept": "text/plain"})
            response = connection.getresponse()
            if response.status != 200:
                raise PolicyError(f"HTTP status {response.status} (redirects are not followed)")
            media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
            if media_type.lower() != "text/plain":
                raise PolicyError(f"media type {media_type[:40]!r}, not text/plain")
            body = response.read(MAX_POLICY_BYTES + 1)
            if len(body) > MAX_POLICY_BYTES:
                raise PolicyError("policy larger than 64 KiB")
            return parse_sts_policy(body.decode("utf-8"))
        finally:
            connection.close()


def _mx_hosts(domain: str, answer: Answer) -> tuple[str, ...]:
    """MX hosts by preference; the domain itself without MX (RFC 5321 §5.1); () for null MX."""
    if answer.status == "nodata":
        return (domain,)
    if answer.status != "ok":
        return ()
    entries = []
    for record in answer.records:
        preference, _, exchange = record.partition(" ")
        host = exchange.strip().lower().rstrip(".")
        if not preference.isdigit() or not host:
            continue  # "0 ." is a null MX (RFC 7505): the domain receives no mail
        entries.append((int(preference), host))
    return tuple(dict.fromkeys(host for _, host in sorted(entries)))


def _usable_tlsa(record: str) -> bool:
    fields = record.split()
    return (
        len(fields) >= 4
        and fields[0] in ("2", "3")
        and fields[1] in ("0", "1")
        and (fields[2] in ("0", "1", "2"))
    )


def _tlsrpt(records: tuple[str, ...]) -> bool:
    """RFC 8460 §3: exactly one record starting ``v=TLSRPTv1;``, with a ``rua``."""
    candidates = [r for r in records if _TLSRPT.match(r)]
    return len(candidates) == 1 and "rua=" in candidates[0]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
