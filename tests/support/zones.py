"""Test zones from plain Python data, DNSSEC-signed at test time (RECIPES.md, "DNSSEC-signed test DNS").

A zone is described by a :class:`ZoneSpec`: an origin and, for each owner name relative to it
(``"@"`` is the apex), a list of records ``(type, value)`` or ``(type, value, ttl)``. TXT values
are the plain text, split into 255-byte character-strings here; every other type takes its usual
presentation format (``"10 mx.signed.test."``, ``"3 1 1 ab12..."``). Supported types are the
ones mail authentication needs: TXT, MX, A, AAAA, TLSA and CNAME. Wildcards are not supported:
the test server does not synthesise wildcard answers.

Signing happens every time a zone is built, never from a committed file: RRSIGs carry an
inception and an expiration (now - 1 h, now + 1 day), so a signed file would go stale and the
validator would turn every answer into SERVFAIL. Each signed zone has one ECDSAP256SHA256 key
with the SEP flag (257) and NSEC (dnspython does not do NSEC3); its DS record goes straight into
unbound's trust-anchor file, so every signed zone is its own island of trust and no parent zone is
needed. A *bogus* zone is signed and anchored like the others, then every signature except the
DNSKEY's is damaged: the key validates, the data does not, and a validating resolver must answer
SERVFAIL.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass, field

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.RRSIG
import dns.rdtypes.ANY.TXT
import dns.version
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RecordData = tuple[str, str] | tuple[str, str, int]

DEFAULT_TTL = 300
# The SOA minimum is the negative-caching TTL (RFC 2308): short, so tests that add a record
# under a name that was just NXDOMAIN do not wait long in caches that were not flushed.
SOA_MINIMUM = 5
SUPPORTED_TYPES = frozenset({"TXT", "MX", "A", "AAAA", "TLSA", "CNAME"})


@dataclass
class ZoneSpec:
    """One test zone: its data, whether it is signed, and (if so) its key, kept for re-signing.

    The key is made once per spec so that rebuilding the zone after a change keeps the DS in the
    running validator's trust anchors valid.
    """

    origin: str
    records: dict[str, list[RecordData]]
    signed: bool = True
    bogus: bool = False
    key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bogus and not self.signed:
            raise ValueError(f"{self.origin}: a bogus zone must be signed")
        if self.signed and self.key is None:
            self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def name(self) -> dns.name.Name:
        return dns.name.from_text(self.origin)

    def dnskey(self) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
        if self.key is None:
            raise ValueError(f"{self.origin} is not signed")
        try:
            return dns.dnssec.make_dnskey(
                self.key.public_key(), dns.dnssectypes.Algorithm.ECDSAP256SHA256, flags=257
            )
        except ImportError as error:
            # dnspython disables its DNSSEC functions when cryptography is older than its
            # "dnssec" extra requires, with a message that only says cryptography is missing.
            raise RuntimeError(
                f"dnspython {dns.version.version} cannot sign the test zones with the installed "
                "cryptography; run: pip install 'dnspython[dnssec]'"
            ) from error

    def ds(self) -> dns.rdata.Rdata:
        """The DS record a parent would publish: what the validator's trust anchor holds."""
        return dns.dnssec.make_ds(self.name, self.dnskey(), "SHA256")

    def relative(self, name: str) -> str:
        """``name`` (absolute, with or without the final dot) as an owner key of ``records``."""
        absolute = dns.name.from_text(name)
        if not absolute.is_subdomain(self.name):
            raise ValueError(f"{name} is not in {self.origin}")
        relative = absolute.relativize(self.name)
        return "@" if relative == dns.name.empty else relative.to_text()

    def build(self) -> dns.zone.Zone:
        """The zone with SOA and NS added, signed (and broken, for a bogus zone) as specified."""
        origin = self.name
        zone = dns.zone.Zone(origin, relativize=False)
        _add(zone, origin, "SOA", f"ns.{origin} hostmaster.{origin} 1 3600 600 86400 {SOA_MINIMUM}")
        _add(zone, origin, "NS", f"ns.{origin}")
        _add(zone, dns.name.from_text("ns", origin), "A", "127.0.0.1")
        for owner, records in self.records.items():
            name = origin if owner == "@" else dns.name.from_text(owner, origin)
            for record in records:
                rdtype, value, *ttl = record
                if rdtype not in SUPPORTED_TYPES:
                    raise ValueError(f"{owner}.{self.origin}: unsupported record type {rdtype}")
                _add(zone, name, rdtype, value, ttl[0] if ttl else DEFAULT_TTL)
        if self.key is not None:
            now = datetime.datetime.now(datetime.UTC)
            dns.dnssec.sign_zone(
                zone,
                keys=[(self.key, self.dnskey())],
                inception=now - datetime.timedelta(hours=1),
                expiration=now + datetime.timedelta(days=1),
            )
            if self.bogus:
                _break_signatures(zone)
        return zone


def _add(
    zone: dns.zone.Zone, name: dns.name.Name, rdtype: str, value: str, ttl: int = 3600
) -> None:
    rdataset = zone.find_rdataset(name, rdtype, create=True)
    rdataset.add(_rdata(rdtype, value, zone.origin), ttl)


def _rdata(rdtype: str, value: str, origin: dns.name.Name | None) -> dns.rdata.Rdata:
    if rdtype == "TXT":
        data = value.encode()
        strings = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=origin, relativize=False)


def _break_signatures(zone: dns.zone.Zone) -> None:
    """Flip one bit in every RRSIG except the DNSKEY's: the key validates, the data cannot."""
    for node in zone.nodes.values():
        for rdataset in node.rdatasets:
            if rdataset.rdtype != dns.rdatatype.RRSIG or rdataset.covers == dns.rdatatype.DNSKEY:
                continue
            damaged = [_damaged(rrsig) for rrsig in rdataset]
            ttl = rdataset.ttl
            rdataset.clear()
            for rrsig in damaged:
                rdataset.add(rrsig, ttl)


def _damaged(rrsig: dns.rdata.Rdata) -> dns.rdata.Rdata:
    assert isinstance(rrsig, dns.rdtypes.ANY.RRSIG.RRSIG)
    signature = bytearray(rrsig.signature)
    signature[len(signature) // 2] ^= 0x01
    return rrsig.replace(signature=bytes(signature))


def trust_anchors(specs: list[ZoneSpec]) -> str:
    """The trust-anchor file for unbound: one DS line per signed zone."""
    return "".join(
        f"{spec.name} 3600 IN DS {spec.ds().to_text()}\n" for spec in specs if spec.signed
    )


def dkim_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The DKIM key record (RFC 6376 §3.6.1; RFC 8463 for Ed25519) publishing ``key``."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def tlsa_record(key: ec.EllipticCurvePrivateKey) -> str:
    """A DANE-EE SPKI SHA-256 TLSA record (3 1 1, RFC 7671) for a server using ``key``."""
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(der).hexdigest()}"


@dataclass(frozen=True)
class ScenarioKeys:
    """The private halves of what the scenario zones publish, for tests that sign or serve TLS."""

    dkim_rsa: rsa.RSAPrivateKey  # selector "sel" in signed.test, unsigned.test and bogus.test
    dkim_ed25519: ed25519.Ed25519PrivateKey  # selector "ed" in signed.test
    mx_tls: ec.EllipticCurvePrivateKey  # TLSA 3 1 1 of _25._tcp.mx.signed.test / mx.bogus.test


# A TXT answer bigger than the 1232-byte EDNS buffer: it must come over TCP.
BIG_TXT = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(100)) + " -all"


def mail_auth_zones() -> tuple[list[ZoneSpec], ScenarioKeys]:
    """The mail-authentication scenario: a signed, an unsigned and a bogus zone.

    - ``signed.test``: signed and anchored. SPF, DMARC ``p=reject`` (``sp=quarantine``), DKIM
      selectors ``sel`` (RSA-2048) and ``ed`` (Ed25519), MX ``mx.signed.test`` with A/AAAA on
      loopback and a DANE TLSA record, plus ``big`` (TXT over 1232 bytes), ``ttl1`` (TXT, TTL 1)
      and ``alias`` (CNAME to ``target``) for the resolver's own tests.
    - ``unsigned.test``: the same kind of records, not signed (answers are never "secure").
    - ``bogus.test``: signed and anchored, signatures broken: every lookup is SERVFAIL.
    """
    keys = ScenarioKeys(
        dkim_rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        dkim_ed25519=ed25519.Ed25519PrivateKey.generate(),
        mx_tls=ec.generate_private_key(ec.SECP256R1()),
    )
    spf = ("TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    mx_host: dict[str, list[RecordData]] = {
        "mx": [("A", "127.0.0.1"), ("AAAA", "::1")],
        "_25._tcp.mx": [("TLSA", tlsa_record(keys.mx_tls))],
    }
    signed = ZoneSpec(
        "signed.test",
        {
            "@": [("MX", "10 mx.signed.test."), spf],
            "_dmarc": [("TXT", "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r")],
            "sel._domainkey": [("TXT", dkim_record(keys.dkim_rsa))],
            "ed._domainkey": [("TXT", dkim_record(keys.dkim_ed25519))],
            **mx_host,
            "big": [("TXT", BIG_TXT)],
            "ttl1": [("TXT", "short-lived", 1)],
            "alias": [("CNAME", "target.signed.test.")],
            "target": [("TXT", "the target")],
        },
    )
    unsigned = ZoneSpec(
        "unsigned.test",
        {
            "@": [("MX", "10 mx.unsigned.test."), spf],
            "_dmarc": [("TXT", "v=DMARC1; p=none")],
            "sel._domainkey": [("TXT", dkim_record(keys.dkim_rsa))],
            "mx": [("A", "127.0.0.1")],
        },
        signed=False,
    )
    bogus = ZoneSpec(
        "bogus.test",
        {
            "@": [("MX", "10 mx.bogus.test."), spf],
            "_dmarc": [("TXT", "v=DMARC1; p=reject")],
            "sel._domainkey": [("TXT", dkim_record(keys.dkim_rsa))],
            **mx_host,
        },
        bogus=True,
    )
    return [signed, unsigned, bogus], keys
