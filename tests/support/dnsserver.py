"""A small authoritative DNS server for the test zones (RECIPES.md, "DNSSEC-signed test DNS").

It answers from dnspython ``Zone`` objects built by :mod:`tests.support.zones`, over UDP and TCP
on the same loopback port, as a real authoritative server would, because the validating
resolver in front of it (unbound) is strict about what it accepts:

- the AA flag on every answer from a served zone;
- RRSIGs (and NSEC records) only when the query has the DO bit (RFC 4035 §3.1);
- NXDOMAIN and NODATA with the zone's SOA in the authority section, and with DO, the NSEC
  records proving the denial (RFC 4035 §3.1.3): for NODATA the NSEC of the name (or, for an empty
  non-terminal, the NSEC covering it), for NXDOMAIN the NSEC covering the name and the one covering
  the wildcard at its closest encloser;
- TC when a UDP answer does not fit the requester's EDNS buffer (512 bytes without EDNS), so the
  requester retries over TCP;
- NXDOMAIN, not REFUSED, for names outside every zone: a REFUSED would make SPF turn a plain
  "no such domain" into a temporary error.

Each test zone is its own island of trust, so a DS query is answered from the zone itself (a
NODATA with its NSEC proof), and no delegations or wildcards are served. ``claim_ad`` makes the
server set the AD bit on its answers, as a lying or untrusted resolver could: tests use it to
show the gateway ignores AD from nameservers it does not trust.

Threads, not asyncio: the server must keep answering while a test's own event loop is busy or
blocked, and it is stopped and started again by tests that simulate an outage.
"""

from __future__ import annotations

import bisect
import socket
import socketserver
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

MAX_CNAME_CHAIN = 8
TCP_IDLE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Query:
    """One query the server received, for tests that count round trips."""

    name: str
    rdtype: str
    transport: str  # "udp" or "tcp"


class ServedZone:
    """A zone plus the indexes that denial-of-existence proofs need."""

    def __init__(self, zone: dns.zone.Zone) -> None:
        assert zone.origin is not None
        self.zone = zone
        self.origin: dns.name.Name = zone.origin
        self.names: set[dns.name.Name] = set()
        for name in zone.nodes:
            # Every ancestor up to the apex exists too: empty non-terminals answer NODATA.
            while name != self.origin:
                self.names.add(name)
                name = name.parent()
        self.names.add(self.origin)
        self.nsec_owners = sorted(
            name
            for name, node in zone.nodes.items()
            if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC) is not None
        )
        self.signed = bool(self.nsec_owners)

    def rrsets(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, dnssec: bool
    ) -> list[dns.rrset.RRset]:
        """The RRset of ``rdtype`` at ``name`` and, with DNSSEC, its signatures; [] if none."""
        node = self.zone.get_node(name)
        if node is None:
            return []
        rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
        if rdataset is None:
            return []
        found = [_rrset(name, rdataset)]
        signatures = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        if dnssec and signatures is not None:
            found.append(_rrset(name, signatures))
        return found

    def covering_nsec(self, name: dns.name.Name) -> list[dns.rrset.RRset]:
        """The NSEC (and its signature) whose owner is the last one at or before ``name``."""
        index = bisect.bisect_right(self.nsec_owners, name) - 1
        return self.rrsets(self.nsec_owners[index], dns.rdatatype.NSEC, True)

    def answer(
        self, response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        """Fill ``response`` for a query inside this zone, following CNAMEs within it."""
        dnssec = self.signed and bool(response.ednsflags & dns.flags.DO)
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            found = self.rrsets(name, rdtype, dnssec)
            if found:
                response.answer.extend(found)
                return
            cname = self.rrsets(name, dns.rdatatype.CNAME, dnssec)
            if not cname or rdtype == dns.rdatatype.CNAME:
                break
            response.answer.extend(cname)
            name = cname[0][0].target
            if not name.is_subdomain(self.origin):
                return  # the requester follows the chain into the other zone itself
        response.authority.extend(self.rrsets(self.origin, dns.rdatatype.SOA, dnssec))
        if name in self.names:
            if dnssec:
                own = self.rrsets(name, dns.rdatatype.NSEC, True)
                response.authority.extend(own or self.covering_nsec(name))
            return
        response.set_rcode(dns.rcode.NXDOMAIN)
        if dnssec:
            encloser = name.parent()
            while encloser not in self.names:
                encloser = encloser.parent()
            proofs = self.covering_nsec(name)
            wildcard = self.covering_nsec(dns.name.from_text("*", encloser))
            response.authority.extend(proofs)
            if wildcard[0].name != proofs[0].name:
                response.authority.extend(wildcard)


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    rrset.update(rdataset)
    return rrset


@dataclass
class AuthoritativeServer:
    """The server; ``start()`` binds UDP and TCP on one port (kept across stop/start)."""

    zones: Iterable[dns.zone.Zone] = ()
    host: str = "127.0.0.1"
    port: int = 0
    claim_ad: bool = False
    queries: list[Query] = field(default_factory=list)
    _zones: dict[dns.name.Name, ServedZone] = field(default_factory=dict, init=False)
    _servers: list[socketserver.BaseServer] = field(default_factory=list, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        for zone in self.zones:
            self.set_zone(zone)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def set_zone(self, zone: dns.zone.Zone) -> None:
        """Serve ``zone``, replacing a zone with the same origin (atomically, while running)."""
        served = ServedZone(zone)
        self._zones = {**self._zones, served.origin: served}

    def start(self) -> None:
        if self._servers:
            raise RuntimeError("the DNS server is already running")
        tcp = _TCPServer((self.host, self.port), self)
        try:
            self.port = tcp.server_address[1]
            udp = _UDPServer((self.host, self.port), self)
        except OSError:
            tcp.server_close()
            raise
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        self._servers, self._threads = [], []

    def respond(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query message in wire format; None to drop garbage."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        if query.ednsflags & dns.flags.DO:
            response.want_dnssec(True)
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        question = query.question[0]
        self.queries.append(
            Query(question.name.to_text(), dns.rdatatype.to_text(question.rdtype), transport)
        )
        zone = self._zone_for(question.name)
        if zone is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.flags |= dns.flags.AA
            zone.answer(response, question.name, question.rdtype)
        if self.claim_ad:
            response.flags |= dns.flags.AD
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(query.payload, 512) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def _zone_for(self, name: dns.name.Name) -> ServedZone | None:
        while True:
            zone = self._zones.get(name)
            if zone is not None:
                return zone
            if name == dns.name.root:
                return None
            name = name.parent()


class _UDPHandler(socketserver.BaseRequestHandler):
    server: _UDPServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.dns.respond(data, "udp")
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    """Length-prefixed messages (RFC 1035 §4.2.2) until the client closes or goes idle."""

    server: _TCPServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        connection.settimeout(TCP_IDLE_TIMEOUT)
        try:
            while True:
                header = _read_exactly(connection, 2)
                if header is None:
                    return
                wire = _read_exactly(connection, struct.unpack("!H", header)[0])
                reply = None if wire is None else self.server.dns.respond(wire, "tcp")
                if reply is None:
                    return
                connection.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def _read_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dns_server: AuthoritativeServer) -> None:
        self.dns = dns_server
        super().__init__(address, _UDPHandler)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart on the same port while old connections sit in TIME_WAIT
    block_on_close = False

    def __init__(self, address: tuple[str, int], dns_server: AuthoritativeServer) -> None:
        self.dns = dns_server
        super().__init__(address, _TCPHandler)


class SilentServer:
    """A port that takes DNS queries and never answers: a nameserver that times out.

    The UDP socket is bound and never read; the TCP socket listens and never accepts (the
    kernel completes the handshake from the backlog, then nothing comes back).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, port))
        self.tcp.listen(16)
        self.address: tuple[str, int] = self.tcp.getsockname()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.udp.bind(self.address)
        except OSError:
            self.tcp.close()
            raise

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()
