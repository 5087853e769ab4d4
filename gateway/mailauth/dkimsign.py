"""DKIM signing of the mail Sealgate originates (RFC 6376, RFC 8463, RFC 8301).

Notifications, bounces and code e-mails leave with one DKIM-Signature per key held for
their From domain: RSA-SHA256 (RFC 6376 §3.3) and, when configured, Ed25519-SHA256
(RFC 8463) as a second signature. Every signature uses relaxed/relaxed canonicalisation
(RFC 6376 §3.4.2, §3.4.4), a ``t=`` timestamp and no ``l=`` (§8.2), and signs the header
fields in :data:`SIGNED_HEADERS` that are present, with From listed once more than it occurs
("oversigned", §5.4.2, §8.15): an added From field then breaks the signature.

Division of labour with dkimpy: the message parsing, both canonicalisations, the selection of
header fields, the hashing of the signature field with an empty ``b=`` and the folding of the
field are dkimpy's own functions (``rfc822_parse``, ``CanonicalizationPolicy``,
``hash_headers``, ``RE_BTAG``, ``fold``: module-level helpers, not in its ``__all__``, the
ones its verifier uses), and the tag list has the layout of ``dkim.DKIM.sign``. Only the
private-key operation differs. dkimpy computes RSA in pure Python (about 6 ms a signature,
against 0.3-0.6 ms here: bench/dkimsign.py) and needs PyNaCl for Ed25519, and its
``DomainSigner.gen_header`` calls both directly, with no hook. Here the SHA-256 hash of the
canonicalised header data goes to OpenSSL through ``cryptography``: RSASSA-PKCS1-v1_5 over a
prehashed SHA-256 digest (RFC 6376 §3.3.1, RFC 8017 §8.2) and PureEdDSA Ed25519 over the
32-byte digest itself (RFC 8463 §3). Nothing in dkimpy is patched; tests/test_dkimsign.py
reproduces RFC 8463 Appendix A's signatures exactly, so a change in those helpers shows.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

log = logging.getLogger("sealgate.mailauth.dkimsign")

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
KeyKind = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: Header fields signed when present (RFC 6376 §5.4.1 recommends this kind of list).
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "auto-submitted",
)
#: Header fields listed in ``h=`` once more than they occur (RFC 6376 §5.4.2).
OVERSIGNED_HEADERS: tuple[str, ...] = ("from",)

#: RSA key sizes: RFC 8301 §3.2 (signers MUST use >= 1024 bits and SHOULD use >= 2048;
#: verifiers MUST handle up to 4096, so a larger key may not verify everywhere).
RSA_MIN_BITS = 1024
RSA_RECOMMENDED_BITS = 2048
RSA_MAX_BITS = 4096

_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_FIELD_NAME = b"DKIM-Signature"
# RFC 6376 §3.1: a selector is one or more DNS labels; §3.5 d= is a domain name (A-labels).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 §3.6.8 ftext


class DKIMKeyError(ValueError):
    """A DKIM private key that cannot be used; the message names the file when there is one."""


class SigningError(ValueError):
    """The message cannot be DKIM-signed as it is: unparseable header, no single From domain."""


def _ascii_domain(domain: str) -> str:
    """``domain`` as DKIM's ``d=`` carries it: lower case, A-labels, no trailing dot.

    Raises ValueError when it is not a domain name of at least two labels.
    """
    name = domain.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"not a valid domain name: {domain!r}") from None
    if not _DOMAIN.match(name):
        raise ValueError(f"not a valid domain name: {domain!r}")
    return name


@dataclass(frozen=True)
class SigningKey:
    """One DKIM private key: the ``d=`` domain and ``s=`` selector it signs for.

    ``domain`` is stored normalised (lower case, A-labels). The key's public half must be
    published as :meth:`dns_record` at ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.2.1).
    """

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", _ascii_domain(self.domain))
        if not _SELECTOR.match(self.selector):
            raise ValueError(f"not a valid DKIM selector: {self.selector!r}")
        if self.algorithm == "rsa-sha256":
            if not isinstance(self.private_key, rsa.RSAPrivateKey):
                raise DKIMKeyError("rsa-sha256 needs an RSA private key")
            _check_rsa_size(self.private_key.key_size, f"{self.selector}._domainkey.{self.domain}")
        elif self.algorithm == "ed25519-sha256":
            if not isinstance(self.private_key, ed25519.Ed25519PrivateKey):
                raise DKIMKeyError("ed25519-sha256 needs an Ed25519 private key")
        else:
            raise ValueError(f"unknown DKIM algorithm: {self.algorithm!r}")

    @classmethod
    def from_pem(
        cls, domain: str, selector: str, pem: bytes, *, source: str = "PEM data"
    ) -> SigningKey:
        """A key from an unencrypted PEM private key (PKCS#8, or PKCS#1 for RSA).

        The algorithm follows from the key: RSA gives rsa-sha256 (at least
        :data:`RSA_MIN_BITS` and at most :data:`RSA_MAX_BITS` bits, with a warning in the log
        below :data:`RSA_RECOMMENDED_BITS`), Ed25519 gives ed25519-sha256. Errors are
        :class:`DKIMKeyError` and begin with ``source``.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise DKIMKeyError(
                f"{source}: the private key is encrypted; DKIM keys must be stored unencrypted "
                "(protect the file with its permissions)"
            ) from None
        except (ValueError, UnsupportedAlgorithm) as error:
            raise DKIMKeyError(f"{source}: not a usable PEM private key ({error})") from None
        algorithm: Algorithm
        if isinstance(key, rsa.RSAPrivateKey):
            algorithm = "rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            algorithm = "ed25519-sha256"
        else:
            raise DKIMKeyError(
                f"{source}: only RSA (rsa-sha256, RFC 6376) and Ed25519 (ed25519-sha256, "
                f"RFC 8463) keys can sign DKIM, not {type(key).__name__}"
            )
        try:
            return cls(domain, selector, algorithm, key)
        except DKIMKeyError as error:
            raise DKIMKeyError(f"{source}: {error}") from None

    @classmethod
    def from_pem_file(cls, domain: str, selector: str, path: Path) -> SigningKey:
        """A key from a PEM file, as :meth:`from_pem`; errors name the file."""
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise DKIMKeyError(f"{path}: cannot read the DKIM key ({error.strerror})") from None
        return cls.from_pem(domain, selector, pem, source=str(path))

    @property
    def dns_name(self) -> str:
        """Where the key record lives: ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record value to publish at :attr:`dns_name` (RFC 6376 §3.6.1).

        RSA: ``p=`` is the DER SubjectPublicKeyInfo in base64; Ed25519: the raw 32-byte public
        key in base64 (RFC 8463 §4.2). An RSA-2048 record is longer than 255 bytes, so the DNS
        zone must split it into several character-strings of one TXT record.
        """
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            kind = "rsa"
            data = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            kind = "ed25519"
            data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k={kind}; p={base64.b64encode(data).decode('ascii')}"

    def _sign_digest(self, digest: bytes) -> bytes:
        """The ``b=`` signature of the SHA-256 digest of the canonicalised header data."""
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            # RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 with SHA-256 (EMSA-PKCS1-v1_5 DigestInfo).
            return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        # RFC 8463 §3: PureEdDSA Ed25519 over the SHA-256 hash, not over the data.
        return key.sign(digest)


def _check_rsa_size(bits: int, name: str) -> None:
    if bits < RSA_MIN_BITS:
        raise DKIMKeyError(
            f"the RSA key has {bits} bits; DKIM signers must use at least {RSA_MIN_BITS} "
            f"(RFC 8301 §3.2), and {RSA_RECOMMENDED_BITS} is recommended"
        )
    if bits > RSA_MAX_BITS:
        raise DKIMKeyError(
            f"the RSA key has {bits} bits; verifiers need only handle up to {RSA_MAX_BITS} "
            "(RFC 8301 §3.2), so signatures may not verify"
        )
    if bits < RSA_RECOMMENDED_BITS:
        log.warning(
            "DKIM key %s: RSA key of %d bits; RFC 8301 §3.2 recommends at least %d",
            name,
            bits,
            RSA_RECOMMENDED_BITS,
        )


def generate_key(kind: KeyKind, bits: int = 2048) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM; ``bits`` applies to RSA only."""
    key: PrivateKey
    if kind == "rsa":
        if not RSA_RECOMMENDED_BITS <= bits <= RSA_MAX_BITS:
            raise ValueError(
                f"RSA DKIM keys must have {RSA_RECOMMENDED_BITS} to {RSA_MAX_BITS} bits"
            )
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown DKIM key type: {kind!r} (rsa or ed25519)")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Signer:
    """Signs messages with the keys held for their domain; safe to share between threads.

    ``keys`` may hold several keys for one domain (typically RSA and Ed25519, with different
    selectors): each gives its own DKIM-Signature. ``signed_headers`` and ``oversigned`` are
    lower-case field names and must both contain ``from`` (RFC 6376 §5.4: From MUST be
    signed). ``clock`` gives the ``t=`` timestamp (RFC 6376 §3.5).
    """

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        signed_headers: Sequence[str] = SIGNED_HEADERS,
        oversigned: Sequence[str] = OVERSIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        by_domain: dict[str, list[SigningKey]] = {}
        seen: set[str] = set()
        for key in keys:
            if key.dns_name in seen:
                raise ValueError(f"two DKIM keys for {key.dns_name}")
            seen.add(key.dns_name)
            by_domain.setdefault(key.domain, []).append(key)
        self._keys = {domain: tuple(held) for domain, held in by_domain.items()}
        self._signed = _header_names(signed_headers, "signed_headers")
        self._oversigned = _header_names(oversigned, "oversigned")
        self._clock = clock

    def sign(self, message: bytes, *, domain: str | None = None) -> bytes:
        """The DKIM-Signature header field(s) to put in front of ``message``.

        The signing domain is ``domain`` when given (e.g. relayed mail signed for a domain we
        hold keys for), else the domain of the message's From address. Returns the fields,
        each ending with the message's own line ending (CRLF or LF, taken from its first
        line), in the order of the keys; prepending them leaves the message otherwise
        byte-for-byte as signed. Returns ``b""`` when no key is held for the domain: sending
        unsigned or not is the caller's decision.

        Raises :class:`SigningError` when the header cannot be parsed, when there is not
        exactly one From field (RFC 5322 §3.6), or, without ``domain``, when the From field
        does not name exactly one domain. Pure computation: no I/O, no shared mutable state.
        """
        try:
            headers, body = dkim.rfc822_parse(message)
        except dkim.MessageFormatError:
            raise SigningError("cannot parse the message header") from None  # may quote it
        from_fields = [value for name, value in headers if name.lower() == b"from"]
        if len(from_fields) != 1:
            raise SigningError(f"the message has {len(from_fields)} From fields, not one")
        try:
            signing_domain = _ascii_domain(
                domain if domain is not None else _from_domain(from_fields[0])
            )
        except ValueError as error:
            raise SigningError(str(error)) from None
        keys = self._keys.get(signing_domain)
        if not keys:
            return b""

        # RFC 6376 §3.7: every signature here uses relaxed/relaxed and SHA-256, so the body
        # hash, the canonicalised fields and the h= list are computed once for all of them.
        body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest())
        canonical = _RELAXED.canonicalize_headers(headers)
        include = self._include(headers)
        timestamp = str(int(self._clock())).encode("ascii")
        newline = message.find(b"\n")
        linesep = b"\r\n" if newline > 0 and message[newline - 1] == 0x0D else b"\n"
        return b"".join(
            _signature_field(key, canonical, include, body_hash, timestamp, linesep) for key in keys
        )

    def _include(self, headers: list[list[bytes]]) -> tuple[bytes, ...]:
        """The ``h=`` list: each signed field as often as present, then the oversigned once."""
        counts: dict[bytes, int] = {}
        for name, _value in headers:
            lower = name.lower()
            counts[lower] = counts.get(lower, 0) + 1
        include = [name for name in self._signed for _ in range(counts.get(name, 0))]
        return (*include, *self._oversigned)


def _header_names(names: Sequence[str], what: str) -> tuple[bytes, ...]:
    encoded = []
    for name in names:
        if not name.isascii() or not _HEADER_NAME.match(name) or name != name.lower():
            raise ValueError(f"{what}: not a lower-case header field name: {name!r}")
        if name == "dkim-signature":
            raise ValueError(f"{what}: DKIM-Signature fields are never signed (RFC 6376 §5.4)")
        encoded.append(name.encode("ascii"))
    if len(set(encoded)) != len(encoded):
        raise ValueError(f"{what}: a header field name is listed twice")
    if b"from" not in encoded:
        raise ValueError(f"{what} must contain 'from' (RFC 6376 §5.4)")
    return tuple(encoded)


def _from_domain(value: bytes) -> str:
    """The one domain of the mailbox(es) in a From field's value."""
    text = re.sub(r"\r?\n", "", value.decode("utf-8", "replace"))
    domains = {
        address.rpartition("@")[2].rstrip(".").lower()
        for _name, address in email.utils.getaddresses([text])
        if "@" in address
    }
    if len(domains) != 1:
        raise ValueError(f"the From field names {len(domains)} domains; pass the domain to sign")
    return domains.pop()


def _signature_field(
    key: SigningKey,
    canonical: list[tuple[bytes, bytes]],
    include: tuple[bytes, ...],
    body_hash: bytes,
    timestamp: bytes,
    linesep: bytes,
) -> bytes:
    """One DKIM-Signature field, laid out as ``dkim.DKIM.sign`` lays it out (RFC 6376 §3.5)."""
    domain = key.domain.encode("ascii")
    fields = [
        (b"v", b"1"),
        (b"a", key.algorithm.encode("ascii")),
        (b"c", b"relaxed/relaxed"),
        (b"d", domain),
        (b"i", b"@" + domain),
        (b"q", b"dns/txt"),
        (b"s", key.selector.encode("ascii")),
        (b"t", timestamp),
        (b"h", b" : ".join(include)),
        (b"bh", body_hash),
        # A placeholder as long as a short signature pushes b= onto a line of its own, so
        # folding the field again with the real value leaves every earlier fold in place.
        (b"b", b"0" * 60),
    ]
    # RFC 6376 §3.7: the signature field itself is hashed last, with b= empty and no CRLF.
    unsigned = dkim.fold(
        b"; ".join(b"=".join(tag) for tag in fields), namelen=len(_FIELD_NAME), linesep=b"\r\n"
    )
    unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher, _RELAXED, canonical, list(include), (_FIELD_NAME, b" " + unsigned), {}
    )
    fields[-1] = (b"b", base64.b64encode(key._sign_digest(hasher.digest())))
    value = b"; ".join(b"=".join(tag) for tag in fields) + linesep
    folded: bytes = dkim.fold(value, namelen=len(_FIELD_NAME), linesep=linesep)
    return _FIELD_NAME + b": " + folded
