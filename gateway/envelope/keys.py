"""The key hierarchy: content key, reader wrappings, key-encryption keys.

    content key K (random, per envelope)
      ├─ guest (format v2): wrapped with AES-256-GCM under a wrapping key
      │    W = HKDF-SHA256(link secret, info = "sealgate v2 guest wrap" || link id),
      │    the envelope id and reader id in the AAD; no key pair at all
      └─ account, organisation keys: wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256,
           empty label) to the key pair's public key
    account private key (PKCS#8 DER)
      └─ encrypted with AES-256-GCM under a key-encryption key (KEK) that the
         server never stores:
           master = PBKDF2-SHA256(password, salt, >= 600,000 rounds)
           KEK    = HKDF-SHA256(master, info = "... account kek")
           login  = HKDF-SHA256(master, info = "... account login")
           the server keeps only an Argon2id hash of ``login``.

Format v1 guests, still readable until their envelopes expire, had a key pair of
their own: K wrapped to it with RSA-OAEP, its private key encrypted under
KEK = HKDF-SHA256(link secret, info = "sealgate v1 guest kek" || link id).

Every primitive here exists in WebCrypto, so a browser can walk the same path
(docs/envelope-format.md). The link secret travels only in the fragment of
the notification link, which browsers do not send to the server; the server
looks readers up by the SHA-256 of the link id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

KEY_SIZE = 32
ID_SIZE = 16
NONCE_SIZE = 12
PRIVATE_KEY_VERSION = b"\x01"
PBKDF2_MIN_ITERATIONS = 600_000
RSA_SIZES = (2048, 3072, 4096)

GUEST_WRAP_VERSION = 2
GUEST_WRAPPED_SIZE = 1 + NONCE_SIZE + KEY_SIZE + 16  # version, nonce, K, tag: 61 bytes

_GUEST_KEK_INFO = b"sealgate v1 guest kek"
_GUEST_WRAP_INFO = b"sealgate v2 guest wrap"
_GUEST_WRAP_AAD = b"sealgate v2 content key "
_ACCOUNT_KEK_INFO = b"sealgate v1 account kek"
_ACCOUNT_LOGIN_INFO = b"sealgate v1 account login"
_PRIVATE_KEY_AAD = b"sealgate v1 private key "
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class UnlockError(Exception):
    """A key could not be unwrapped or decrypted: wrong secret, wrong password or tampering."""


def random_bytes(size: int = KEY_SIZE) -> bytes:
    return os.urandom(size)


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(ikm)


def oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# --- wrapping the content key -------------------------------------------------


def wrap_content_key(public_key_der: bytes, content_key: bytes) -> bytes:
    """RSA-OAEP-SHA256 encryption of K to one reader's public key (DER SubjectPublicKeyInfo)."""
    public_key = serialization.load_der_public_key(public_key_der)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("reader key is not an RSA key")
    return public_key.encrypt(content_key, oaep())


def unwrap_content_key(private_key_der: bytes, wrapped: bytes) -> bytes:
    private_key = serialization.load_der_private_key(private_key_der, password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise UnlockError("reader key is not an RSA key")
    try:
        content_key = private_key.decrypt(wrapped, oaep())
    except ValueError:
        raise UnlockError("the wrapped content key does not open with this reader's key") from None
    if len(content_key) != KEY_SIZE:
        raise UnlockError("the wrapped content key has the wrong length")
    return content_key


# --- reader key pairs ---------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """A reader key pair as bytes: PKCS#8 DER private key, SubjectPublicKeyInfo DER public key."""

    private_der: bytes = field(repr=False)
    public_der: bytes


def generate_key_pair(bits: int = 2048) -> KeyPair:
    """Slow (30-50 ms for 2048 bits on 2 cores, holding the GIL): never on the mail path."""
    if bits not in RSA_SIZES:
        raise ValueError(f"RSA key size must be one of {RSA_SIZES}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def rsa_size(public_key_der: bytes) -> int:
    """The size in bits of an RSA public key (DER SubjectPublicKeyInfo); ValueError if not RSA."""
    public_key = serialization.load_der_public_key(public_key_der)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return public_key.key_size


def encrypt_private_key(
    kek: bytes, private_der: bytes, owner: bytes, nonce: bytes | None = None
) -> bytes:
    """version 0x01 || 12-byte nonce || AES-256-GCM(KEK, PKCS#8, aad = label || owner).

    ``owner`` binds the blob to its place: the 16-byte reader id of a guest,
    the lower-cased address of an account. ``nonce`` is for test vectors only.
    """
    nonce = nonce if nonce is not None else random_bytes(NONCE_SIZE)
    sealed = AESGCM(kek).encrypt(nonce, private_der, _PRIVATE_KEY_AAD + owner)
    return PRIVATE_KEY_VERSION + nonce + sealed


def decrypt_private_key(kek: bytes, blob: bytes, owner: bytes) -> bytes:
    if len(blob) < 1 + NONCE_SIZE + 16 or blob[:1] != PRIVATE_KEY_VERSION:
        raise UnlockError("the encrypted private key is damaged or of an unknown version")
    nonce, sealed = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, _PRIVATE_KEY_AAD + owner)
    except InvalidTag:
        raise UnlockError(
            "the private key does not open: wrong link, password or tampering"
        ) from None


# --- guests: the notification link ---------------------------------------------


@dataclass(frozen=True)
class Link:
    """A guest reader's link: ``https://PORTAL/m/<link id>#<secret>`` (base64url, no padding)."""

    link_id: bytes
    secret: bytes

    @classmethod
    def new(cls) -> Link:
        return cls(random_bytes(ID_SIZE), random_bytes(KEY_SIZE))

    @property
    def id_hash(self) -> bytes:
        return link_id_hash(self.link_id)

    def kek(self) -> bytes:
        """The format v1 key-encryption key of this link's reader key pair."""
        return guest_kek(self.secret, self.link_id)

    def wrapping_key(self) -> bytes:
        """The format v2 key that wraps K directly for this link's reader."""
        return _hkdf(self.secret, _GUEST_WRAP_INFO + self.link_id)

    def url(self, portal: str) -> str:
        return f"{portal.rstrip('/')}/m/{b64url(self.link_id)}#{b64url(self.secret)}"

    @classmethod
    def parse(cls, url: str) -> Link:
        parts = urlsplit(url.strip())
        segments = parts.path.rstrip("/").split("/")
        if len(segments) < 2 or segments[-2] != "m" or not parts.fragment:
            raise ValueError("not a Sealgate link: expected https://HOST/m/LINK-ID#SECRET")
        link_id, secret = b64url_decode(segments[-1]), b64url_decode(parts.fragment)
        if len(link_id) != ID_SIZE or len(secret) != KEY_SIZE:
            raise ValueError("not a Sealgate link: the link id or secret has the wrong length")
        return cls(link_id, secret)

    def __repr__(self) -> str:  # never print the secret
        return f"Link(link_id={b64url(self.link_id)!r}, secret=<hidden>)"


def link_id_hash(link_id: bytes) -> bytes:
    return hashlib.sha256(link_id).digest()


def guest_kek(secret: bytes, link_id: bytes) -> bytes:
    return _hkdf(secret, _GUEST_KEK_INFO + link_id)


def wrap_for_link(
    link: Link, content_key: bytes, envelope_id: bytes, reader_id: bytes, nonce: bytes | None = None
) -> bytes:
    """Format v2: ``0x02 || nonce || AES-256-GCM(W, K, aad = label || envelope id || reader id)``.

    Binding both ids means a wrapped K copied to another reader record or
    envelope does not open there. ``nonce`` is for test vectors only.
    """
    if len(content_key) != KEY_SIZE:
        raise ValueError("the content key must be 32 bytes")
    nonce = nonce if nonce is not None else random_bytes(NONCE_SIZE)
    aad = _GUEST_WRAP_AAD + envelope_id + reader_id
    sealed = AESGCM(link.wrapping_key()).encrypt(nonce, content_key, aad)
    return bytes([GUEST_WRAP_VERSION]) + nonce + sealed


def unwrap_for_link(link: Link, wrapped: bytes, envelope_id: bytes, reader_id: bytes) -> bytes:
    """K from a format v2 guest's wrapped key; :class:`UnlockError` if it does not open."""
    if len(wrapped) != GUEST_WRAPPED_SIZE or wrapped[0] != GUEST_WRAP_VERSION:
        raise UnlockError("the wrapped content key is damaged or of an unknown version")
    nonce, sealed = wrapped[1 : 1 + NONCE_SIZE], wrapped[1 + NONCE_SIZE :]
    try:
        return AESGCM(link.wrapping_key()).decrypt(
            nonce, sealed, _GUEST_WRAP_AAD + envelope_id + reader_id
        )
    except InvalidTag:
        raise UnlockError(
            "the wrapped content key does not open: wrong link or tampering"
        ) from None


# --- accounts: password-derived keys -------------------------------------------


@dataclass(frozen=True)
class AccountKeys:
    """The account's key-encryption key, and the login secret the browser proves
    at login (the server stores only its Argon2id hash)."""

    kek: bytes = field(repr=False)
    login_secret: bytes = field(repr=False)


def account_keys(password: str, salt: bytes, iterations: int) -> AccountKeys:
    """PBKDF2-SHA256 over the NFC-normalised UTF-8 password, then two HKDF outputs."""
    if iterations < PBKDF2_MIN_ITERATIONS:
        raise ValueError(f"PBKDF2 needs at least {PBKDF2_MIN_ITERATIONS} iterations")
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    master = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, iterations=iterations
    ).derive(secret)
    return AccountKeys(_hkdf(master, _ACCOUNT_KEK_INFO), _hkdf(master, _ACCOUNT_LOGIN_INFO))


SSO_KDF = "sso-hkdf-sha256"
SSO_SECRET_MIN = 32  # characters of the key secret the identity provider releases
_SSO_MASTER_INFO = b"sealgate v1 sso master"


def sso_account_keys(secret: str, salt: bytes) -> AccountKeys:
    """The account keys of a person who signs in with single sign-on, from the key secret
    their organisation's identity provider releases (docs/identity.md).

    The secret is random and long (at least SSO_SECRET_MIN characters), so it needs no
    stretching: one HKDF with the account's salt makes the master key, from which the
    same two keys as a password's are derived (KEK, login secret).
    """
    data = secret.encode("utf-8")
    if len(secret) < SSO_SECRET_MIN:
        raise ValueError(f"the key secret must be at least {SSO_SECRET_MIN} characters")
    master = HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=_SSO_MASTER_INFO
    ).derive(data)
    return AccountKeys(_hkdf(master, _ACCOUNT_KEK_INFO), _hkdf(master, _ACCOUNT_LOGIN_INFO))


# --- encodings -----------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 4648 §5): one spelling per value.

    The stdlib decoder skips foreign characters and ignores non-zero trailing
    bits; a link must not have several spellings that open the same thing.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not valid base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64url") from None
    if b64url(data) != text:
        raise ValueError("not valid base64url (non-canonical)")
    return data
