"""Generate the format v1 and v2 test vectors from fixed inputs (docs/envelope-format.md).

    .venv/bin/python tests/vectors/generate.py              # rewrite tests/vectors/*.json
    .venv/bin/python tests/vectors/generate.py OUTPUT_DIR   # write them elsewhere

This is a second, deliberately independent implementation of the format: it
follows the specification with the bare primitives of `cryptography` and
hashlib and does not call gateway.envelope, so tests/test_vectors.py, which
checks the gateway code against these files, compares two implementations.

Every input is fixed (``fixed`` below stands in for random bytes), except the
results of two randomised operations that cannot be seeded: RSA key generation
and RSA-OAEP encryption. Those are pinned in rsa-keys.json: when that file
exists beside this script, its keys and wrapped content keys are reused, so a
rerun reproduces every file byte for byte. The keys are test keys, published
here: never use them for anything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
PINNED = HERE / "rsa-keys.json"

# --- the format, as docs/envelope-format.md states it ----------------------------

MAGIC = b"SEALGATE"
VERSION = 1
SUITE = 1
CHUNK_SIZE = 65536
TAG_SIZE = 16
HEADER_SIZE = 34
PART_KEY_INFO = b"sealgate v1 part key"
GUEST_KEK_INFO = b"sealgate v1 guest kek"
ACCOUNT_KEK_INFO = b"sealgate v1 account kek"
ACCOUNT_LOGIN_INFO = b"sealgate v1 account login"
PRIVATE_KEY_AAD = b"sealgate v1 private key "
PRIVATE_KEY_VERSION = 1
GUEST_WRAP_INFO = b"sealgate v2 guest wrap"
GUEST_WRAP_AAD = b"sealgate v2 content key "
GUEST_WRAP_VERSION = 2
PBKDF2_ITERATIONS = 600_000
RSA_SIZES = (2048, 3072, 4096)
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TEST_KEY_WARNING = (
    "TEST KEYS ONLY. These private keys are published with the Sealgate test vectors; "
    "never use them to protect anything."
)

# --- fixed inputs ------------------------------------------------------------------

PORTAL = "https://portal.example.org"


def fixed(label: str, size: int = 32) -> bytes:
    """Stand-in for random bytes: SHA-256("sealgate test vector " + label), first ``size`` bytes."""
    return hashlib.sha256(b"sealgate test vector " + label.encode("ascii")).digest()[:size]


CONTENT_KEY = fixed("content key")  # the K that every RSA wrap in rsa-keys.json carries
ENVELOPE_ID = fixed("envelope id", 16)


def pattern(size: int) -> bytes:
    """Plaintext of ``size`` bytes: byte i is i mod 251 (a prime, so neighbouring chunks differ)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


# --- primitives ----------------------------------------------------------------------


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def hkdf(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with an empty salt (RFC 5869: HashLen zero bytes), 32 bytes out."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info).derive(ikm)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def load_private(pkcs8: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key(pkcs8, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def spki_of(pkcs8: bytes) -> bytes:
    return (
        load_private(pkcs8)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def part_header(envelope_id: bytes, part_id: int) -> bytes:
    return MAGIC + bytes([VERSION, SUITE]) + u32(CHUNK_SIZE) + envelope_id + u32(part_id)


def part_key_info(envelope_id: bytes, part_id: int) -> bytes:
    return PART_KEY_INFO + envelope_id + u32(part_id)


def chunk_nonce(index: int, last: bool) -> bytes:
    return bytes(7) + u32(index) + bytes([last])


def seal_chunks(
    content_key: bytes, envelope_id: bytes, part_id: int, plaintext: bytes
) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(nonce, plaintext chunk, sealed chunk) for every chunk of the part, in order."""
    aead = AESGCM(hkdf(content_key, part_key_info(envelope_id, part_id)))
    header = part_header(envelope_id, part_id)
    count = max(1, -(-len(plaintext) // CHUNK_SIZE))
    for index in range(count):
        piece = plaintext[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]
        nonce = chunk_nonce(index, index == count - 1)
        yield nonce, piece, aead.encrypt(nonce, piece, header)


def seal(content_key: bytes, envelope_id: bytes, part_id: int, plaintext: bytes) -> bytes:
    chunks = seal_chunks(content_key, envelope_id, part_id, plaintext)
    return part_header(envelope_id, part_id) + b"".join(chunk for _, _, chunk in chunks)


def encrypt_private_key(kek: bytes, pkcs8: bytes, owner: bytes, nonce: bytes) -> bytes:
    return (
        bytes([PRIVATE_KEY_VERSION])
        + nonce
        + AESGCM(kek).encrypt(nonce, pkcs8, PRIVATE_KEY_AAD + owner)
    )


def wrap_for_guest(
    secret: bytes,
    link_id: bytes,
    envelope_id: bytes,
    reader_id: bytes,
    content_key: bytes,
    nonce: bytes,
) -> bytes:
    """Format v2: 0x02 || nonce || AES-GCM(W, nonce, aad, K), W from the link."""
    wrapping_key = hkdf(secret, GUEST_WRAP_INFO + link_id)
    aad = GUEST_WRAP_AAD + envelope_id + reader_id
    return (
        bytes([GUEST_WRAP_VERSION]) + nonce + AESGCM(wrapping_key).encrypt(nonce, content_key, aad)
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- rsa-keys.json: the pinned results of randomised operations ---------------------


def unwraps_to_content_key(pkcs8: bytes, wrapped: bytes) -> bool:
    """False also when CONTENT_KEY changed since the pinned wrap was made."""
    try:
        return load_private(pkcs8).decrypt(wrapped, oaep()) == CONTENT_KEY
    except ValueError:
        return False


def rsa_keys(pinned: Path) -> dict[str, Any]:
    """Test key pairs of every allowed size and K wrapped to each, reusing ``pinned``."""
    previous: dict[int, dict[str, Any]] = {}
    if pinned.exists():
        previous = {entry["bits"]: entry for entry in json.loads(pinned.read_text())["keys"]}
    entries = []
    for bits in RSA_SIZES:
        old = previous.get(bits)
        if old is None:
            pkcs8 = rsa.generate_private_key(public_exponent=65537, key_size=bits).private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            wrapped = None
        else:
            pkcs8 = bytes.fromhex(old["private_key_pkcs8"])
            wrapped = bytes.fromhex(old["wrapped_content_key"])
        if wrapped is None or not unwraps_to_content_key(pkcs8, wrapped):
            wrapped = load_private(pkcs8).public_key().encrypt(CONTENT_KEY, oaep())
        entries.append(
            {
                "bits": bits,
                "private_key_pkcs8": pkcs8.hex(),
                "public_key_spki": spki_of(pkcs8).hex(),
                "content_key": CONTENT_KEY.hex(),
                "wrapped_content_key": wrapped.hex(),
            }
        )
    return {
        "description": (
            "RSA test key pairs (PKCS#8 and SubjectPublicKeyInfo DER) and the content key K "
            "wrapped to each with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label). OAEP is "
            "randomised: check that unwrapping yields K, not that wrapping reproduces the bytes."
        ),
        "warning": TEST_KEY_WARNING,
        "keys": entries,
    }


# --- part-key.json and parts.json -----------------------------------------------------


def part_key_vectors() -> dict[str, Any]:
    inputs = [
        (fixed("content key"), fixed("envelope id", 16), 0),
        (fixed("content key"), fixed("envelope id", 16), 1),
        (fixed("content key"), fixed("envelope id", 16), 2),
        (fixed("content key"), fixed("other envelope id", 16), 2),
        (fixed("other content key"), fixed("envelope id", 16), 2),
        (bytes(32), bytes(16), 0),
        (bytes([0xFF]) * 32, bytes([0xFF]) * 16, 0xFFFFFFFF),
    ]
    cases = [
        {
            "content_key": key.hex(),
            "envelope_id": envelope_id.hex(),
            "part_id": part_id,
            "info": part_key_info(envelope_id, part_id).hex(),
            "part_key": hkdf(key, part_key_info(envelope_id, part_id)).hex(),
        }
        for key, envelope_id, part_id in inputs
    ]
    return {
        "description": (
            "part key = HKDF-SHA256(ikm = K, salt = empty, "
            "info = 'sealgate v1 part key' || envelope id || uint32be part id), 32 bytes"
        ),
        "cases": cases,
    }


_FULL_HEX_LIMIT = 1024  # sealed parts up to this size are given whole; larger ones by hashes
_CHUNK_HEX_LIMIT = 8_192  # a chunk of a large part up to this size is given whole


def part_vectors() -> dict[str, Any]:
    cases = []
    for size in (0, 1, 65535, 65536, 65537, 200_000):
        plaintext = pattern(size)
        part_id = 1 if size % 2 else 2  # vary the header a little
        sealed_chunks = list(seal_chunks(CONTENT_KEY, ENVELOPE_ID, part_id, plaintext))
        header = part_header(ENVELOPE_ID, part_id)
        sealed = header + b"".join(chunk for _, _, chunk in sealed_chunks)
        chunks = []
        for index, (nonce, piece, sealed_chunk) in enumerate(sealed_chunks):
            chunk: dict[str, Any] = {
                "index": index,
                "nonce": nonce.hex(),
                "plaintext_size": len(piece),
                "sealed_size": len(sealed_chunk),
                "sealed_sha256": sha256(sealed_chunk),
                "tag": sealed_chunk[-TAG_SIZE:].hex(),
            }
            if len(sealed) > _FULL_HEX_LIMIT and len(sealed_chunk) <= _CHUNK_HEX_LIMIT:
                chunk["sealed"] = sealed_chunk.hex()
            chunks.append(chunk)
        case: dict[str, Any] = {
            "name": f"plaintext-{size}",
            "content_key": CONTENT_KEY.hex(),
            "envelope_id": ENVELOPE_ID.hex(),
            "part_id": part_id,
            "part_key": hkdf(CONTENT_KEY, part_key_info(ENVELOPE_ID, part_id)).hex(),
            "plaintext_size": size,
            "plaintext_sha256": sha256(plaintext),
            "header": header.hex(),
            "sealed_size": len(sealed),
            "sealed_sha256": sha256(sealed),
            "chunks": chunks,
        }
        if len(sealed) <= _FULL_HEX_LIMIT:
            case["sealed"] = sealed.hex()
        cases.append(case)
    return {
        "description": (
            "Sealed parts. The plaintext of n bytes is pattern(n): byte i is i mod 251. "
            "'sealed' (the whole part) is given when it is at most 1,024 bytes; otherwise "
            "rebuild the part from the plaintext and compare 'sealed_sha256', and compare "
            "each chunk by 'sealed_sha256' and 'tag' (chunks up to 8,192 bytes are given whole)."
        ),
        "chunk_size": CHUNK_SIZE,
        "cases": cases,
    }


# --- guest-kek.json and account.json --------------------------------------------------


def guest_vectors(key: dict[str, Any]) -> dict[str, Any]:
    links = [
        (fixed("link id", 16), fixed("link secret")),
        (bytes.fromhex("fbff" * 8), bytes.fromhex("fbef" * 16)),  # base64url uses '-' and '_'
        (bytes(16), bytes(32)),
    ]
    cases = [
        {
            "link_id": link_id.hex(),
            "secret": secret.hex(),
            "link_id_b64url": b64url(link_id),
            "secret_b64url": b64url(secret),
            "url": f"{PORTAL}/m/{b64url(link_id)}#{b64url(secret)}",
            "link_id_hash": sha256(link_id),
            "info": (GUEST_KEK_INFO + link_id).hex(),
            "kek": hkdf(secret, GUEST_KEK_INFO + link_id).hex(),
        }
        for link_id, secret in links
    ]
    kek = hkdf(links[0][1], GUEST_KEK_INFO + links[0][0])
    reader_id, nonce = fixed("reader id", 16), fixed("private key nonce", 12)
    pkcs8 = bytes.fromhex(key["private_key_pkcs8"])
    return {
        "description": (
            "Guest links: link id hash = SHA-256(link id); KEK = HKDF-SHA256(ikm = secret, "
            "salt = empty, info = 'sealgate v1 guest kek' || link id). The private key of the "
            "2048-bit test key pair encrypted under the KEK of the first link, owner = reader "
            "id; and K wrapped to that key pair."
        ),
        "portal": PORTAL,
        "cases": cases,
        "private_key": {
            "kek": kek.hex(),
            "owner": reader_id.hex(),
            "nonce": nonce.hex(),
            "aad": (PRIVATE_KEY_AAD + reader_id).hex(),
            "private_key_pkcs8": pkcs8.hex(),
            "encrypted_private_key": encrypt_private_key(kek, pkcs8, reader_id, nonce).hex(),
        },
        "wrapped_content_key": {
            "private_key_pkcs8": pkcs8.hex(),
            "wrapped_content_key": key["wrapped_content_key"],
            "content_key": key["content_key"],
        },
    }


def guest_wrap_vectors() -> dict[str, Any]:
    links = [
        (fixed("link id", 16), fixed("link secret")),
        (bytes.fromhex("fbff" * 8), bytes.fromhex("fbef" * 16)),  # base64url uses '-' and '_'
        (bytes(16), bytes(32)),
    ]
    envelope_id, reader_id = fixed("envelope id", 16), fixed("reader id", 16)
    cases = []
    for number, (link_id, secret) in enumerate(links):
        nonce = fixed(f"guest wrap nonce {number}", 12)
        cases.append(
            {
                "link_id": link_id.hex(),
                "secret": secret.hex(),
                "url": f"{PORTAL}/m/{b64url(link_id)}#{b64url(secret)}",
                "envelope_id": envelope_id.hex(),
                "reader_id": reader_id.hex(),
                "content_key": CONTENT_KEY.hex(),
                "info": (GUEST_WRAP_INFO + link_id).hex(),
                "wrapping_key": hkdf(secret, GUEST_WRAP_INFO + link_id).hex(),
                "nonce": nonce.hex(),
                "aad": (GUEST_WRAP_AAD + envelope_id + reader_id).hex(),
                "wrapped_content_key": wrap_for_guest(
                    secret, link_id, envelope_id, reader_id, CONTENT_KEY, nonce
                ).hex(),
            }
        )
    return {
        "description": (
            "Format v2 guests: wrapping key W = HKDF-SHA256(ikm = link secret, salt = empty, "
            "info = 'sealgate v2 guest wrap' || link id); wrapped K = 0x02 || nonce || "
            "AES-256-GCM(W, nonce, aad = 'sealgate v2 content key ' || envelope id || reader "
            "id, K), 61 bytes. The nonce is random when sealing; fixed here."
        ),
        "portal": PORTAL,
        "cases": cases,
    }


def account_vectors(key: dict[str, Any]) -> dict[str, Any]:
    salt = fixed("account salt", 16)
    passwords = {
        "ascii": "correct horse battery staple",
        "non-ascii": "Pässwörd mit Ümläuten, 密码 und 🔐",
        "nfc": unicodedata.normalize("NFC", "Crème brûlée für Zoë"),
        "nfd": unicodedata.normalize("NFD", "Crème brûlée für Zoë"),
    }
    cases: list[dict[str, Any]] = []
    for name, password in passwords.items():
        normalised = unicodedata.normalize("NFC", password).encode("utf-8")
        master = hashlib.pbkdf2_hmac("sha256", normalised, salt, PBKDF2_ITERATIONS, 32)
        cases.append(
            {
                "name": name,
                "password": password,
                "password_utf8": password.encode("utf-8").hex(),
                "nfc_utf8": normalised.hex(),
                "salt": salt.hex(),
                "iterations": PBKDF2_ITERATIONS,
                "master": master.hex(),
                "kek": hkdf(master, ACCOUNT_KEK_INFO).hex(),
                "login_secret": hkdf(master, ACCOUNT_LOGIN_INFO).hex(),
            }
        )
    address = "Alice.Example@Example.ORG"
    owner = address.lower().encode("utf-8")
    kek, nonce = bytes.fromhex(cases[0]["kek"]), fixed("account private key nonce", 12)
    pkcs8 = bytes.fromhex(key["private_key_pkcs8"])
    return {
        "description": (
            "Accounts: master = PBKDF2-HMAC-SHA256(NFC-normalised UTF-8 password, salt, "
            "iterations, 32 bytes); KEK = HKDF-SHA256(master, salt = empty, info = "
            "'sealgate v1 account kek'); login secret = HKDF-SHA256(master, salt = empty, "
            "info = 'sealgate v1 account login'). The last two passwords are the NFC and NFD "
            "forms of one string and give the same keys. The account private key is the "
            "2048-bit test key encrypted under the first KEK, owner = the lower-cased address."
        ),
        "cases": cases,
        "private_key": {
            "address_as_entered": address,
            "address": address.lower(),
            "kek": kek.hex(),
            "owner": owner.hex(),
            "nonce": nonce.hex(),
            "aad": (PRIVATE_KEY_AAD + owner).hex(),
            "private_key_pkcs8": pkcs8.hex(),
            "encrypted_private_key": encrypt_private_key(kek, pkcs8, owner, nonce).hex(),
        },
    }


# --- envelope.json: one whole envelope, openable from the link alone -----------------

_ATTACHMENT = "Quarterly figures: 42\r\nGrüße aus Köln\r\n".encode()
_EML = (
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.net>\r\n"
    "Date: Tue, 02 Jun 2026 10:00:00 +0200\r\n"
    "Subject: =?utf-8?q?Quartalszahlen_f=C3=BCr_Q2?=\r\n"
    "Message-ID: <vector-1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hallo Bob, die Zahlen im Anhang.\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Disposition: attachment; filename*=utf-8''Zahlen%20f%C3%BCr%20Q2.txt\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    f"{base64.b64encode(_ATTACHMENT).decode('ascii')}\r\n"
    "--b1--\r\n"
).encode()


def _envelope_plaintexts(envelope_id: bytes) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The manifest and the (part id, kind, plaintext) of every part of an envelope."""
    manifest = {
        "format": VERSION,
        "envelope_id": envelope_id.hex(),
        "headers": {
            "from": ["Alice <alice@example.org>"],
            "to": ["Bob <bob@example.net>"],
            "cc": [],
            "date": "Tue, 02 Jun 2026 10:00:00 +0200",
            "subject": "Quartalszahlen für Q2",
            "message_id": "<vector-1@example.org>",
            "in_reply_to": None,
            "references": [],
        },
        "text": "Hallo Bob, die Zahlen im Anhang.",
        "html": None,
        "attachments": [
            {
                "part": 2,
                "filename": "Zahlen für Q2.txt",
                "content_type": "text/plain",
                "disposition": "attachment",
                "content_id": None,
                "size": len(_ATTACHMENT),
                "sha256": sha256(_ATTACHMENT),
            }
        ],
        "original": {
            "part": 1,
            "filename": "message.eml",
            "content_type": "message/rfc822",
            "size": len(_EML),
            "sha256": sha256(_EML),
        },
        "problems": [],
    }
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")).encode()
    plaintexts = (
        (0, "manifest", manifest_bytes),
        (1, "original", _EML),
        (2, "attachment", _ATTACHMENT),
    )
    return manifest, plaintexts


def _sealed_parts(
    content_key: bytes, envelope_id: bytes, plaintexts: tuple[Any, ...]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The sealed parts of an envelope, and what opening each must give."""
    sealed = [
        {"part_id": part_id, "sealed": seal(content_key, envelope_id, part_id, plaintext).hex()}
        for part_id, _, plaintext in plaintexts
    ]
    expected = [
        {
            "part_id": part_id,
            "kind": kind,
            "part_key": hkdf(content_key, part_key_info(envelope_id, part_id)).hex(),
            "plaintext": plaintext.hex(),
        }
        for part_id, kind, plaintext in plaintexts
    ]
    return sealed, expected


def envelope_vector(key: dict[str, Any]) -> dict[str, Any]:
    content_key = bytes.fromhex(key["content_key"])
    envelope_id = fixed("whole envelope id", 16)
    link_id, secret = fixed("whole envelope link id", 16), fixed("whole envelope link secret")
    reader_id = fixed("whole envelope reader id", 16)
    kek = hkdf(secret, GUEST_KEK_INFO + link_id)
    pkcs8 = bytes.fromhex(key["private_key_pkcs8"])
    manifest, plaintexts = _envelope_plaintexts(envelope_id)
    parts, expected_parts = _sealed_parts(content_key, envelope_id, plaintexts)
    return {
        "description": (
            "One guest's whole envelope. Input: 'link_url', 'server' (what the portal serves "
            "for the link: nothing there opens anything without the fragment) and 'parts'. "
            "Everything under 'expected' must come out. The manifest is the one the gateway "
            "makes from the original message (part 1)."
        ),
        "link_url": f"{PORTAL}/m/{b64url(link_id)}#{b64url(secret)}",
        "server": {
            "envelope_id": envelope_id.hex(),
            "reader_id": reader_id.hex(),
            "link_id_hash": sha256(link_id),
            "encrypted_private_key": encrypt_private_key(
                kek, pkcs8, reader_id, fixed("whole envelope private key nonce", 12)
            ).hex(),
            "wrapped_content_key": key["wrapped_content_key"],
            "public_key_spki": key["public_key_spki"],
        },
        "parts": parts,
        "expected": {
            "link_id": link_id.hex(),
            "secret": secret.hex(),
            "kek": kek.hex(),
            "private_key_pkcs8": pkcs8.hex(),
            "content_key": content_key.hex(),
            "manifest": manifest,
            "parts": expected_parts,
        },
    }


def envelope_v2_vector() -> dict[str, Any]:
    content_key = fixed("v2 envelope content key")
    envelope_id = fixed("v2 envelope id", 16)
    link_id, secret = fixed("v2 envelope link id", 16), fixed("v2 envelope link secret")
    reader_id = fixed("v2 envelope reader id", 16)
    nonce = fixed("v2 envelope wrap nonce", 12)
    manifest, plaintexts = _envelope_plaintexts(envelope_id)
    parts, expected_parts = _sealed_parts(content_key, envelope_id, plaintexts)
    return {
        "description": (
            "One format v2 guest's whole envelope. Input: 'link_url', 'server' (what the "
            "portal serves for the link: the wrapped K, and no encrypted private key) and "
            "'parts'. Everything under 'expected' must come out. The parts and the manifest "
            "are as in format v1 (envelope.json)."
        ),
        "link_url": f"{PORTAL}/m/{b64url(link_id)}#{b64url(secret)}",
        "server": {
            "envelope_id": envelope_id.hex(),
            "reader_id": reader_id.hex(),
            "link_id_hash": sha256(link_id),
            "wrapped_content_key": wrap_for_guest(
                secret, link_id, envelope_id, reader_id, content_key, nonce
            ).hex(),
        },
        "parts": parts,
        "expected": {
            "link_id": link_id.hex(),
            "secret": secret.hex(),
            "wrapping_key": hkdf(secret, GUEST_WRAP_INFO + link_id).hex(),
            "content_key": content_key.hex(),
            "manifest": manifest,
            "parts": expected_parts,
        },
    }


# --- invalid.json: what every reader must refuse ----------------------------------------

_S = CHUNK_SIZE + TAG_SIZE
_C0, _C1, _C2 = HEADER_SIZE, HEADER_SIZE + _S, HEADER_SIZE + 2 * _S  # chunk offsets in "main"
_MAIN_SIZE = _C2 + 1 + TAG_SIZE


def _take(base: str, start: int, end: int) -> dict[str, Any]:
    return {"base": base, "start": start, "end": end}


def _bytes(data: bytes) -> dict[str, Any]:
    return {"hex": data.hex()}


def _flip(offset: int, bit: int, original: bytes) -> list[dict[str, Any]]:
    """The main part with bit ``bit`` of byte ``offset`` inverted."""
    changed = bytes([original[offset] ^ (1 << bit)])
    return [_take("main", 0, offset), _bytes(changed), _take("main", offset + 1, _MAIN_SIZE)]


def _with_header(header: bytes, base: str, size: int) -> list[dict[str, Any]]:
    return [_bytes(header), _take(base, HEADER_SIZE, size)]


def invalid_vectors(envelope: dict[str, Any], envelope_v2: dict[str, Any]) -> dict[str, Any]:
    key_a, key_b = fixed("content key"), fixed("other content key")
    env_a, env_b = fixed("envelope id", 16), fixed("other envelope id", 16)
    small = b"a small part"
    bases = {
        "main": (key_a, env_a, 2, pattern(2 * CHUNK_SIZE + 1)),
        "part-3": (key_a, env_a, 3, small),
        "envelope-b": (key_a, env_b, 2, small),
        "key-b": (key_b, env_a, 2, small),
    }
    sealed = {name: seal(*inputs) for name, inputs in bases.items()}
    main = sealed["main"]
    small_size = HEADER_SIZE + len(small) + TAG_SIZE
    header_a2 = part_header(env_a, 2)

    def case(name: str, why: str, blob: list[dict[str, Any]], chunk: int | None) -> dict[str, Any]:
        failure: dict[str, Any] = {"error": "SealedFormatError", "stage": "header"}
        if chunk is not None:
            failure = {"error": "SealedFormatError", "stage": "chunk", "chunk": chunk}
        return {
            "name": name,
            "why": why,
            "blob": blob,
            "open_as": {"content_key": key_a.hex(), "envelope_id": env_a.hex(), "part_id": 2},
            "expected": failure,
        }

    parts = [
        case("flip-magic", "bad magic", _flip(0, 0, main), None),
        case("flip-version", "version 3 is unknown", _flip(8, 1, main), None),
        case("flip-suite", "suite 0 is unknown", _flip(9, 0, main), None),
        case("chunk-size-zero", "chunk size 0", _flip(11, 0, main), None),
        case(
            "chunk-size-too-large", "chunk size 16,842,752: above 16 MiB", _flip(10, 0, main), None
        ),
        case(
            "flip-chunk-size",
            "chunk size 65537 is plausible but authenticated: the header is the AAD of every chunk",
            _flip(13, 0, main),
            0,
        ),
        case(
            "flip-envelope-id",
            "the header names another envelope than the store",
            _flip(14, 0, main),
            None,
        ),
        case(
            "flip-part-id",
            "the header names another part than the store",
            _flip(HEADER_SIZE - 1, 0, main),
            None,
        ),
        case("short-header", "fewer than 34 bytes", [_take("main", 0, HEADER_SIZE - 1)], None),
        case("header-only", "no chunk at all", [_take("main", 0, HEADER_SIZE)], 0),
        case(
            "flip-ciphertext-0", "bit flipped in the ciphertext of chunk 0", _flip(_C0, 0, main), 0
        ),
        case(
            "flip-ciphertext-1",
            "bit flipped in the ciphertext of chunk 1",
            _flip(_C1 + 1000, 5, main),
            1,
        ),
        case("flip-tag-0", "bit flipped in the tag of chunk 0", _flip(_C1 - 1, 7, main), 0),
        case(
            "flip-tag-last",
            "bit flipped in the tag of the last chunk",
            _flip(_MAIN_SIZE - 1, 0, main),
            2,
        ),
        case(
            "last-chunk-removed",
            "truncation at a chunk boundary: chunk 1 is now at the "
            "end but was sealed with the not-last flag",
            [_take("main", 0, _C2)],
            1,
        ),
        case("two-chunks-removed", "truncation to the first chunk", [_take("main", 0, _C1)], 0),
        case(
            "truncated-mid-chunk", "the blob ends inside chunk 1", [_take("main", 0, _C1 + 1000)], 1
        ),
        case(
            "truncated-one-byte", "the last byte is missing", [_take("main", 0, _MAIN_SIZE - 1)], 2
        ),
        case(
            "last-chunk-shorter-than-tag",
            "the last chunk has 15 bytes, less than a tag",
            [_take("main", 0, _C2 + 15)],
            2,
        ),
        case(
            "extended-by-one-byte",
            "a byte appended: the real last chunk is no longer at the end",
            [_take("main", 0, _MAIN_SIZE), _bytes(b"\x00")],
            2,
        ),
        case(
            "extended-by-a-chunk",
            "chunk 1 appended again after the last chunk",
            [_take("main", 0, _MAIN_SIZE), _take("main", _C1, _C2)],
            2,
        ),
        case(
            "reordered",
            "chunks 0 and 1 swapped",
            [
                _take("main", 0, _C0),
                _take("main", _C1, _C2),
                _take("main", _C0, _C1),
                _take("main", _C2, _MAIN_SIZE),
            ],
            0,
        ),
        case(
            "duplicated",
            "chunk 0 repeated",
            [_take("main", 0, _C1), _take("main", _C0, _MAIN_SIZE)],
            1,
        ),
        case(
            "moved-part",
            "part 3 of the same envelope stored as part 2",
            [_take("part-3", 0, small_size)],
            None,
        ),
        case(
            "moved-part-header-rewritten",
            "part 3 with its header rewritten to say part 2: the part key and the AAD differ",
            _with_header(header_a2, "part-3", small_size),
            0,
        ),
        case(
            "spliced-from-other-part",
            "the last chunk replaced by the (last) chunk of part 3",
            [_take("main", 0, _C2), _take("part-3", HEADER_SIZE, small_size)],
            2,
        ),
        case(
            "other-envelope",
            "a part of another envelope with the same K",
            [_take("envelope-b", 0, small_size)],
            None,
        ),
        case(
            "other-envelope-header-rewritten",
            "that part with its header rewritten to name this envelope",
            _with_header(header_a2, "envelope-b", small_size),
            0,
        ),
        case(
            "other-content-key",
            "the same place in an envelope sealed under another K",
            [_take("key-b", 0, small_size)],
            0,
        ),
    ]

    server = envelope["server"]
    link_id = bytes.fromhex(envelope["expected"]["link_id"])
    secret = bytes.fromhex(envelope["expected"]["secret"])
    blob = bytes.fromhex(server["encrypted_private_key"])
    wrapped = bytes.fromhex(server["wrapped_content_key"])

    def flipped(data: bytes, offset: int) -> bytes:
        return data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]

    def unlock(name: str, why: str, stage: str, field: str, value: str) -> dict[str, Any]:
        return {
            "name": name,
            "why": why,
            "change": {field: value},
            "expected": {"error": "UnlockError", "stage": stage},
        }

    wrong_url = f"{PORTAL}/m/{b64url(link_id)}#{b64url(flipped(secret, 0))}"
    wrong_owner = flipped(bytes.fromhex(server["reader_id"]), 15).hex()
    unlocking = [
        unlock(
            "wrong-secret",
            "link secret with one bit flipped: another KEK",
            "private-key",
            "link_url",
            wrong_url,
        ),
        unlock(
            "wrong-owner",
            "the blob presented as another reader's",
            "private-key",
            "reader_id",
            wrong_owner,
        ),
        unlock(
            "flip-private-key-nonce",
            "bit flipped in the nonce",
            "private-key",
            "encrypted_private_key",
            flipped(blob, 1).hex(),
        ),
        unlock(
            "flip-private-key-ciphertext",
            "bit flipped in the encrypted PKCS#8",
            "private-key",
            "encrypted_private_key",
            flipped(blob, 100).hex(),
        ),
        unlock(
            "flip-private-key-tag",
            "bit flipped in the tag",
            "private-key",
            "encrypted_private_key",
            flipped(blob, len(blob) - 1).hex(),
        ),
        unlock(
            "private-key-version-2",
            "unknown version byte",
            "private-key",
            "encrypted_private_key",
            (b"\x02" + blob[1:]).hex(),
        ),
        unlock(
            "private-key-truncated",
            "shorter than version, nonce and tag",
            "private-key",
            "encrypted_private_key",
            blob[:28].hex(),
        ),
        unlock(
            "flip-wrapped-key",
            "bit flipped in the RSA-OAEP ciphertext",
            "unwrap",
            "wrapped_content_key",
            flipped(wrapped, 10).hex(),
        ),
    ]

    unlocking_v2 = _unlocking_v2(envelope_v2, flipped)

    good_id, good_secret = b64url(link_id), b64url(secret)

    def link(name: str, url: str) -> dict[str, Any]:
        return {"name": name, "url": url, "expected": {"error": "ValueError", "stage": "link"}}

    links = [
        link("no-fragment", f"{PORTAL}/m/{good_id}"),
        link("empty-fragment", f"{PORTAL}/m/{good_id}#"),
        link("no-link-id", f"{PORTAL}/m/#{good_secret}"),
        link("not-a-link-path", f"{PORTAL}/x/{good_id}#{good_secret}"),
        link("link-id-15-bytes", f"{PORTAL}/m/{b64url(link_id[:15])}#{good_secret}"),
        link("link-id-17-bytes", f"{PORTAL}/m/{b64url(link_id + b'x')}#{good_secret}"),
        link("secret-31-bytes", f"{PORTAL}/m/{good_id}#{b64url(secret[:31])}"),
        link("secret-33-bytes", f"{PORTAL}/m/{good_id}#{b64url(secret + b'x')}"),
        link("secret-one-char-short", f"{PORTAL}/m/{good_id}#{good_secret[:-1]}"),
        link("standard-base64-alphabet", f"{PORTAL}/m/{good_id}#+{good_secret[1:]}"),
        link("padded", f"{PORTAL}/m/{good_id}=#{good_secret}="),
        link("trailing-dot", f"{PORTAL}/m/{good_id}#{good_secret}."),
        link("trailing-parenthesis-and-dot", f"{PORTAL}/m/{good_id}#{good_secret})."),
        link(
            "non-canonical-last-character",
            f"{PORTAL}/m/{good_id}#{good_secret[:-1]}"
            + B64URL_ALPHABET[B64URL_ALPHABET.index(good_secret[-1]) | 1],
        ),
    ]

    return {
        "description": (
            "Negative vectors. 'parts': a blob is the concatenation of its segments, each "
            "either bytes of a base part ({base, start, end}: Python slice semantics) or "
            "literal bytes ({hex}); open it with 'open_as' (what the store says). Stage "
            "'header': rejected before any chunk is decrypted; stage 'chunk': chunks before "
            "'chunk' authenticate, chunk 'chunk' fails and the whole part is rejected. "
            "'unlocking': envelope.json's link_url and server record with the one field in "
            "'change' replaced; 'private-key' means decrypting the private key fails, "
            "'unwrap' means RSA-OAEP fails. "
            "'unlocking_v2': the same with envelope-v2.json; 'unwrap' means the v2 guest's "
            "wrapped K does not open (AES-GCM, or its length or version byte). "
            "'links': URLs that must not parse."
        ),
        "bases": {
            name: {
                "content_key": inputs[0].hex(),
                "envelope_id": inputs[1].hex(),
                "part_id": inputs[2],
                "plaintext_size": len(inputs[3]),
                "plaintext_sha256": sha256(inputs[3]),
                "sealed": sealed[name].hex(),
            }
            for name, inputs in bases.items()
        },
        "parts": parts,
        "unlocking": unlocking,
        "unlocking_v2": unlocking_v2,
        "links": links,
    }


def _unlocking_v2(envelope: dict[str, Any], flipped: Any) -> list[dict[str, Any]]:
    server = envelope["server"]
    link_id = bytes.fromhex(envelope["expected"]["link_id"])
    secret = bytes.fromhex(envelope["expected"]["secret"])
    wrapped = bytes.fromhex(server["wrapped_content_key"])

    def unwrap(name: str, why: str, field: str, value: str) -> dict[str, Any]:
        return {
            "name": name,
            "why": why,
            "change": {field: value},
            "expected": {"error": "UnlockError", "stage": "unwrap"},
        }

    return [
        unwrap(
            "wrong-secret",
            "link secret with one bit flipped: another wrapping key",
            "link_url",
            f"{PORTAL}/m/{b64url(link_id)}#{b64url(flipped(secret, 0))}",
        ),
        unwrap(
            "wrong-reader",
            "the wrapped K presented as another reader's (the reader id is in the AAD)",
            "reader_id",
            flipped(bytes.fromhex(server["reader_id"]), 15).hex(),
        ),
        unwrap(
            "wrong-envelope",
            "the wrapped K presented in another envelope (the envelope id is in the AAD)",
            "envelope_id",
            flipped(bytes.fromhex(server["envelope_id"]), 0).hex(),
        ),
        unwrap(
            "version-1",
            "unknown version byte",
            "wrapped_content_key",
            (b"\x01" + wrapped[1:]).hex(),
        ),
        unwrap(
            "flip-nonce",
            "bit flipped in the nonce",
            "wrapped_content_key",
            flipped(wrapped, 1).hex(),
        ),
        unwrap(
            "flip-ciphertext",
            "bit flipped in K's ciphertext",
            "wrapped_content_key",
            flipped(wrapped, 13).hex(),
        ),
        unwrap(
            "flip-tag",
            "bit flipped in the tag",
            "wrapped_content_key",
            flipped(wrapped, len(wrapped) - 1).hex(),
        ),
        unwrap("truncated", "one byte short", "wrapped_content_key", wrapped[:-1].hex()),
        unwrap("extended", "one byte appended", "wrapped_content_key", (wrapped + b"\x00").hex()),
        unwrap("empty", "nothing at all", "wrapped_content_key", ""),
    ]


# --- output -----------------------------------------------------------------------------


def generate(output: Path, pinned: Path = PINNED) -> list[Path]:
    """Write every vector file into ``output``; RSA results come from ``pinned`` if it exists."""
    keys = rsa_keys(pinned)
    key_2048 = keys["keys"][0]
    envelope = envelope_vector(key_2048)
    envelope_v2 = envelope_v2_vector()
    documents = {
        "rsa-keys.json": keys,
        "part-key.json": part_key_vectors(),
        "parts.json": part_vectors(),
        "guest-kek.json": guest_vectors(key_2048),
        "account.json": account_vectors(key_2048),
        "envelope.json": envelope,
        "guest-wrap-v2.json": guest_wrap_vectors(),
        "envelope-v2.json": envelope_v2,
        "invalid.json": invalid_vectors(envelope, envelope_v2),
    }
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in documents.items():
        path = output / name
        path.write_bytes((json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode())
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written_path)
