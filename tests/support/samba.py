"""A real Samba Active Directory domain controller for the directory-sync tests.

Debian's samba-ad-dc (``make system-packages``) provisions a domain with ``samba-tool
domain provision`` (realm SEALGATE.TEST, internal DNS, RFC 2307), creates the service
account ``svc-sealgate`` with List Contents and Read Property on CN=Deleted Objects
(Microsoft's way of letting a non-administrator see tombstones, KB 892806: ``dsacls
... /G DOMAIN\\svc:LCRP``; samba-tool's dsacl cannot reach that container, so
Samba's own Python bindings set it with the show-deleted control), and
``svc-limited`` without that right. Provisioning takes about 15 s, so the result is
cached under ``$SEALGATE_TEST_CACHE`` (/var/tmp/sealgate-test-cache), keyed by the Samba
version and :data:`RECIPE`, and each test session starts a copy of it.

A domain controller listens on fixed ports (53, 88, 389, 636, ...), so it runs in a
network namespace of its own (:mod:`tests.support.netns`), only its LDAP server
started (``server services = ldap``, single process model), with a certificate from
the test CA (:mod:`tests.support.certs`) for ``dc1.sealgate.test``, ``localhost`` and
127.0.0.1. The tests reach its LDAPS port through a relay on 127.0.0.1 and a free
port. Starting the copy takes about 2 s.

Samba missing is a failure, not a skip, as for PostgreSQL and unbound.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ldap3

from tests.support.certs import CertFiles
from tests.support.ldapadmin import connect
from tests.support.netns import IsolatedProcess, Relay, wait_for_tls

INSTALL = "apt-get install -y --no-install-recommends samba samba-ad-dc samba-ad-provision"
REALM = "SEALGATE.TEST"
WORKGROUP = "SEALGATE"
DOMAIN_DN = "DC=sealgate,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{DOMAIN_DN}"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"  # a throwaway test domain's
SERVICE_DN = f"CN=svc-sealgate,CN=Users,{DOMAIN_DN}"
LIMITED_DN = f"CN=svc-limited,CN=Users,{DOMAIN_DN}"
SERVICE_PASSWORD = "Svc-Passw0rd!"
RECIPE = "1"  # raise when provisioning changes: the cache key holds it
CACHE = Path(os.environ.get("SEALGATE_TEST_CACHE", "/var/tmp/sealgate-test-cache"))

# Runs under Debian's python3 with Samba's bindings: grants the service account List
# Contents and Read Property on the domain's Deleted Objects container.
_GRANT_DELETED_OBJECTS = """
import sys, ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm(); lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
user = db.search(base=db.domain_dn(), expression="(sAMAccountName=%s)" % sys.argv[2],
                 attrs=["objectSid"])[0]
sid = str(ndr_unpack(security.dom_sid, user["objectSid"][0]))
dn = "CN=Deleted Objects," + str(db.domain_dn())
controls = ["show_deleted:1", "sd_flags:1:4"]
found = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=controls)
sd = ndr_unpack(security.descriptor, found[0]["nTSecurityDescriptor"][0])
sd.dacl_add(security.descriptor.from_sddl("D:(A;;LCRP;;;%s)" % sid, security.dom_sid(sid)).dacl.aces[0])
message = ldb.Message(ldb.Dn(db, dn))
message["nTSecurityDescriptor"] = ldb.MessageElement(
    ndr_pack(sd), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
db.modify(message, controls=controls)
"""


def samba_version() -> str:
    try:
        result = subprocess.run(["samba", "--version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise RuntimeError(f"Samba is not installed; run as root: {INSTALL}") from None
    return result.stdout.strip().removeprefix("Version ").replace(" ", "_")


def provisioned_domain() -> Path:
    """The cached provisioned domain, made first if needed (one process at a time)."""
    version = samba_version()
    if shutil.which("samba-tool") is None:
        raise RuntimeError(f"samba-tool is not installed; run as root: {INSTALL}")
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"samba-{version}-r{RECIPE}"
    with open(CACHE / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "provisioned").exists():
            build = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=CACHE))
            try:
                _provision(build)
                (build / "provisioned").write_text(f"samba {version}, recipe {RECIPE}\n")
                shutil.rmtree(target, ignore_errors=True)
                build.rename(target)
            finally:
                shutil.rmtree(build, ignore_errors=True)
    return target


def _provision(directory: Path) -> None:
    # In namespaces of its own too: provisioning must not look anything up on a network.
    offline = ["unshare", "--net", "--uts"]
    _run(
        offline
        + [
            "samba-tool", "domain", "provision", f"--targetdir={directory}",
            f"--realm={REALM}", f"--domain={WORKGROUP}", "--server-role=dc",
            "--dns-backend=SAMBA_INTERNAL", f"--adminpass={ADMIN_PASSWORD}",
            "--host-name=dc1", "--host-ip=127.0.0.1", "--use-rfc2307",
        ]
    )  # fmt: skip
    conf = directory / "etc" / "smb.conf"
    local = ["-s", str(conf), "-H", str(directory / "private" / "sam.ldb")]
    for name in ("svc-sealgate", "svc-limited"):
        _run(offline + ["samba-tool", "user", "create", name, SERVICE_PASSWORD, *local])
    _run(["/usr/bin/python3", "-c", _GRANT_DELETED_OBJECTS, str(conf), "svc-sealgate"])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )


def _smb_conf(domain: Path, tls: Path) -> str:
    """The running DC's configuration: the provisioned one's, with only LDAP and files here."""
    return f"""[global]
\tnetbios name = DC1
\trealm = {REALM}
\tworkgroup = {WORKGROUP}
\tserver role = active directory domain controller
\tidmap_ldb:use rfc2307 = yes
\tserver services = ldap
\tinterfaces = lo
\tbind interfaces only = yes
\tprivate dir = {domain}/private
\tlock directory = {domain}
\tstate directory = {domain}/state
\tcache directory = {domain}/cache
\tbinddns dir = {domain}/bind-dns
\tpid directory = {domain}
\tncalrpc dir = {domain}/ncalrpc
\tlog file = {domain}/samba.log
\ttls enabled = yes
\ttls keyfile = {tls}/server.key
\ttls certfile = {tls}/server.pem
\ttls cafile = {tls}/ca.pem
"""


@dataclass
class SambaDC:
    """A running domain controller: its LDAPS URL here, and an administrator's connection."""

    directory: Path
    process: IsolatedProcess
    relay: Relay
    ca: Path
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _admin: ldap3.Connection | None = None

    @property
    def url(self) -> str:
        return f"ldaps://127.0.0.1:{self.relay.port}"

    def admin(self) -> ldap3.Connection:
        """A connection bound as the domain's Administrator (opened once)."""
        if self._admin is None:
            self._admin = connect(self.url, self.ca, ADMIN_DN, ADMIN_PASSWORD)
        return self._admin

    def new_ou(self) -> str:
        """A fresh organisational unit: each test reads its own base DN."""
        dn = f"OU=test{next(self._names)}-{uuid.uuid4().hex[:6]},{DOMAIN_DN}"
        self.admin().add(dn, ["top", "organizationalUnit"])
        return dn

    def add_person(
        self,
        ou: str,
        name: str,
        *,
        mail: str | None = None,
        disabled: bool = False,
        **attributes: str | list[str],
    ) -> str:
        """A user (no password: PASSWD_NOTREQD), enabled unless ``disabled``; its DN."""
        dn = f"CN={name},{ou}"
        values: dict[str, str | list[str]] = {
            "sAMAccountName": f"{name[:12]}{uuid.uuid4().hex[:6]}",
            "userAccountControl": str(0x200 | 0x20 | (0x2 if disabled else 0)),
            **attributes,
        }
        if mail is not None:
            values["mail"] = mail
        self.admin().add(dn, ["top", "person", "organizationalPerson", "user"], values)
        return dn

    def add_group(self, ou: str, name: str, members: list[str]) -> str:
        dn = f"CN={name},{ou}"
        values: dict[str, str | list[str]] = {
            "sAMAccountName": f"{name[:12]}{uuid.uuid4().hex[:6]}"
        }
        if members:
            values["member"] = members
        self.admin().add(dn, ["top", "group"], values)
        return dn

    def guid(self, dn: str) -> str:
        """The entry's objectGUID as text (the external id directory sync reports)."""
        conn = self.admin()
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        return str(uuid.UUID(bytes_le=conn.response[0]["raw_attributes"]["objectGUID"][0]))

    def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.unbind()
        self.relay.close()
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_samba(certs: CertFiles) -> SambaDC:
    """A copy of the cached domain, running; raises RuntimeError with the reason."""
    source = provisioned_domain()
    directory = Path(tempfile.mkdtemp(prefix="sealgate-samba-", dir="/tmp"))
    try:
        domain = directory / "domain"
        shutil.copytree(
            source, domain, symlinks=True, ignore=shutil.ignore_patterns("msg.sock", "msg.lock")
        )
        tls = directory / "tls"
        tls.mkdir()
        for path in (certs.ca, certs.certificate, certs.key):
            shutil.copy(path, tls / path.name)
        os.chmod(tls / certs.key.name, 0o600)  # Samba refuses a key others may read
        conf = directory / "smb.conf"
        conf.write_text(_smb_conf(domain, tls))
        process = IsolatedProcess(
            ["samba", "--foreground", "--no-process-group", "--debug-stdout",
             "--debuglevel=1", "--model=single", f"--configfile={conf}"],
            directory / "samba.out",
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        relay = Relay(process.pid, ("127.0.0.1", 636))
    except BaseException:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    dc = SambaDC(directory, process, relay, tls / certs.ca.name)
    try:
        wait_for_tls(relay.port, process)
    except BaseException:
        dc.stop()
        raise
    return dc
