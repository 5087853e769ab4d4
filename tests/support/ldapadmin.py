"""The tests' own connection to a test directory (Samba, slapd), to write what a test reads."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import ldap3

from gateway.identity.ldapdirectory import VerifiedTls


def connect(url: str, ca: Path, user: str, password: str) -> ldap3.Connection:
    """A bound ldap3 connection over TLS verified against ``ca`` (LDAPS, or StartTLS for
    an ldap:// URL), with Sealgate's certificate checks."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    tls = VerifiedTls(ssl.create_default_context(cafile=str(ca)), parts.hostname)
    server = ldap3.Server(parts.hostname, port=parts.port, use_ssl=parts.scheme == "ldaps", tls=tls)
    conn = ldap3.Connection(server, user=user, password=password, raise_exceptions=True)
    conn.open()
    if parts.scheme == "ldap":
        conn.start_tls()
    conn.bind()
    return conn
