"""Sealgate's configuration: one typed schema, loaded from TOML.

Every option lives here with its type, default and description; the example
configuration and the reference in docs/ are generated from this module
(:mod:`gateway.cli.configdoc`), so the three cannot drift. Unknown keys, wrong types
and impossible values are errors that name the key path and the problem, and
all of them are reported at once.

Relative paths in a configuration file are resolved against the directory of
that file, so a configuration means the same whatever the working directory.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class HostPort(NamedTuple):
    """A listening or connecting address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _invalid(template: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("sealgate", template, context)


def _parse_hostport(value: Any) -> HostPort:
    if not isinstance(value, str):
        raise _invalid('expected a string "host:port", got {value}', value=_toml(value))
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise _invalid('"{value}" is not of the form host:port', value=value)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise _invalid('"{value}": write an IPv6 address in brackets, [::1]:25', value=value)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise _invalid('"{value}" is not a valid port', value=value)
    return HostPort(host, int(port_text))


def parse_address(text: str) -> HostPort:
    """Parse ``host:port`` (``[v6]:port``); ValueError saying what is wrong."""
    try:
        return _parse_hostport(text)
    except PydanticCustomError as error:
        raise ValueError(error.message()) from None


def _parse_listen_list(value: Any) -> list[HostPort]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _invalid('expected "host:port" or a list of them, got {value}', value=_toml(value))
    return [_parse_hostport(item) for item in items]


def _parse_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise _invalid("expected a string, got {value}", value=_toml(value))
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _invalid('"{value}" is not an IP address or CIDR network', value=value) from None


def _parse_path(value: Any, info: ValidationInfo) -> Path | None:
    if not isinstance(value, str):
        raise _invalid("expected a path string, got {value}", value=_toml(value))
    if value == "":
        return None
    path = Path(value)
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _parse_existing_file(value: Any, info: ValidationInfo) -> Path | None:
    path = _parse_path(value, info)
    if path is not None and not path.is_file():
        raise _invalid('"{value}": no such file', value=str(path))
    return path


def _parse_hostname(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("expected a string, got {value}", value=_toml(value))
    if not value:
        fqdn = socket.getfqdn()
        return fqdn if _valid_hostname(fqdn) else "localhost"
    if not _valid_hostname(value):
        raise _invalid('"{value}" is not a valid host name', value=value)
    return value


def _valid_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(
        label and len(label) <= 63 and _is_ldh(label) for label in labels
    )


def _is_ldh(label: str) -> bool:
    return label.replace("-", "").isalnum() and label.isascii() and not label.startswith("-")


ListenList = Annotated[list[HostPort], PlainValidator(_parse_listen_list)]
Address = Annotated[HostPort, PlainValidator(_parse_hostport)]
Network = Annotated[IPNetwork, PlainValidator(_parse_network)]
OptionalPath = Annotated[Path | None, PlainValidator(_parse_path)]
ExistingFile = Annotated[Path | None, PlainValidator(_parse_existing_file)]
Hostname = Annotated[str, PlainValidator(_parse_hostname)]


class _Unit(str):
    """A unit named in a type (the configuration reference shows it)."""


SECONDS = _Unit("seconds")
Seconds = Annotated[float, Field(gt=0, le=86400), SECONDS]

LOOPBACK = ["127.0.0.0/8", "::1/128"]
# The packs shipped with Sealgate (policies/ in the source tree links here).
SHIPPED_PACKS = Path(__file__).resolve().parent / "policy" / "packs"


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


class Section(BaseModel):
    """A table of the configuration.

    Every option says whether a reload (SIGHUP) applies it to the running process
    or only a restart does: its name is in ``reloadable`` or in ``restart_only`` of
    its table (a test checks that each option is in exactly one). A table within a
    table (``smtp.tls``) classifies its own options; a list of tables
    (``dkim.keys``) is one option of the table that holds it.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    reloadable: ClassVar[frozenset[str]] = frozenset()
    restart_only: ClassVar[frozenset[str]] = frozenset()
    # Options still accepted but no longer used, with what to do about them:
    # kept for one release so that existing files load, with a warning.
    deprecated: ClassVar[dict[str, str]] = {}


def _section() -> Any:
    """A table that may be left out: validated from {} so that its relative paths
    still resolve against the configuration file's directory."""
    return Field(default_factory=dict, validate_default=True)


class TLSServer(Section):
    """TLS for the SMTP listener (STARTTLS). Without a certificate, STARTTLS and AUTH
    are not offered."""

    reloadable = _names("certificate key min_version")

    certificate: ExistingFile = Field(
        None, description="PEM certificate chain for STARTTLS. Empty: no STARTTLS."
    )
    key: ExistingFile = Field(None, description="PEM private key that goes with the certificate.")
    min_version: Literal["TLSv1.2", "TLSv1.3"] = Field(
        "TLSv1.2", description="Oldest TLS version a client may negotiate."
    )

    @model_validator(mode="after")
    def _pair(self) -> TLSServer:
        if (self.certificate is None) != (self.key is None):
            raise _invalid("certificate and key must be set together")
        return self


class AuthUser(Section):
    """One SMTP AUTH account."""

    name: str = Field(description="User name the client sends with AUTH PLAIN or LOGIN.")
    password_hash: str = Field(
        description="Argon2id hash of the password, made with `sealgate hash-password`."
    )

    @model_validator(mode="after")
    def _hash(self) -> AuthUser:
        if not self.password_hash.startswith("$argon2id$"):
            raise _invalid(
                "password_hash is not an argon2id hash; make one with `sealgate hash-password`"
            )
        return self


class Auth(Section):
    """SMTP AUTH (PLAIN, LOGIN) for clients outside `smtp.allow_networks`. Offered only
    after STARTTLS, so it needs `smtp.tls`."""

    reloadable = _names("users max_failures lockout")

    users: list[AuthUser] = Field([], description="Accounts allowed to submit mail.")
    max_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed AUTH attempts from one address before it is locked out.",
    )
    lockout: Seconds = Field(
        900,
        description="Seconds a locked-out address waits; failures older than this are forgotten.",
    )


class SMTP(Section):
    """The SMTP listener that the MTA in front (Postfix, Exchange) relays to."""

    reloadable = _names(
        "hostname allow_networks xforward_hosts require_tls max_message_size "
        "max_recipients max_connections memory_budget command_timeout data_timeout "
        "reserved_share max_connections_per_client auth_timeout mail_timeout"
    )
    restart_only = _names("listen")

    listen: ListenList = Field(
        [HostPort("127.0.0.1", 10025)],
        description='Addresses to listen on, "host:port" or a list of them.',
    )
    hostname: Hostname = Field(
        "",
        validate_default=True,
        description="Name in the greeting, EHLO and Received headers. Empty: this host's FQDN.",
    )
    allow_networks: list[Network] = Field(
        [_parse_network(n) for n in LOOPBACK],
        description="Clients in these networks may submit without AUTH. Anyone else must "
        "authenticate or is refused (5.7.1): Sealgate is never an open relay.",
    )
    xforward_hosts: list[Network] = Field(
        [_parse_network(n) for n in LOOPBACK],
        description="Clients trusted to send XFORWARD (the original client of the MTA in front).",
    )
    require_tls: bool = Field(False, description="Refuse MAIL before STARTTLS.")
    max_message_size: int = Field(
        10_240_000,
        ge=1024,
        le=1 << 31,
        description="Largest message in bytes, advertised with SIZE; larger ones get 552 5.3.4. "
        "Keep it equal to Postfix's message_size_limit, and let the upstream accept about "
        "1 KB more for the header fields Sealgate adds (docs/postfix.md).",
    )
    max_recipients: int = Field(
        1000, ge=1, le=100_000, description="Recipients per transaction; more get 452 4.5.3."
    )
    max_connections: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Concurrent SMTP connections per process; more get 421 4.7.0.",
    )
    reserved_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of `max_connections` kept for clients in `allow_networks` (the MTA "
        "in front): all other clients together get at most the rest, so that they cannot "
        "crowd the MTA out. Nothing is kept when `allow_networks` is empty.",
    )
    max_connections_per_client: int = Field(
        10,
        ge=1,
        le=100_000,
        description="Concurrent connections from one address outside `allow_networks` (an "
        "IPv6 client counts by its /64); more get 421 4.7.0. Clients in `allow_networks` "
        "have no such limit.",
    )
    auth_timeout: Seconds = Field(
        30,
        description="Seconds a client outside `allow_networks` has, from connecting, to "
        "authenticate (STARTTLS and AUTH); then it gets 421 4.7.0 and its connection is closed.",
    )
    mail_timeout: Seconds = Field(
        60,
        description="Seconds any connection may go without starting a transaction (MAIL), "
        "counted from connecting and from the end of each transaction; then it gets "
        "421 4.4.2 and is closed. Commands such as NOOP or RSET do not extend it.",
    )
    memory_budget: int = Field(
        268_435_456,
        ge=1 << 20,
        description="Bytes of message data held in memory by all transactions of a process; a "
        "transaction that would exceed it gets 452 4.3.1 and is retried by the sender.",
    )
    command_timeout: Seconds = Field(300, description="Idle seconds allowed between commands.")
    data_timeout: Seconds = Field(300, description="Idle seconds allowed while receiving DATA.")
    tls: TLSServer = _section()
    auth: Auth = _section()

    @model_validator(mode="after")
    def _tls_needed(self) -> SMTP:
        if self.require_tls and self.tls.certificate is None:
            raise _invalid("require_tls = true needs smtp.tls.certificate and smtp.tls.key")
        if self.auth.users and self.tls.certificate is None:
            raise _invalid(
                "smtp.auth.users are set but AUTH is offered only after STARTTLS: "
                "set smtp.tls.certificate and smtp.tls.key"
            )
        if self.auth.users and self.allow_networks and self.connections_for_others < 1:
            raise _invalid(
                "reserved_share = {share} leaves no connection for the smtp.auth.users, "
                "who connect from outside smtp.allow_networks: lower smtp.reserved_share "
                "or raise smtp.max_connections",
                share=f"{self.reserved_share:g}",
            )
        return self

    @property
    def connections_for_others(self) -> int:
        """Connections that clients outside ``allow_networks`` may hold together."""
        if not self.allow_networks:
            return self.max_connections
        return self.max_connections - round(self.max_connections * self.reserved_share)


class Upstream(Section):
    """The MTA that Sealgate relays to (Postfix's re-injection port, or the smart host)."""

    reloadable = _names(
        "host port tls verify_certificate ca_file server_name username password "
        "password_file helo_name connect_timeout command_timeout data_timeout "
        "max_idle_connections idle_timeout"
    )

    host: str = Field("127.0.0.1", min_length=1, description="Host name or address.")
    port: int = Field(10026, ge=1, le=65535, description="Port.")
    tls: Literal["none", "starttls", "implicit"] = Field(
        "none", description='"none", "starttls" (required, not opportunistic) or "implicit" TLS.'
    )
    verify_certificate: bool = Field(
        True, description="Verify the upstream certificate and host name."
    )
    ca_file: ExistingFile = Field(
        None, description="PEM bundle of CAs to trust. Empty: the system's CAs."
    )
    server_name: str = Field(
        "", description="Name to expect in the certificate. Empty: `upstream.host`."
    )
    username: str = Field("", description="AUTH user name. Empty: no AUTH.")
    password: str = Field("", description="AUTH password (prefer `password_file`).")
    password_file: ExistingFile = Field(
        None, description="File holding the AUTH password on its first line."
    )
    helo_name: str = Field("", description="Name sent in EHLO. Empty: `smtp.hostname`.")
    connect_timeout: Seconds = Field(30, description="Seconds to connect and get the greeting.")
    command_timeout: Seconds = Field(60, description="Seconds to wait for a reply to a command.")
    data_timeout: Seconds = Field(
        300,
        description="Seconds to wait for the reply after the message data. Keep the sum of the "
        "upstream timeouts below the sending MTA's wait for our reply (Postfix: "
        "smtp_data_done_timeout, 600 s).",
    )
    max_idle_connections: int = Field(
        8, ge=0, le=1000, description="Connections kept open for reuse. 0: one per message."
    )
    idle_timeout: Seconds = Field(
        30, description="Seconds an unused connection is kept before it is closed."
    )

    @model_validator(mode="after")
    def _auth(self) -> Upstream:
        if self.password and self.password_file is not None:
            raise _invalid("set password or password_file, not both")
        if (self.password or self.password_file) and not self.username:
            raise _invalid("a password is set but username is empty")
        if self.username and self.tls == "none":
            raise _invalid(
                'username is set but tls = "none": AUTH would cross the network in clear'
            )
        return self

    def read_password(self) -> str:
        """The AUTH password, from `password_file` when that is set."""
        if self.password_file is None:
            return self.password
        lines = self.password_file.read_text().splitlines()
        return lines[0] if lines else ""


class Loop(Section):
    """The loop marker: an HMAC that Sealgate puts on every message it sends, so that mail
    which comes back is recognised: what Sealgate wrote itself is never processed twice,
    what it only relayed is decided again for its new recipients."""

    reloadable = _names("max_age max_hops")
    # The secret keys idempotency, stored access codes and links in flight: changing it
    # on a running gateway would seal retried messages twice and count right access codes
    # as wrong. It changes with a restart only (and rotation needs versioned secrets).
    restart_only = _names("secret_file")

    secret_file: OptionalPath = Field(
        "var/loop.key",
        validate_default=True,
        description="File holding the installation's secret, which keys the loop marker, "
        "access codes and the sender's revoke and release links; created with a random secret "
        "when missing. Nodes that share an upstream must share it. A new secret makes those "
        "made with the old one stop verifying.",
    )
    max_age: Annotated[float, SECONDS] = Field(
        432_000,
        gt=0,
        le=90 * 86400,
        description="Seconds a marker stays valid (Postfix's maximal_queue_lifetime).",
    )
    max_hops: int = Field(
        5,
        ge=1,
        le=100,
        description="Times a message may pass Sealgate (counted in its Received fields) "
        "before it is refused as a loop (554 5.4.6).",
    )


class Log(Section):
    """Logging to standard error: one line per SMTP transaction."""

    reloadable = _names("level format")

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe level logged."
    )
    format: Literal["text", "json"] = Field(
        "text", description='"text" (key=value) or "json" lines.'
    )


class Service(Section):
    """The running service."""

    restart_only = _names("workers shutdown_timeout")

    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Processes serving SMTP and the portal. Above 1, a supervisor binds the "
        "listen addresses and its workers accept from the same sockets, so a worker that "
        "dies takes no waiting connection with it.",
    )
    shutdown_timeout: Seconds = Field(
        30, description="Seconds to finish transactions in flight after SIGTERM."
    )


class DevOutbox(Section):
    """A local SMTP sink for development: it stores every message it receives as an
    .eml file. Never enable it in production."""

    restart_only = _names("enabled listen directory")

    enabled: bool = Field(False, description="Start the outbox together with `sealgate serve`.")
    listen: Address = Field(HostPort("127.0.0.1", 10026), description="Address it listens on.")
    directory: OptionalPath = Field(
        "var/outbox", validate_default=True, description="Directory for the .eml files."
    )


def _parse_database(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("expected a database URL string, got {value}", value=_toml(value))
    if value and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise _invalid(
            'expected "" (SQLite under store.directory), "sqlite:///PATH" or '
            '"postgresql+psycopg://USER@HOST/DB"'
        )
    return value


def _parse_portal_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("expected a URL string, got {value}", value=_toml(value))
    if value == "":
        return value
    parts = urlsplit(value)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise _invalid(
            '"{value}" must be an https:// URL (plain http only for localhost)', value=value
        )
    if not parts.hostname or parts.query or parts.fragment:
        raise _invalid('"{value}" must be a base URL without query or fragment', value=value)
    return value.rstrip("/")


Database = Annotated[str, PlainValidator(_parse_database)]
PortalURL = Annotated[str, PlainValidator(_parse_portal_url)]


class Store(Section):
    """Where sealed envelopes live: metadata in a database, encrypted parts as files.
    Neither ever holds plaintext or a key that opens it."""

    restart_only = _names("directory database blob_directory busy_timeout")

    directory: OptionalPath = Field(
        "var", validate_default=True, description="State directory (database and blobs)."
    )
    database: Database = Field(
        "",
        description="Database URL. Empty: SQLite at DIRECTORY/sealgate.db. PostgreSQL: "
        '"postgresql+psycopg://USER@HOST/DB" (needs the sealgate[postgresql] extra).',
    )
    blob_directory: OptionalPath = Field(
        "", validate_default=True, description="Encrypted parts. Empty: DIRECTORY/blobs."
    )
    busy_timeout: Seconds = Field(
        10, description="Seconds to wait for a locked database before answering 451."
    )

    @property
    def database_url(self) -> str:
        assert self.directory is not None
        return self.database or f"sqlite:///{self.directory / 'sealgate.db'}"

    @property
    def blob_root(self) -> Path:
        assert self.directory is not None
        return self.blob_directory or self.directory / "blobs"


_LONGEST_EXPIRY = 90  # days: max_expiry_days when the file leaves it out


class Envelope(Section):
    """Sealing: account key sizes, retention, and how long senders may ask for."""

    reloadable = _names("retention_days min_expiry_days max_expiry_days expire_interval")
    restart_only = _names("rsa_bits key_pool_size key_processes orphan_age")
    deprecated = {
        "key_pool_size": "format v2 generates no key pairs per message; remove the option",
        "key_processes": "format v2 generates no key pairs per message; remove the option",
    }

    rsa_bits: Literal[2048, 3072, 4096] = Field(
        2048,
        description="Size of the RSA key pairs `sealgate account create` makes "
        "(2048, 3072 or 4096 bits).",
    )
    key_pool_size: int = Field(
        32,
        ge=0,
        le=4096,
        description="Deprecated and ignored (format v1 pre-generated guest key pairs); "
        "accepted until the next release.",
    )
    key_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Deprecated and ignored (format v1 generated guest key pairs in helper "
        "processes); accepted until the next release.",
    )
    retention_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Days a sealed message stays readable, then it expires, unless the sender "
        "asks otherwise (X-Sealgate-Expires).",
    )
    min_expiry_days: int = Field(
        1,
        ge=1,
        le=3650,
        description="Shortest time, in days, a sender may ask for with X-Sealgate-Expires; "
        "a shorter request is lengthened to this.",
    )
    max_expiry_days: int = Field(
        _LONGEST_EXPIRY,
        ge=1,
        le=3650,
        description="Longest time, in days, a sender may ask for with X-Sealgate-Expires; a "
        "longer request is shortened to this. Left out: 90, or retention_days if that is "
        "longer. retention_days must lie between min_expiry_days and max_expiry_days.",
    )
    expire_interval: Seconds = Field(
        300, description="Seconds between sweeps for expired envelopes and orphaned blobs."
    )
    orphan_age: Seconds = Field(
        3600,
        ge=300,
        description="Blobs left by an interrupted sealing are removed after this many seconds. "
        "Must exceed the longest sealing: store.busy_timeout plus two minutes at least.",
    )

    @model_validator(mode="before")
    @classmethod
    def _longest_covers_retention(cls, data: Any) -> Any:
        # A file written before the expiry limits existed keeps working: an unset
        # max_expiry_days never refuses the retention_days it already has.
        if isinstance(data, dict) and "max_expiry_days" not in data:
            retention = data.get("retention_days")
            if isinstance(retention, int) and retention > _LONGEST_EXPIRY:
                data = {**data, "max_expiry_days": retention}
        return data

    @model_validator(mode="after")
    def _expiry_limits(self) -> Envelope:
        if not self.min_expiry_days <= self.retention_days <= self.max_expiry_days:
            raise _invalid(
                "retention_days ({retention}) must lie between min_expiry_days ({shortest}) "
                "and max_expiry_days ({longest})",
                retention=self.retention_days,
                shortest=self.min_expiry_days,
                longest=self.max_expiry_days,
            )
        return self


class Policy(Section):
    """Policy packs decide, per recipient, what is relayed, protected, held or refused."""

    reloadable = _names("packs")
    restart_only = _names("max_attachment_size max_depth time_budget processes")

    @property
    def pack_files(self) -> list[Path]:
        return [path for path in self.packs if path is not None] or [
            SHIPPED_PACKS / "baseline.toml"
        ]

    packs: list[ExistingFile] = Field(
        [],
        description="Policy pack files, applied in this order (later packs refine earlier "
        "ones); check them with `sealgate policy check`. Empty: the baseline pack shipped "
        "with Sealgate (subject tags, X-Sealgate-Protect, sensitivity labels).",
    )
    max_attachment_size: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        le=1 << 31,
        description="Attachments larger than this are not read for detectors; rules that "
        "read content then apply their fallback action.",
    )
    max_depth: int = Field(3, ge=0, le=10, description="Archive and message nesting read.")
    time_budget: Seconds = Field(
        10, description="Seconds to read one message's attachments before the fallback applies."
    )
    processes: int = Field(
        1, ge=1, le=64, description="Helper processes reading attachments (PDF, Office, ZIP)."
    )


class MailAuth(Section):
    """Verifying who sent a message: SPF, DKIM and DMARC, with DNSSEC status, recorded in an
    Authentication-Results header and offered to policies as facts."""

    reloadable = _names(
        "verify authserv_id nameservers port timeout attempts public_suffix_list "
        "trusted_validators mta_sts_port mta_sts_ca_file"
    )

    verify: bool = Field(
        False,
        description="Verify every message. Needs a resolver (dns.nameservers); the supported "
        "setup is a validating unbound on loopback.",
    )
    authserv_id: str = Field(
        "",
        pattern=r"^[A-Za-z0-9.-]*$",
        description="Name in Authentication-Results. Empty: smtp.hostname. Fields claiming it "
        "that arrive from outside are removed.",
    )
    nameservers: list[str] = Field(["127.0.0.1"], description="Resolvers to ask (addresses).")
    port: int = Field(53, ge=1, le=65535, description="Port of the resolvers.")
    timeout: Seconds = Field(5, description="Seconds per query and resolver.")
    attempts: int = Field(2, ge=1, le=5, description="Tries per query and resolver.")
    public_suffix_list: ExistingFile = Field(
        "",
        validate_default=True,
        description="Public suffix list for DMARC's organisational domains, e.g. "
        "/usr/share/publicsuffix/public_suffix_list.dat (Debian's publicsuffix package, "
        "kept current by apt). Empty: the copy packaged with Sealgate's dependencies.",
    )
    trusted_validators: list[Network] = Field(
        [_parse_network(n) for n in LOOPBACK],
        description="Resolvers whose DNSSEC AD bit is believed (as Postfix does for DANE).",
    )
    mta_sts_port: int = Field(
        443, ge=1, le=65535, description="Port for fetching MTA-STS policies; 443 except in tests."
    )
    mta_sts_ca_file: ExistingFile = Field(
        None,
        description="Extra CA certificates (PEM) trusted for MTA-STS policy servers, besides the "
        "system's; for tests with a private CA.",
    )


class DKIMKey(Section):
    """One signing key: the domain it signs for, its selector and its private key file."""

    domain: Hostname = Field(description="Domain the key signs for (d=), e.g. example.org.")
    selector: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*$",
        description="Selector (s=): the key's DNS record is SELECTOR._domainkey.DOMAIN.",
    )
    key_file: ExistingFile = Field(
        description="PEM private key, RSA (2048 bits or more) or Ed25519; make one with "
        "`sealgate dkim-keygen`."
    )


class DKIM(Section):
    """DKIM signatures on everything Sealgate sends itself: notifications and bounces."""

    reloadable = _names("keys sign_relayed")

    keys: list[DKIMKey] = Field(
        [],
        description="Signing keys. Two keys for one domain (RSA and Ed25519) give two "
        "signatures. Mail from a domain without a key leaves unsigned.",
    )
    sign_relayed: bool = Field(
        False,
        description="Also sign the mail Sealgate relays, for domains it holds keys for, after "
        "all its own changes (useful when the MTA in front does not sign).",
    )


class Portal(Section):
    """The recipient portal: where protected recipients verify, read, download and reply.
    Served by `sealgate serve` itself; put TLS here or on a reverse proxy in front
    (docs/portal.md)."""

    reloadable = _names(
        "trusted_proxies session_minutes remember_days code_length code_minutes "
        "code_attempts codes_per_hour link_attempts client_attempts lockout_minutes "
        "backoff_seconds max_reply_size max_request_size access_code_attempts"
    )
    restart_only = _names(
        "url enabled listen tls_certificate tls_key reply_key_file "
        "header_timeout body_timeout body_min_rate max_connections"
    )

    url: PortalURL = Field(
        "http://localhost:8080",
        description="Public base URL of the portal, used in notification links "
        "(https://; plain http only for localhost). Use the organisation's own host name. "
        "Empty: http:// and the loopback address it listens on (development, tests).",
    )
    enabled: bool = Field(True, description="Serve the portal from `sealgate serve`.")
    listen: Address = Field(
        HostPort("127.0.0.1", 8080),
        description="Address the portal listens on (behind a reverse proxy: loopback).",
    )
    tls_certificate: ExistingFile = Field(
        "",
        validate_default=True,
        description="PEM certificate chain for HTTPS served by Sealgate. Empty: plain HTTP "
        "(for a TLS-terminating reverse proxy, or localhost).",
    )
    tls_key: ExistingFile = Field(
        "", validate_default=True, description="PEM private key of tls_certificate."
    )
    trusted_proxies: list[Network] = Field(
        [],
        description="Reverse proxies whose X-Forwarded-For names the client (for per-client "
        "limits). Empty: the connecting address is the client.",
    )
    session_minutes: int = Field(
        30, ge=1, le=1440, description="Minutes a verified browser may read without a new code."
    )
    remember_days: int = Field(
        30,
        ge=0,
        le=365,
        description='Days "remember this device" spares a recipient new codes; 0 turns it off.',
    )
    code_length: int = Field(6, ge=6, le=10, description="Digits in a one-time code.")
    code_minutes: int = Field(10, ge=1, le=60, description="Minutes a one-time code is valid.")
    code_attempts: int = Field(
        5,
        ge=1,
        le=20,
        description="Tries that spend a one-time code; an entry is a try at every code of "
        "the link that is still valid.",
    )
    codes_per_hour: int = Field(
        5,
        ge=1,
        le=100,
        description="Codes one link may have sent within any hour (a rolling hour); the codes "
        "sent keep working until they expire.",
    )
    link_attempts: int = Field(
        10,
        ge=1,
        le=1000,
        description="Wrong access codes per link per hour before access-code entry is locked "
        "for lockout_minutes (emailed and SMS codes are limited per code instead).",
    )
    access_code_attempts: int = Field(
        10,
        ge=1,
        le=100,
        description="Wrong access codes one link may have over the message's life; then "
        "access-code entry closes for that link (emailed and SMS codes keep working).",
    )
    client_attempts: int = Field(
        30,
        ge=1,
        le=10000,
        description="Wrong codes per client address per hour before it is locked.",
    )
    lockout_minutes: int = Field(
        60, ge=1, le=1440, description="Minutes a locked link or client waits."
    )
    backoff_seconds: Annotated[float, SECONDS] = Field(
        1.0,
        ge=0,
        le=60,
        description="Wait after a wrong code, doubled with every further one (0: none).",
    )
    reply_key_file: OptionalPath = Field(
        "",
        validate_default=True,
        description="PEM RSA private key that secure replies are encrypted to in the "
        "browser. Empty: DIRECTORY/reply-key.pem under store.directory, made on first start.",
    )
    max_reply_size: int = Field(
        36 * 1024 * 1024,
        ge=64 * 1024,
        le=1 << 30,
        description="Largest encrypted reply accepted (bytes; attachments count about 4/3).",
    )
    max_request_size: int = Field(
        64 * 1024, ge=1024, le=1 << 20, description="Largest other request body (bytes)."
    )
    header_timeout: Seconds = Field(
        10,
        description="Seconds a client has to send a request's headers, from connecting or "
        "from a later request's first byte; then it gets 408 and is disconnected.",
    )
    body_timeout: Seconds = Field(
        30,
        description="Seconds a request body may take before body_min_rate counts; a slower "
        "body gets 408 and is disconnected.",
    )
    body_min_rate: int = Field(
        10_000,
        ge=1,
        le=1 << 30,
        description="Bytes per second of a request body that each earn it a second more "
        "than body_timeout (a 36 MB reply may take an hour at this rate, a trickle cannot).",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=60_000,
        description="Connections one process keeps open to the portal; more get 503 and are "
        "closed at once (file descriptors are shared with SMTP and the database).",
    )


class SMS(Section):
    """Text-message codes. The policy decides who may receive them (verify = [..., "sms"])."""

    reloadable = _names("provider webhook_url webhook_token_file sender_id timeout")

    provider: Literal["none", "webhook", "outbox"] = Field(
        "none",
        description='"webhook": POST JSON {to, text, sender} to webhook_url; "outbox": write '
        'each text into dev_outbox.directory (development only); "none": no SMS codes.',
    )
    webhook_url: str = Field(
        "", pattern=r"^(https://\S+)?$", description="HTTPS endpoint of the SMS provider."
    )
    webhook_token_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="File holding the bearer token sent to webhook_url (never in this file).",
    )
    sender_id: str = Field(
        "Sealgate", max_length=11, description="Sender name the text message shows."
    )
    timeout: Seconds = Field(10, description="Seconds to wait for the provider.")


SecondFactor = Literal["totp", "sms", "passkey"]


class Accounts(Section):
    """Accounts in the portal (docs/accounts.md): the second factors people may choose,
    and how long a sign-in lasts."""

    reloadable = _names("factors idle_minutes session_hours")

    factors: list[SecondFactor] = Field(
        ["totp", "sms", "passkey"],
        min_length=1,
        description='Second factors an account may use: "totp" (an authenticator app), '
        '"sms" (a code by text, when [sms] has a provider), "passkey". Sign-up needs "totp" '
        'or "sms"; a factor taken off this list no longer signs in (recovery codes still do).',
    )
    idle_minutes: int = Field(
        30, ge=5, le=24 * 60, description="An account session ends after this long unused."
    )
    session_hours: int = Field(
        12, ge=1, le=30 * 24, description="An account session ends this long after sign-in."
    )

    @field_validator("factors")
    @classmethod
    def _sign_up_possible(cls, value: list[str]) -> list[str]:
        if "totp" not in value and "sms" not in value:
            raise _invalid('needs "totp" or "sms": a passkey is added after sign-up')
        return list(dict.fromkeys(value))


_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class SSOProvider(Section):
    """One OpenID Connect identity provider the organisation's people sign in with."""

    name: str = Field(
        description="Short name, in the portal's URLs (`/sso/NAME`): lower-case letters, "
        "digits and dashes.",
    )
    title: str = Field(
        "", max_length=60, description='Button text: "Sign in with TITLE". Empty: the name.'
    )
    issuer: str = Field(
        description="The provider's issuer URL (https://); its "
        "/.well-known/openid-configuration is read at the first sign-in.",
    )
    client_id: str = Field(min_length=1, description="Sealgate's client id at the provider.")
    client_secret_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="File holding the client secret (never in this file). Empty: a public "
        "client (PKCE only).",
    )
    domains: list[str] = Field(
        min_length=1,
        description="Mail domains whose people this provider signs in: an ID token with an "
        "address outside them is refused.",
    )
    key_claim: str = Field(
        "sealgate_key_secret",
        min_length=1,
        description="ID-token claim with the person's key secret (docs/identity.md): at least "
        "32 characters, random, released to Sealgate only.",
    )
    previous_key_claim: str = Field(
        "sealgate_key_secret_previous",
        description="ID-token claim with the secret before a rotation: while it is released, "
        "the account's key moves to the new secret at sign-in. Empty: none.",
    )
    scopes: list[str] = Field(
        ["openid", "email", "profile"],
        description='Scopes asked for; "openid" is always sent. Add the scope under which the '
        "provider releases key_claim.",
    )
    ca_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="CA certificates to trust for this provider's HTTPS (an internal CA). "
        "Empty: the system's.",
    )
    timeout: Seconds = Field(10, description="Seconds to wait for the provider.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _PROVIDER_NAME.fullmatch(value):
            raise _invalid("lower-case letters, digits and dashes, at most 32")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise _invalid("must be an https:// URL (plain http only on loopback, for tests)")
        if parts.query or parts.fragment:
            raise _invalid("must not have a query or a fragment")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [domain.strip().lower().lstrip("@") for domain in value]


class SSO(Section):
    """Single sign-on for the organisation's people, with OpenID Connect (docs/identity.md)."""

    reloadable = _names("providers")

    providers: list[SSOProvider] = Field([], description="Identity providers, one table each.")

    @field_validator("providers")
    @classmethod
    def _unique(cls, value: list[SSOProvider]) -> list[SSOProvider]:
        names = [provider.name for provider in value]
        if len(set(names)) != len(names):
            raise _invalid("two providers have the same name")
        return value


class Scim(Section):
    """Provisioning from the organisation's directory: a SCIM 2.0 service provider at
    /scim/v2 on the portal, for Entra ID, Okta or a directory sync tool. Deactivating a
    person there ends their sessions and their sign-in at once (docs/identity.md)."""

    reloadable = _names("enabled token_file token_attempts lockout_minutes max_request_size")

    enabled: bool = Field(
        False, description="Serve SCIM at /scim/v2 on the portal (needs token_file)."
    )
    token_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="File holding the bearer token the identity provider sends, at least "
        "32 characters (never in this file; e.g. `openssl rand -base64 32`).",
    )
    token_attempts: int = Field(
        10,
        ge=1,
        le=1000,
        description="Requests with a wrong or missing token per client address per hour "
        "before that client is locked out for lockout_minutes.",
    )
    lockout_minutes: int = Field(
        60, ge=1, le=1440, description="Minutes a client locked out for wrong tokens waits."
    )
    max_request_size: int = Field(
        1 << 20,
        ge=64 * 1024,
        le=16 << 20,
        description="Largest SCIM request body (bytes): a group sent whole with its members.",
    )


def _parse_colour(value: Any) -> str:
    if not isinstance(value, str) or not _COLOUR.fullmatch(value):
        raise _invalid('expected a colour "#rrggbb", got {value}', value=_toml(value))
    return value.lower()


_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
Colour = Annotated[str, PlainValidator(_parse_colour)]
Language = Literal["en", "nl"]


class Notify(Section):
    """Notifications to protected recipients, and messages to their senders."""

    reloadable = _names(
        "from_address reply_to organisation logo_file colour language default_language "
        "domain_languages subject_en subject_nl receipt read_notice allow_note max_note_length"
    )

    from_address: str = Field(
        "",
        description="From address of notifications, of the organisation's own domain (so "
        "they pass DMARC with the [dkim] key). Empty: sealgate@ plus smtp.hostname.",
    )
    reply_to: str = Field(
        "sender",
        description='Reply-To of notifications: "sender" (the original sender), "none", or '
        "an address.",
    )
    organisation: str = Field(
        "Sealgate", min_length=1, max_length=80, description="Name shown in mail and pages."
    )
    logo_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="Logo (PNG, JPEG or SVG, at most 256 KiB) shown on the portal and, "
        "served from the portal at /assets/logo, in notifications. Empty: the name only.",
    )
    colour: Colour = Field("#0b5cad", description="Brand colour (#rrggbb) of mail and pages.")
    language: Literal["auto", "en", "nl"] = Field(
        "auto",
        description='"auto": the sender\'s Content-Language, else domain_languages, else '
        "default_language.",
    )
    default_language: Language = Field("en", description="Language when nothing else decides.")
    domain_languages: dict[str, Language] = Field(
        {"nl": "nl", "be": "nl"},
        description="Recipient domain or suffix -> language, the longest match wins.",
    )
    subject_en: str = Field(
        "",
        max_length=200,
        description="English subject template (Jinja2: sender, sender_name, organisation, "
        "subject). Empty: the default, which does not reveal the original subject.",
    )
    subject_nl: str = Field("", max_length=200, description="Dutch subject template.")
    receipt: bool = Field(
        False,
        description='Send the sender a "sent securely" receipt with a revoke link.',
    )
    read_notice: bool = Field(
        False, description="Tell the sender when a recipient first opens the message."
    )
    allow_note: bool = Field(
        True,
        description="Show the sender's personal note (X-Sealgate-Note) in notifications, as "
        "plain text marked as the sender's words, without links. false: the field is "
        "still removed, and not shown.",
    )
    max_note_length: int = Field(
        500,
        ge=20,
        le=2000,
        description="Characters of a note shown; a longer one is cut, with an ellipsis.",
    )


def _parse_ldap_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("expected a URL string, got {value}", value=_toml(value))
    if value == "":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
        raise _invalid(
            '"{value}" must be ldaps://HOST[:PORT] (TLS from the start) or ldap://HOST[:PORT] '
            "(StartTLS, required)",
            value=value,
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        raise _invalid('"{value}": the port is not a number', value=value) from None
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise _invalid(
            '"{value}": only scheme, host and port; the base DN goes in directory.base_dn',
            value=value,
        )
    return value


LDAPURL = Annotated[str, PlainValidator(_parse_ldap_url)]


class Directory(Section):
    """Provisioning from Active Directory or OpenLDAP by `sealgate directory sync`
    (docs/identity.md): people and groups are read over TLS with a service account, and
    only the changes since the last run are applied. The command reads this section
    each time it runs."""

    reloadable = _names(
        "url kind ca_file bind_dn password_file base_dn user_filter group_filter "
        "disabled_attribute max_disable_share timeout"
    )

    url: LDAPURL = Field(
        "",
        description='The directory server: "ldaps://dc1.example.org" (TLS from the start, '
        'port 636) or "ldap://dc1.example.org" (port 389 and StartTLS, which is then '
        "required). Plain LDAP is never used. Empty: no directory sync.",
    )
    kind: Literal["ad", "openldap"] = Field(
        "ad",
        description='"ad": Active Directory or Samba (objectGUID, uSNChanged, '
        'userAccountControl, Deleted Objects); "openldap": entryUUID, modifyTimestamp.',
    )
    ca_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="PEM bundle of the CAs that issued the server's certificate. Empty: the "
        "system's CAs. The certificate must name the host of `url`.",
    )
    bind_dn: str = Field(
        "",
        description="DN of the service account that reads the directory, e.g. "
        '"CN=svc-sealgate,OU=Service Accounts,DC=example,DC=org".',
    )
    password_file: ExistingFile = Field(
        "",
        validate_default=True,
        description="File holding the service account's password on its first line.",
    )
    base_dn: str = Field(
        "", description='Where people and groups are searched, e.g. "DC=example,DC=org".'
    )
    user_filter: str = Field(
        "",
        description="LDAP filter for the people to provision. Empty: "
        '"(&(objectCategory=person)(objectClass=user)(mail=*))" for AD, '
        '"(&(objectClass=inetOrgPerson)(mail=*))" for OpenLDAP.',
    )
    group_filter: str = Field(
        "",
        description='LDAP filter for the groups. Empty: "(objectClass=group)" for AD, '
        '"(objectClass=groupOfNames)" for OpenLDAP.',
    )
    disabled_attribute: str = Field(
        "",
        pattern=r"^[A-Za-z][A-Za-z0-9-]*$|^$",
        description="OpenLDAP only: a person who has this attribute is inactive, unless its "
        'value is "FALSE" or "0" (e.g. "pwdAccountLockedTime" of the ppolicy overlay, '
        'or "nsAccountLock"). Empty: everyone found is active. Active Directory uses '
        "userAccountControl's ACCOUNTDISABLE flag.",
    )
    max_disable_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Largest share of the active people that one sync may deactivate or "
        "delete; a sync that would do more is refused unless run with --force (a wrong "
        "filter or base DN looks like everyone leaving).",
    )
    timeout: Seconds = Field(30, description="Seconds to connect, and to wait for each answer.")

    @model_validator(mode="after")
    def _complete(self) -> Directory:
        if not self.url:
            return self
        missing = [
            name
            for name in ("bind_dn", "password_file", "base_dn")
            if getattr(self, name) in ("", None)
        ]
        if missing:
            raise _invalid("url is set, so set {names} too", names=", ".join(missing))
        if self.kind == "ad" and self.disabled_attribute:
            raise _invalid(
                'disabled_attribute is for kind = "openldap"; Active Directory says who is '
                "disabled in userAccountControl"
            )
        return self

    @property
    def people_filter(self) -> str:
        default = {
            "ad": "(&(objectCategory=person)(objectClass=user)(mail=*))",
            "openldap": "(&(objectClass=inetOrgPerson)(mail=*))",
        }
        return self.user_filter or default[self.kind]

    @property
    def groups_filter(self) -> str:
        default = {"ad": "(objectClass=group)", "openldap": "(objectClass=groupOfNames)"}
        return self.group_filter or default[self.kind]

    def read_password(self) -> str:
        """The service account's password (the first line of `password_file`)."""
        assert self.password_file is not None
        lines = self.password_file.read_text().splitlines()
        return lines[0] if lines else ""


class Config(Section):
    """Sealgate's configuration."""

    smtp: SMTP = _section()
    upstream: Upstream = _section()
    loop: Loop = _section()
    log: Log = _section()
    service: Service = _section()
    dev_outbox: DevOutbox = _section()
    store: Store = _section()
    envelope: Envelope = _section()
    policy: Policy = _section()
    dkim: DKIM = _section()
    mailauth: MailAuth = _section()
    portal: Portal = _section()
    sms: SMS = _section()
    accounts: Accounts = _section()
    sso: SSO = _section()
    directory: Directory = _section()
    notify: Notify = _section()
    scim: Scim = _section()

    @model_validator(mode="after")
    def _orphans_outlive_a_sealing(self) -> Config:
        # A sealing waits up to busy_timeout for the database; its blobs must not
        # look orphaned meanwhile.
        if self.envelope.orphan_age < self.store.busy_timeout + 120:
            raise _invalid(
                "envelope.orphan_age: must be at least store.busy_timeout + 120 seconds, "
                "or the sweeper could remove the blobs of a sealing in progress"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Config:
        if (self.portal.tls_certificate is None) != (self.portal.tls_key is None):
            raise _invalid("portal.tls_certificate and portal.tls_key: set both or neither")
        return self

    @model_validator(mode="after")
    def _scim_complete(self) -> Config:
        if self.scim.enabled and self.scim.token_file is None:
            raise _invalid("scim.token_file: required when scim.enabled is true")
        if self.scim.enabled and not self.portal.enabled:
            raise _invalid("scim.enabled: SCIM is served by the portal; set portal.enabled")
        return self

    @model_validator(mode="after")
    def _webhook_complete(self) -> Config:
        if self.sms.provider == "webhook" and not self.sms.webhook_url:
            raise _invalid('sms.webhook_url: required when sms.provider is "webhook"')
        return self

    @model_validator(mode="after")
    def _text_codes_sent(self) -> Config:
        if self.accounts.factors == ["sms"] and self.sms.provider == "none":
            raise _invalid(
                'accounts.factors: only "sms", but sms.provider is "none": nobody could sign up'
            )
        return self


def deprecations(section: Section, prefix: str = "") -> list[str]:
    """Warnings for every deprecated option the file sets (left out, it warns nothing)."""
    warnings = []
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Section):
            warnings += deprecations(value, f"{prefix}{name}.")
        elif name in type(section).deprecated and name in section.model_fields_set:
            warnings.append(f"{prefix}{name}: deprecated: {type(section).deprecated[name]}")
    return warnings


def reloaded(running: Config, new: Config) -> tuple[Config, list[str]]:
    """What a reload applies: ``new`` with every restart-only option kept at its running
    value (none is applied in part), and the restart-only options whose value changed,
    by name. An option its table does not classify counts as restart-only."""
    merged, changed = _keep_restart_only(running, new, "")
    assert isinstance(merged, Config)
    return merged, changed


def _keep_restart_only(running: Section, new: Section, prefix: str) -> tuple[Section, list[str]]:
    update: dict[str, Any] = {}
    changed: list[str] = []
    for name in type(new).model_fields:
        old_value, new_value = getattr(running, name), getattr(new, name)
        path = f"{prefix}{name}"
        if isinstance(new_value, Section):
            update[name], below = _keep_restart_only(old_value, new_value, f"{path}.")
            changed += below
        elif name not in type(new).reloadable and old_value != new_value:
            update[name] = old_value
            changed.append(path)
    return new.model_copy(update=update), changed


def load(path: str | Path) -> Config:
    """Read and validate a configuration file; raise :class:`ConfigError` with every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [f"not valid TOML: {error}"]) from None
    return parse(data, source=str(path), base_dir=path.resolve().parent)


def parse(
    data: dict[str, Any], *, source: str = "<config>", base_dir: Path | None = None
) -> Config:
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise ConfigError(source, describe(error, data)) from None


def describe(error: ValidationError, data: dict[str, Any]) -> list[str]:
    """One line per problem: ``key.path: what is wrong``."""
    return [_describe_one(item, data) for item in error.errors(include_url=False)]


def _describe_one(item: Any, data: dict[str, Any]) -> str:
    loc = tuple(item["loc"])
    kind = item["type"]
    path = key_path(loc)
    if kind == "extra_forbidden":
        return f"{path}: unknown option{_suggestion(loc)}"
    if kind == "missing":
        return f"{path}: required option is missing"
    shown = _toml(item.get("input"))
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"{path}: expected an integer, got {shown}"
    if kind in {"float_type", "float_parsing"}:
        return f"{path}: expected a number, got {shown}"
    if kind == "bool_type":
        return f"{path}: expected true or false, got {shown}"
    if kind == "string_type":
        return f"{path}: expected a string, got {shown}"
    if kind in {"tuple_type", "list_type"}:
        return f"{path}: expected a list, got {shown}"
    if kind in {"model_type", "model_attributes_type", "dataclass_type"}:
        return f"{path}: expected a table, got {shown}"
    if kind == "literal_error":
        expected = str(item["ctx"]["expected"]).replace("'", '"')
        return f"{path}: must be one of {expected}, got {shown}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bound = next(iter(item["ctx"].values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        words = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        return f"{path}: must be {words} {bound}, got {shown}"
    if not loc:  # a check across sections names its keys itself
        return str(item["msg"])
    return f"{path}: {item['msg']}"


def key_path(loc: Iterable[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
        else:
            parts.append(str(part))
    return ".".join(parts) or "(top level)"


def _suggestion(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_of(field.annotation) if field else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _toml(value: Any) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
