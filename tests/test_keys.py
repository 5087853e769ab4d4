"""The key hierarchy (gateway.envelope.keys): wrapping K, reader private keys, links, accounts.

RSA key generation is slow (4096 bits takes seconds), so these tests use the
pinned test key pairs from tests/vectors/rsa-keys.json and generate a single
2048-bit pair.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.envelope import keys
from gateway.envelope.keys import KeyPair, Link, UnlockError

_PINNED = json.loads((Path(__file__).parent / "vectors" / "rsa-keys.json").read_text())
TEST_KEYS = {
    entry["bits"]: KeyPair(
        bytes.fromhex(entry["private_key_pkcs8"]), bytes.fromhex(entry["public_key_spki"])
    )
    for entry in _PINNED["keys"]
}
CONTENT_KEY = bytes(range(32))
KEK = bytes(range(100, 132))
READER_ID = bytes.fromhex("0123456789abcdef0123456789abcdef")
PORTAL = "https://portal.example.org"


@pytest.fixture(scope="module")
def fresh_pair() -> KeyPair:
    return keys.generate_key_pair(2048)


def flip(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --- wrapping the content key ------------------------------------------------------------


@pytest.mark.parametrize("bits", [2048, 3072])
def test_wrap_unwrap_round_trip(bits: int) -> None:
    pair = TEST_KEYS[bits]
    wrapped = keys.wrap_content_key(pair.public_der, CONTENT_KEY)
    assert len(wrapped) == bits // 8
    assert keys.wrap_content_key(pair.public_der, CONTENT_KEY) != wrapped  # OAEP is randomised
    assert keys.unwrap_content_key(pair.private_der, wrapped) == CONTENT_KEY


def test_generated_key_pair_wraps_and_unwraps(fresh_pair: KeyPair) -> None:
    private_key = serialization.load_der_private_key(fresh_pair.private_der, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    assert private_key.public_key().public_numbers().e == 65537
    wrapped = keys.wrap_content_key(fresh_pair.public_der, CONTENT_KEY)
    assert keys.unwrap_content_key(fresh_pair.private_der, wrapped) == CONTENT_KEY


def test_unwrap_with_the_wrong_key_fails(fresh_pair: KeyPair) -> None:
    wrapped = keys.wrap_content_key(TEST_KEYS[2048].public_der, CONTENT_KEY)
    for other in (fresh_pair, TEST_KEYS[3072]):
        with pytest.raises(UnlockError):
            keys.unwrap_content_key(other.private_der, wrapped)


@pytest.mark.parametrize("bit", [0, 7, 1000, 2047])
def test_unwrap_of_a_tampered_wrapped_key_fails(bit: int) -> None:
    pair = TEST_KEYS[2048]
    wrapped = keys.wrap_content_key(pair.public_der, CONTENT_KEY)
    with pytest.raises(UnlockError):
        keys.unwrap_content_key(pair.private_der, flip(wrapped, bit))


def test_unwrap_refuses_a_content_key_of_the_wrong_length() -> None:
    pair = TEST_KEYS[2048]
    wrapped = keys.wrap_content_key(pair.public_der, CONTENT_KEY[:16])
    with pytest.raises(UnlockError, match="wrong length"):
        keys.unwrap_content_key(pair.private_der, wrapped)


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public_der = ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_der = ec_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError):
        keys.wrap_content_key(public_der, CONTENT_KEY)
    with pytest.raises(UnlockError):
        keys.unwrap_content_key(private_der, bytes(256))


@pytest.mark.parametrize("bits", [0, 1024, 2047, 2049, 8192])
def test_generate_key_pair_refuses_other_sizes(bits: int) -> None:
    with pytest.raises(ValueError):
        keys.generate_key_pair(bits)


# --- encrypted private keys --------------------------------------------------------------

PRIVATE_DER = TEST_KEYS[2048].private_der
BLOB = keys.encrypt_private_key(KEK, PRIVATE_DER, READER_ID)


def test_private_key_round_trip() -> None:
    assert BLOB[0] == 1
    assert len(BLOB) == 1 + keys.NONCE_SIZE + len(PRIVATE_DER) + 16
    assert keys.decrypt_private_key(KEK, BLOB, READER_ID) == PRIVATE_DER
    assert keys.encrypt_private_key(KEK, PRIVATE_DER, READER_ID) != BLOB  # a fresh nonce


def test_private_key_of_an_account_round_trip() -> None:
    owner = b"alice@example.org"
    blob = keys.encrypt_private_key(KEK, PRIVATE_DER, owner)
    assert keys.decrypt_private_key(KEK, blob, owner) == PRIVATE_DER
    with pytest.raises(UnlockError):
        keys.decrypt_private_key(KEK, blob, b"Alice@example.org")


def test_private_key_with_the_wrong_kek_fails() -> None:
    with pytest.raises(UnlockError):
        keys.decrypt_private_key(flip(KEK, 0), BLOB, READER_ID)


def test_private_key_with_the_wrong_owner_fails() -> None:
    for owner in (flip(READER_ID, 127), READER_ID[:15], READER_ID + b"\x00", b""):
        with pytest.raises(UnlockError):
            keys.decrypt_private_key(KEK, BLOB, owner)


@settings(max_examples=100, deadline=None)
@given(bit=st.integers(0, len(BLOB) * 8 - 1))
def test_private_key_with_any_flipped_bit_fails(bit: int) -> None:
    with pytest.raises(UnlockError):
        keys.decrypt_private_key(KEK, flip(BLOB, bit), READER_ID)


@pytest.mark.parametrize("blob", [b"", BLOB[:28], b"\x02" + BLOB[1:]], ids=["empty", "short", "v2"])
def test_damaged_private_key_blob_fails(blob: bytes) -> None:
    with pytest.raises(UnlockError):
        keys.decrypt_private_key(KEK, blob, READER_ID)


# --- links -----------------------------------------------------------------------------------

_B64URL = "[A-Za-z0-9_-]"


@settings(max_examples=100, deadline=None)
@given(
    link_id=st.binary(min_size=16, max_size=16),
    secret=st.binary(min_size=32, max_size=32),
    portal=st.sampled_from([PORTAL, PORTAL + "/", "https://example.org/sealgate"]),
)
def test_link_url_parse_round_trip(link_id: bytes, secret: bytes, portal: str) -> None:
    link = Link(link_id, secret)
    url = link.url(portal)
    base = portal.rstrip("/")
    assert re.fullmatch(re.escape(base) + f"/m/{_B64URL}{{22}}#{_B64URL}{{43}}", url)
    assert Link.parse(url) == link
    assert link.kek() == keys.guest_kek(secret, link_id)
    assert link.id_hash == keys.link_id_hash(link_id)


def test_new_links_are_random() -> None:
    first, second = Link.new(), Link.new()
    assert (len(first.link_id), len(first.secret)) == (16, 32)
    assert first.link_id != second.link_id and first.secret != second.secret


GOOD = Link(bytes(range(16)), bytes(range(32, 64)))
GOOD_ID, GOOD_SECRET = keys.b64url(GOOD.link_id), keys.b64url(GOOD.secret)


@pytest.mark.parametrize(
    "url",
    [
        f"{PORTAL}/m/{GOOD_ID}",
        f"{PORTAL}/m/{GOOD_ID}#",
        f"{PORTAL}/{GOOD_ID}#{GOOD_SECRET}",
        f"{PORTAL}/n/{GOOD_ID}#{GOOD_SECRET}",
        f"{PORTAL}/m/{GOOD_ID[:-1]}#{GOOD_SECRET}",
        f"{PORTAL}/m/{GOOD_ID}AA#{GOOD_SECRET}",
        f"{PORTAL}/m/{GOOD_ID}#{GOOD_SECRET[:-2]}",
        f"{PORTAL}/m/{GOOD_ID}#{GOOD_SECRET}AA",
        f"{PORTAL}/m/{GOOD_ID}#{keys.b64url(GOOD.secret + GOOD.secret)}",
        f"{PORTAL}/m/{GOOD_ID}#{'*' * 43}",
        f"{PORTAL}/m/{'$' * 22}#{GOOD_SECRET}",
        "",
    ],
    ids=[
        "no-fragment",
        "empty-fragment",
        "no-m-segment",
        "other-segment",
        "short-link-id",
        "long-link-id",
        "short-secret",
        "long-secret",
        "double-secret",
        "secret-not-base64url",
        "link-id-not-base64url",
        "empty",
    ],
)
def test_link_parse_refuses_bad_links(url: str) -> None:
    with pytest.raises(ValueError):
        Link.parse(url)


@pytest.mark.parametrize(
    "text", ["AA+/", "AA/A", "AAAA$", "AA==", "AAAA====", "AB", "AAAAA", " AA"]
)
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        keys.b64url_decode(text)


@given(data=st.binary(max_size=64))
def test_b64url_round_trip(data: bytes) -> None:
    text = keys.b64url(data)
    assert "=" not in text
    assert re.fullmatch(f"{_B64URL}*", text)
    assert keys.b64url_decode(text) == data


def test_link_repr_never_shows_the_secret() -> None:
    shown = [repr(GOOD), str(GOOD), f"{GOOD}", f"{GOOD!r}", repr([GOOD]), repr({"link": GOOD})]
    for text in shown:
        assert GOOD_SECRET not in text
        assert GOOD.secret.hex() not in text
        assert repr(GOOD.secret) not in text
        assert GOOD_ID in text


# --- accounts ----------------------------------------------------------------------------------

SALT = bytes(range(16))


def test_account_keys_refuse_fewer_than_600000_iterations() -> None:
    for iterations in (0, 1, 599_999):
        with pytest.raises(ValueError):
            keys.account_keys("a long enough password", SALT, iterations)


def test_account_keys_normalise_the_password_to_nfc() -> None:
    password = "Crème brûlée für Zoë"
    nfc = unicodedata.normalize("NFC", password)
    nfd = unicodedata.normalize("NFD", password)
    assert nfc != nfd
    composed = keys.account_keys(nfc, SALT, keys.PBKDF2_MIN_ITERATIONS)
    assert keys.account_keys(nfd, SALT, keys.PBKDF2_MIN_ITERATIONS) == composed
    assert composed.kek != composed.login_secret
    assert len(composed.kek) == len(composed.login_secret) == 32


def test_account_keys_depend_on_password_and_salt() -> None:
    reference = keys.account_keys("correct horse battery staple", SALT, 600_000)
    assert keys.account_keys("correct horse battery stable", SALT, 600_000) != reference
    assert keys.account_keys("correct horse battery staple", SALT[::-1], 600_000) != reference
