"""A validating unbound in front of the test zones, and the whole test DNS built from both.

:class:`Unbound` runs Debian's ``unbound`` in the foreground with its own configuration in a
temporary directory (RECIPES.md, "DNSSEC-signed test DNS"): one ``stub-zone`` per test zone
pointing at the test authoritative server, the zones' DS records as trust anchors, and
``local-zone: "<zone>." transparent`` for each, because ``test.`` is one of unbound's built-in
local zones and would otherwise hide them. Everything else is a ``static`` local zone, so a
lookup outside the test zones gets an immediate NXDOMAIN instead of a trip to the Internet's
root servers: the suite stays hermetic and fast. ``cache-max-ttl: 5`` keeps unbound's cache from
outliving a test's change by much, and a remote-control socket in the temporary directory lets
:meth:`Unbound.flush_zone` drop it at once.

unbound missing is a failure, not a skip (as for PostgreSQL): ``make test`` installs it, and a
suite that silently skips its DNSSEC half proves nothing about it.

:func:`start_test_dns` builds the mail-authentication scenario of
:func:`tests.support.zones.mail_auth_zones`, serves it, validates it and returns a
:class:`TestDNS`; records can be changed at runtime with :meth:`TestDNS.set_records`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.query

from gateway.mailauth.dns import Resolver
from tests.support.dnsserver import AuthoritativeServer, SilentServer
from tests.support.process import free_port
from tests.support.zones import RecordData, ScenarioKeys, ZoneSpec, mail_auth_zones, trust_anchors

INSTALL = "apt-get install -y --no-install-recommends unbound"
UNBOUND = "/usr/sbin/unbound"
UNBOUND_CONTROL = "/usr/sbin/unbound-control"
# The zone whose nameserver never answers: lookups under it time out.
TIMEOUT_ZONE = "timeout.test"


@dataclass
class Unbound:
    """A running unbound process and its directory; ``stop()`` ends it by PID and cleans up."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def config(self) -> Path:
        return self.directory / "unbound.conf"

    @property
    def log(self) -> str:
        path = self.directory / "unbound.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def flush_zone(self, zone: str) -> None:
        """Forget everything cached at or below ``zone`` (records, denials, keys, bogus marks)."""
        subprocess.run(
            [UNBOUND_CONTROL, "-c", str(self.config), "flush_zone", zone],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_unbound(
    stubs: dict[str, tuple[str, int]], anchors: str, timeout: float = 10.0
) -> Unbound:
    """unbound validating ``stubs`` (zone -> authoritative address) with the DS ``anchors``.

    Returns once it answers a query (one outside the test zones, so nothing gets cached);
    raises RuntimeError (with the install command, or unbound's log) if it is missing or does
    not come up.
    """
    if shutil.which(UNBOUND) is None or shutil.which(UNBOUND_CONTROL) is None:
        raise RuntimeError(f"unbound is not installed; run: {INSTALL}")
    directory = Path(tempfile.mkdtemp(prefix="sealgate-unbound-", dir="/tmp"))
    port = free_port()
    (directory / "anchors").write_text(anchors)
    (directory / "unbound.conf").write_text(_config(directory, port, stubs))
    process = subprocess.Popen(
        [UNBOUND, "-d", "-c", str(directory / "unbound.conf")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    unbound = Unbound(directory, port, process)
    probe = dns.message.make_query("probe.invalid.", "A")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = unbound.log
            unbound.stop()
            raise RuntimeError(f"unbound exited with {process.returncode}:\n{log}")
        try:
            dns.query.udp(probe, "127.0.0.1", timeout=0.2, port=port)
            return unbound
        except (dns.exception.Timeout, OSError):
            time.sleep(0.02)
    log = unbound.log
    unbound.stop()
    raise RuntimeError(f"unbound did not answer on port {port} within {timeout} s:\n{log}")


def _config(directory: Path, port: int, stubs: dict[str, tuple[str, int]]) -> str:
    lines = [
        "server:",
        "  interface: 127.0.0.1",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{directory}"',
        f'  pidfile: "{directory}/unbound.pid"',
        f'  logfile: "{directory}/unbound.log"',
        "  use-syslog: no",
        "  verbosity: 1",
        "  log-servfail: yes",
        "  val-log-level: 2",
        "  num-threads: 1",
        # Our authoritative server listens on loopback, which unbound refuses to ask by default.
        "  do-not-query-localhost: no",
        f'  trust-anchor-file: "{directory}/anchors"',
        "  cache-max-ttl: 5",
        "  cache-max-negative-ttl: 5",
        "  val-bogus-ttl: 5",
        '  local-zone: "." static',
    ]
    lines += [f'  local-zone: "{zone}." transparent' for zone in stubs]
    lines += [
        "remote-control:",
        "  control-enable: yes",
        f'  control-interface: "{directory}/control.sock"',
        "  control-use-cert: no",
    ]
    for zone, (host, stub_port) in stubs.items():
        lines += ["stub-zone:", f'  name: "{zone}."', f"  stub-addr: {host}@{stub_port}"]
    return "\n".join(lines) + "\n"


@dataclass
class TestDNS:
    """The running test DNS: authoritative server, validating unbound, and the scenario's data.

    ``zones`` maps each origin (``"signed.test"``...) to its :class:`ZoneSpec`; ``keys`` holds
    the private halves of the published DKIM and TLSA records. Lookups under ``timeout.test``
    never get an answer.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    server: AuthoritativeServer
    silent: SilentServer
    unbound: Unbound
    zones: dict[str, ZoneSpec]
    keys: ScenarioKeys

    @property
    def resolver_address(self) -> tuple[str, int]:
        """Where the validating resolver listens: what the gateway's DNS config points at."""
        return self.unbound.address

    def resolver(self, **options: Any) -> Resolver:
        """A fresh gateway resolver on the validating unbound (a new, empty cache)."""
        host, port = self.resolver_address
        return Resolver([host], port=port, **options)

    def set_records(self, name: str, records: list[RecordData]) -> None:
        """Replace every record at ``name`` (``[]`` deletes them) and re-sign its zone.

        Takes a few milliseconds: the zone is rebuilt and re-signed with its own key, swapped
        into the running server, and unbound forgets what it cached for the zone. Resolvers
        made before the change keep their own caches; use a fresh one. The fixture is shared
        by the whole session, so add names of your own rather than changing shared ones.
        """
        absolute = dns.name.from_text(name)
        spec = next((s for s in self.zones.values() if absolute.is_subdomain(s.name)), None)
        if spec is None:
            raise ValueError(f"{name} is in none of the test zones {sorted(self.zones)}")
        owner = spec.relative(name)
        if records:
            spec.records[owner] = list(records)
        else:
            spec.records.pop(owner, None)
        self.server.set_zone(spec.build())
        self.unbound.flush_zone(spec.origin)

    def stop(self) -> None:
        self.unbound.stop()
        self.server.stop()
        self.silent.close()


def start_test_dns() -> TestDNS:
    """Build, sign and serve the mail-authentication zones behind a validating unbound."""
    specs, keys = mail_auth_zones()
    server = AuthoritativeServer([spec.build() for spec in specs])
    server.start()
    silent = SilentServer()
    try:
        stubs = {spec.origin: server.address for spec in specs}
        stubs[TIMEOUT_ZONE] = silent.address
        unbound = start_unbound(stubs, trust_anchors(specs))
    except BaseException:
        server.stop()
        silent.close()
        raise
    return TestDNS(server, silent, unbound, {spec.origin: spec for spec in specs}, keys)
