"""Reading people and groups from Active Directory or OpenLDAP, over TLS only (ldap3).

One :class:`LDAPDirectory` connects with ``ldaps://`` or with ``ldap://`` and a
StartTLS that must succeed, verifies the server's certificate and host name against
``directory.ca_file`` (an untrusted certificate is a :class:`DirectoryError` naming the
server and the reason), binds as the service account and reads with the paged
results control (RFC 2696), so a directory of any size comes in pages.

What changed since the last read (:class:`~gateway.identity.directorysync.Cursor`):

- Active Directory: every write raises the DC's update sequence number; the cursor is
  the rootDSE's highestCommittedUSN read *before* the searches, and the next read asks
  for ``uSNChanged >= cursor + 1`` (MS-ADTS 3.1.1.1.9). A change made while reading is
  read again next time, never lost. Deletions come from the Deleted Objects container
  with the show-deleted control (MS-ADTS 3.1.1.5.5): tombstones keep objectGUID.
  Members come with the extended-DN control (``<GUID=...>;...``), so a group names
  its members' external ids without a search per member.
- OpenLDAP: the cursor is the latest modifyTimestamp among the entries in scope, read
  before the changed entries are, and the next read asks for ``modifyTimestamp >=``
  it (whole seconds: the entries of that second are read again, harmlessly). OpenLDAP
  keeps no tombstones, so every read lists the ids in scope (entryUUID and DN only)
  and what Sealgate knows but the directory no longer has is deleted; the same list
  turns group members (DNs) into ids.

A full read (no cursor, another scope, or ``full=True``) compares every id in scope
with those Sealgate knows, for both kinds: the periodic check that also catches
people who left the base DN or the filter.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import ssl
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPInvalidFilterError,
    LDAPNoSuchObjectResult,
    LDAPStartTLSError,
)

from gateway.config import Directory as Settings
from gateway.identity.directoryentries import (
    Attributes,
    ad_group,
    ad_person,
    first,
    normal_dn,
    openldap_group,
    openldap_person,
)
from gateway.identity.directorysync import (
    Cursor,
    DirectoryChanges,
    DirectoryGroup,
    DirectoryPerson,
)

PAGE_SIZE = 500  # AD answers at most MaxPageSize (1000) entries a page
SHOW_DELETED = "1.2.840.113556.1.4.417"  # LDAP_SERVER_SHOW_DELETED_OID, MS-ADTS 3.1.1.3.4.1.14
EXTENDED_DN = "1.2.840.113556.1.4.529"  # LDAP_SERVER_EXTENDED_DN_OID, MS-ADTS 3.1.1.3.4.1.5
_GUIDS_AS_TEXT = b"\x30\x03\x02\x01\x01"  # its value: SEQUENCE { flag INTEGER 1 }
_AD_PEOPLE = ["objectGUID", "mail", "proxyAddresses", "displayName", "cn", "mobile"]
_AD_PEOPLE += ["userAccountControl"]
_AD_GROUPS = ["objectGUID", "cn", "displayName", "member"]
_OPENLDAP_PEOPLE = ["entryUUID", "mail", "displayName", "cn", "mobile"]
_OPENLDAP_GROUPS = ["entryUUID", "cn", "member", "uniqueMember"]
_EPOCH = "19700101000000Z"
_TIMESTAMP = re.compile(r"\d{14}(\.\d+)?Z\Z")  # GeneralizedTime as slapd writes it

Progress = Callable[[str, int], None]
Entry = tuple[str, Attributes]
Control = tuple[str, bool, bytes | None]  # OID, criticality, BER value


class DirectoryError(Exception):
    """The directory could not be read; the message names the server and the problem."""


class VerifiedTls(ldap3.Tls):  # type: ignore[misc]
    """ldap3's TLS with the standard library's checks: ldap3 turns the context's host
    name check off and matches names itself with ssl.match_hostname (deprecated), so
    the context here is ours and wraps with server_hostname. A failure is kept for
    the message, since ldap3 reports it as a socket error."""

    def __init__(self, context: ssl.SSLContext, hostname: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = context
        self.hostname = hostname
        self.failure: ssl.SSLError | None = None

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        try:
            connection.socket = self.context.wrap_socket(
                connection.socket,
                server_hostname=self.hostname,
                do_handshake_on_connect=do_handshake,
            )
        except ssl.SSLError as error:
            self.failure = error
            raise


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificate and host name verified, TLS 1.2 at least, CAs from ca_file or the system."""
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    starttls: bool


def _endpoint(url: str) -> _Endpoint:
    parts = urlsplit(url)
    starttls = parts.scheme == "ldap"
    assert parts.hostname is not None  # the configuration checked the URL
    return _Endpoint(parts.hostname, parts.port or (389 if starttls else 636), starttls)


class LDAPDirectory:
    """A connection to the directory of ``settings``; use it as a context manager."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self._conn: ldap3.Connection | None = None

    def __enter__(self) -> LDAPDirectory:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect, secure the connection and bind: DirectoryError says what failed."""
        settings, endpoint = self.settings, _endpoint(self.settings.url)
        tls = VerifiedTls(tls_context(settings), endpoint.host)
        server = ldap3.Server(
            endpoint.host,
            port=endpoint.port,
            use_ssl=not endpoint.starttls,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=settings.timeout,
        )
        conn = ldap3.Connection(
            server,
            user=settings.bind_dn,
            password=settings.read_password(),
            authentication=ldap3.SIMPLE,
            read_only=True,
            raise_exceptions=True,
            auto_referrals=False,
            receive_timeout=settings.timeout,
        )
        try:
            conn.open()
            if endpoint.starttls:
                conn.start_tls()
            conn.bind()
        except LDAPException as error:
            # A failed TLS handshake leaves ldap3 a closed socket, and unbinding fails too.
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
            raise DirectoryError(self._connect_problem(error, tls)) from None
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.unbind()
            self._conn = None

    def _connect_problem(self, error: LDAPException, tls: VerifiedTls) -> str:
        url, ca = self.settings.url, self.settings.ca_file or "the system's CAs"
        if isinstance(tls.failure, ssl.SSLCertVerificationError):
            reason = tls.failure.verify_message or tls.failure.reason
            return f"{url}: the server's certificate is not trusted: {reason} (CAs: {ca})"
        if tls.failure is not None:
            return f"{url}: TLS failed: {tls.failure.reason or tls.failure}"
        if isinstance(error, LDAPStartTLSError):
            return f"{url}: the server refused StartTLS, which is required: {error}"
        if isinstance(error, LDAPInvalidCredentialsResult):
            return (
                f"{url}: the service account {self.settings.bind_dn} was refused "
                "(invalid credentials): check directory.bind_dn and directory.password_file"
            )
        return f"{url}: cannot connect: {error}"

    def read(
        self, since: Cursor | None, known_ids: Collection[str], *, full: bool = False
    ) -> DirectoryChanges:
        """What changed since ``since`` (everything, when it is None or of another
        scope, or ``full``); ids in ``known_ids`` that are gone are reported deleted."""
        try:
            if self.settings.kind == "ad":
                return self._read_ad(since, frozenset(known_ids), full)
            return self._read_openldap(since, frozenset(known_ids), full)
        except LDAPInvalidFilterError as error:
            raise DirectoryError(
                f"directory.user_filter or group_filter is not an LDAP filter: {error}"
            ) from None
        except LDAPNoSuchObjectResult:
            raise DirectoryError(
                f"{self.settings.url}: directory.base_dn {self.settings.base_dn} does not "
                "exist (or the service account may not see it)"
            ) from None
        except LDAPException as error:
            raise DirectoryError(f"{self.settings.url}: reading failed: {error}") from None

    # Active Directory

    def _read_ad(self, since: Cursor | None, known: frozenset[str], full: bool) -> DirectoryChanges:
        root = self._root_dse(["highestCommittedUSN", "dsServiceName", "defaultNamingContext"])
        invocation = self._single(_text(root, "dsservicename"), "invocationid")
        scope = self._scope(str(uuid.UUID(bytes_le=invocation)) if invocation else "")
        now = _text(root, "highestcommittedusn")
        if not now.isdigit():
            raise DirectoryError(
                f"{self.settings.url}: the rootDSE has no highestCommittedUSN: is this Active "
                'Directory? (directory.kind = "openldap" for OpenLDAP)'
            )
        if full or since is None or since.scope != scope or not since.position.isdigit():
            changed = ""
        else:
            changed = f"(uSNChanged>={int(since.position) + 1})"
        warnings: list[str] = []
        people = self._people(_AD_PEOPLE, changed, ad_person, warnings)
        groups = self._groups(_AD_GROUPS, changed, ad_group, [(EXTENDED_DN, False, _GUIDS_AS_TEXT)])
        if changed:
            deleted = self._ad_deleted(_text(root, "defaultnamingcontext"), changed, warnings)
        else:
            deleted = known - {p.external_id for p in people} - {g.external_id for g in groups}
        cursor = Cursor(scope, now)
        return DirectoryChanges(people, groups, deleted, cursor, not changed, tuple(warnings))

    def _ad_deleted(self, domain: str, changed: str, warnings: list[str]) -> frozenset[str]:
        """objectGUIDs of people and groups deleted since the cursor (their tombstones)."""
        container = f"CN=Deleted Objects,{domain}"
        show: list[Control] = [(SHOW_DELETED, True, None)]
        if self._single(container, "objectguid", controls=show) is None:
            warnings.append(
                f"the service account cannot read {container}, so deletions since the last "
                "sync are not seen: grant it List Contents and Read Property there "
                "(docs/identity.md), or let a periodic --full sync find them"
            )
            return frozenset()
        found = self._search(
            container,
            f"(&(isDeleted=TRUE)(|(objectClass=user)(objectClass=group)){changed})",
            ["objectGUID"],
            "deleted",
            controls=show,
        )
        return frozenset(
            str(uuid.UUID(bytes_le=attrs["objectguid"][0]))
            for _, attrs in found
            if attrs.get("objectguid")
        )

    # OpenLDAP

    def _read_openldap(
        self, since: Cursor | None, known: frozenset[str], full: bool
    ) -> DirectoryChanges:
        scope = self._scope("")
        # Every id in scope first: for deletions, for members, and for the cursor (see above).
        index = [
            ("people", self.settings.people_filter),
            ("groups", self.settings.groups_filter),
        ]
        dns: dict[str, str] = {}
        latest = _EPOCH
        for what, search_filter in index:
            for dn, attrs in self._search(
                self.settings.base_dn,
                search_filter,
                ["entryUUID", "modifyTimestamp"],
                f"{what} (ids)",
            ):
                entry_uuid = first(attrs, "entryuuid")
                if entry_uuid is None:
                    raise DirectoryError(
                        f"{self.settings.url}: {dn} has no entryUUID: is this OpenLDAP? "
                        '(directory.kind = "ad" for Active Directory)'
                    )
                dns[normal_dn(dn)] = entry_uuid.lower()
                latest = max(latest, first(attrs, "modifytimestamp") or _EPOCH)
        if full or since is None or since.scope != scope or not _TIMESTAMP.match(since.position):
            changed = ""
        else:
            changed = f"(modifyTimestamp>={since.position})"
        warnings: list[str] = []
        people = self._people(self._openldap_people_attrs(), changed, self._person, warnings)

        def group(dn: str, attrs: Attributes) -> DirectoryGroup | None:
            return openldap_group(dn, attrs, dns)

        groups = self._groups(_OPENLDAP_GROUPS, changed, group)
        deleted = known - set(dns.values())
        return DirectoryChanges(
            people, groups, deleted, Cursor(scope, latest), not changed, tuple(warnings)
        )

    def _openldap_people_attrs(self) -> list[str]:
        extra = self.settings.disabled_attribute
        return _OPENLDAP_PEOPLE + ([extra] if extra else [])

    def _person(self, dn: str, attrs: Attributes, warnings: list[str]) -> DirectoryPerson | None:
        return openldap_person(dn, attrs, self.settings.disabled_attribute, warnings)

    # shared

    def _scope(self, server: str) -> str:
        """What a cursor is valid for: the server and the searches (hashed: short, no blanks)."""
        settings = self.settings
        parts = [settings.kind, settings.url, server, settings.base_dn]
        parts += [settings.people_filter, settings.groups_filter]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def _people(
        self,
        attributes: list[str],
        changed: str,
        mapper: Callable[[str, Attributes, list[str]], DirectoryPerson | None],
        warnings: list[str],
    ) -> tuple[DirectoryPerson, ...]:
        search_filter = _and(self.settings.people_filter, changed)
        found = self._search(self.settings.base_dn, search_filter, attributes, "people")
        return tuple(p for dn, attrs in found if (p := mapper(dn, attrs, warnings)) is not None)

    def _groups(
        self,
        attributes: list[str],
        changed: str,
        mapper: Callable[[str, Attributes], DirectoryGroup | None],
        controls: list[Control] | None = None,
    ) -> tuple[DirectoryGroup, ...]:
        search_filter = _and(self.settings.groups_filter, changed)
        found = self._search(self.settings.base_dn, search_filter, attributes, "groups", controls)
        return tuple(g for dn, attrs in found if (g := mapper(dn, attrs)) is not None)

    def _search(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        what: str,
        controls: list[Control] | None = None,
    ) -> Iterator[Entry]:
        """Entries under ``base``, a page at a time; ``progress(what, count)`` after each."""
        assert self._conn is not None, "open() first"
        pages = self._conn.extend.standard.paged_search(
            base,
            search_filter,
            attributes=attributes,
            controls=controls,
            paged_size=PAGE_SIZE,
            generator=True,
        )
        count = 0
        for item in pages:
            if item.get("type") != "searchResEntry":
                continue  # continuation references to other partitions
            count += 1
            if self.progress is not None:
                self.progress(what, count)
            yield item["dn"], _lowered(item["raw_attributes"])

    def _root_dse(self, attributes: list[str]) -> Attributes:
        assert self._conn is not None, "open() first"
        self._conn.search("", "(objectClass=*)", ldap3.BASE, attributes=attributes)
        entries = self._conn.response or []
        return _lowered(entries[0]["raw_attributes"]) if entries else {}

    def _single(
        self, dn: str, attribute: str, controls: list[Control] | None = None
    ) -> bytes | None:
        """One value of one entry's attribute; None if the entry or the value is not visible."""
        assert self._conn is not None, "open() first"
        if not dn:
            return None
        try:
            self._conn.search(
                dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute], controls=controls
            )
        except LDAPNoSuchObjectResult:
            return None
        for item in self._conn.response or []:
            values = _lowered(item.get("raw_attributes", {})).get(attribute)
            if values:
                return bytes(values[0])
        return None


def _and(search_filter: str, extra: str) -> str:
    if not search_filter.startswith("("):
        search_filter = f"({search_filter})"
    return f"(&{search_filter}{extra})" if extra else search_filter


def _text(attrs: Attributes, name: str) -> str:
    return first(attrs, name) or ""


def _lowered(raw: Any) -> Attributes:
    """ldap3's raw attributes with lower-case names (servers spell them as they like)."""
    return {str(name).lower(): [bytes(v) for v in values] for name, values in raw.items()}
