"""Debian's slapd on a free loopback port, for the directory-sync tests.

One server per test session: a slapd.conf in a fresh directory under /tmp (core,
cosine, inetorgperson and nis schemas, an mdb database for ``dc=sealgate,dc=test``,
the ppolicy overlay so that ``pwdAccountLockedTime`` locks a person), the base
entries loaded with slapadd, then ``slapd -d 0`` in the foreground on
``ldap://127.0.0.1:PORT``. TLS comes from the test CA (:mod:`tests.support.certs`)
and is required (``security tls=1``), so every client uses StartTLS. The service
account ``cn=sealgate-sync`` may read everything but passwords; the rootdn writes.
Up in about 0.1 s; ``stop()`` ends it by PID and removes the directory.

slapd missing is a failure, not a skip (``make system-packages`` installs it).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ldap3

from tests.support.certs import CertFiles
from tests.support.ldapadmin import connect
from tests.support.process import free_port

INSTALL = "apt-get install -y --no-install-recommends slapd ldap-utils"
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
BASE_DN = "dc=sealgate,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"  # a throwaway test directory's
SERVICE_DN = f"cn=sealgate-sync,{BASE_DN}"
SERVICE_PASSWORD = "sync-secret"

_BASE_LDIF = f"""dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Sealgate
dc: sealgate

dn: {SERVICE_DN}
objectClass: person
cn: sealgate-sync
sn: sync
userPassword: {SERVICE_PASSWORD}
"""


def _config(directory: Path, tls: CertFiles) -> str:
    schemas = ("core", "cosine", "inetorgperson", "nis")
    return (
        "\n".join(
            [f"include /etc/ldap/schema/{name}.schema" for name in schemas]
            + [
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "moduleload ppolicy",
                f"pidfile {directory}/slapd.pid",
                f"TLSCACertificateFile {tls.ca}",
                f"TLSCertificateFile {tls.certificate}",
                f"TLSCertificateKeyFile {tls.key}",
                "security tls=1",
                "database mdb",
                f'suffix "{BASE_DN}"',
                f'rootdn "{ADMIN_DN}"',
                f"rootpw {ADMIN_PASSWORD}",
                f"directory {directory}/db",
                "maxsize 104857600",
                "overlay ppolicy",
                "access to attrs=userPassword by anonymous auth by * none",
                "access to * by users read by * none",
            ]
        )
        + "\n"
    )


@dataclass
class Slapd:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    ca: Path
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _admin: ldap3.Connection | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.directory / "slapd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def admin(self) -> ldap3.Connection:
        """A connection bound as the rootdn, over StartTLS (opened once)."""
        if self._admin is None:
            self._admin = connect(self.url, self.ca, ADMIN_DN, ADMIN_PASSWORD)
        return self._admin

    def new_ou(self) -> str:
        """A fresh organisational unit: each test reads its own base DN."""
        dn = f"ou=test{next(self._names)}-{uuid.uuid4().hex[:6]},{BASE_DN}"
        self.admin().add(dn, ["organizationalUnit"])
        return dn

    def add_person(self, ou: str, uid: str, **attributes: str | list[str]) -> str:
        dn = f"uid={uid},{ou}"
        values: dict[str, str | list[str]] = {"cn": uid, "sn": uid, **attributes}
        self.admin().add(dn, ["inetOrgPerson"], values)
        return dn

    def add_group(self, ou: str, name: str, members: list[str]) -> str:
        dn = f"cn={name},{ou}"
        self.admin().add(dn, ["groupOfNames"], {"member": members or [ADMIN_DN]})
        return dn

    def entry_uuid(self, dn: str) -> str:
        conn = self.admin()
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
        return str(conn.response[0]["raw_attributes"]["entryUUID"][0].decode())

    def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.unbind()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_slapd(certs: CertFiles, attempts: int = 3) -> Slapd:
    """slapd with the base entries, listening; raises RuntimeError with the reason."""
    if shutil.which(SLAPD) is None or shutil.which(SLAPADD) is None:
        raise RuntimeError(f"slapd is not installed; run as root: {INSTALL}")
    directory = Path(tempfile.mkdtemp(prefix="sealgate-slapd-", dir="/tmp"))
    try:
        (directory / "db").mkdir()
        conf = directory / "slapd.conf"
        conf.write_text(_config(directory, certs))
        (directory / "base.ldif").write_text(_BASE_LDIF)
        _run([SLAPADD, "-q", "-f", str(conf), "-l", str(directory / "base.ldif")])
        for attempt in range(attempts):
            port = free_port()
            try:
                return _start(directory, conf, port, certs.ca)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start(directory: Path, conf: Path, port: int, ca: Path, timeout: float = 10) -> Slapd:
    with open(directory / "slapd.log", "ab") as log:
        process = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", f"ldap://127.0.0.1:{port}/", "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Slapd(directory, port, process, ca)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}:\n{server.log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return server
        time.sleep(0.02)
    process.kill()
    process.wait(5)
    raise RuntimeError(f"slapd did not listen on {port} within {timeout} s:\n{server.log}")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed:\n{result.stdout}{result.stderr}")
