"""gateway/portal/static/account.js in a real browser, against account.json and keys.py.

The same bench as tests/test_browser_crypto.py (tests/support/browser.py
``module_page``, chromium launched once for the module): the page's helpers
(TEST_JS below) run account.js and hand plain results back; the assertions
are all here. Both directions are checked: what Python made (the vectors,
keys.encrypt_private_key, keys.wrap_content_key) opens in the browser, and
what the browser made (a key pair, its encrypted private key, a rewrapped K)
opens with keys.account_keys, keys.decrypt_private_key and
keys.unwrap_content_key.

The browser keeps the KEKs it derives (non-extractable CryptoKeys) under a
name, so each PBKDF2 of 600,000 rounds runs once per module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.envelope import keys
from tests.support import browser

pytestmark = pytest.mark.peers  # every test runs in chromium (the autouse `page`)


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((browser.VECTORS / name).read_text(encoding="ascii"))
    return document


ACCOUNT = load("account.json")
CASES = {case["name"]: case for case in ACCOUNT["cases"]}
VECTOR_KEY = ACCOUNT["private_key"]
PKCS8 = bytes.fromhex(VECTOR_KEY["private_key_pkcs8"])
ADDRESS = VECTOR_KEY["address"]
OTHER_KEY = load("rsa-keys.json")["keys"][1]  # 3072 bits ([0] is the account vector's key)

# The page's side: account.js in, plain JSON-able results out. KEKs are kept by name.
TEST_JS = r"""
import * as account from "/static/account.js";
import { hexToBytes as h, bytesToHex as hex } from "/static/sealed.js";

const keks = new Map();

function describe(error) {
  return { name: error.name, stage: error.stage ?? null, message: String(error.message) };
}

async function attempt(run) {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error: describe(error) };
  }
}

async function describeKey(key) {
  const { name, hash, length, modulusLength } = key.algorithm;
  const format = key.type === "secret" ? "raw" : "pkcs8";
  const exported = await attempt(() => crypto.subtle.exportKey(format, key));
  return { type: key.type, extractable: key.extractable, name, hash: hash?.name ?? null,
           bits: length ?? modulusLength, usages: [...key.usages].sort(),
           exportRefused: !exported.ok };
}

export async function derive(cases) {
  const results = [];
  for (const c of cases) {
    results.push(await attempt(async () => {
      const { kek, loginSecret } =
        await account.deriveAccountKeys(c.password, h(c.salt), c.iterations);
      keks.set(c.name, kek);
      return { received: hex(new TextEncoder().encode(c.password)), loginSecret: hex(loginSecret),
               kek: await describeKey(kek) };
    }));
  }
  return results;
}

// Each record: the private key blob opened under a kept KEK, then (if given) the wrapped K.
export async function open(records) {
  const results = [];
  for (const r of records) {
    results.push(await attempt(async () => {
      const privateKey = await account.decryptPrivateKey(keks.get(r.kek), h(r.blob), r.address);
      const key = await describeKey(privateKey);
      if (r.wrapped === null) return { key };
      return { key, K: hex(await account.unwrapAccountContentKey(privateKey, h(r.wrapped))) };
    }));
  }
  return results;
}

export async function encrypt({ kek, pkcs8, address }) {
  return hex(await account.encryptPrivateKey(keks.get(kek), h(pkcs8), address));
}

// Sign-up as a page would do it: derive, make the pair, seal the private key, drop it.
export async function newAccount({ name, password, salt, iterations, address, bits }) {
  const { kek, loginSecret } = await account.deriveAccountKeys(password, h(salt), iterations);
  keks.set(name, kek);
  const { publicKeyDer, privateKeyPkcs8 } = await account.generateAccountKeyPair(bits);
  const blob = await account.encryptPrivateKey(kek, privateKeyPkcs8, address);
  privateKeyPkcs8.fill(0);
  return { loginSecret: hex(loginSecret), publicKey: hex(publicKeyDer), blob: hex(blob) };
}

export async function rewrap(cases) {
  const results = [];
  for (const c of cases) {
    results.push(await attempt(async () =>
      hex(await account.rewrapContentKey(h(c.publicKey), h(c.K)))));
  }
  return results;
}

export async function generate(bits) {
  return attempt(() => account.generateAccountKeyPair(bits));
}

window.sgTest = { derive, open, encrypt, newAccount, rewrap, generate };
"""

Page = browser.ModulePage


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with browser.module_page(TEST_JS) as tab:
        yield tab


@pytest.fixture(autouse=True)
def no_console_errors(page: Page) -> Iterator[None]:
    yield
    assert page.take_errors() == []


@pytest.fixture(scope="module")
def derived(page: Page) -> dict[str, Any]:
    """Every account.json case derived in the browser once; its KEK kept there by case name."""
    arguments = [
        {key: case[key] for key in ("name", "password", "salt", "iterations")}
        for case in ACCOUNT["cases"]
    ]
    return dict(zip(CASES, page.call("derive", arguments), strict=True))


def public_der(pkcs8: bytes) -> bytes:
    return (
        serialization.load_der_private_key(pkcs8, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def record(
    kek: str, blob: bytes | str, wrapped: bytes | None, address: str = ADDRESS
) -> dict[str, Any]:
    """For the page's ``open``: ``blob`` opened under the KEK kept as ``kek``, then ``wrapped``."""
    return {
        "kek": kek,
        "blob": blob if isinstance(blob, str) else blob.hex(),
        "address": address,
        "wrapped": None if wrapped is None else wrapped.hex(),
    }


def refused(result: dict[str, Any], name: str, stage: str | None, message: str) -> None:
    assert result["ok"] is False, result
    error = result["error"]
    assert (error["name"], error["stage"]) == (name, stage), error
    assert message in error["message"], error


# The CryptoKeys account.js hands out, as the page's describeKey sees them: never exportable.
KEK = {
    "type": "secret",
    "extractable": False,
    "name": "AES-GCM",
    "hash": None,
    "bits": 256,
    "usages": ["encrypt", "unwrapKey"],
    "exportRefused": True,
}
PRIVATE_KEY = {
    "type": "private",
    "extractable": False,
    "name": "RSA-OAEP",
    "hash": "SHA-256",
    "bits": 2048,
    "usages": ["decrypt"],
    "exportRefused": True,
}


# --- the vectors --------------------------------------------------------------------------


def test_login_secrets_match_the_vectors(derived: dict[str, Any]) -> None:
    for name, case in CASES.items():
        result = derived[name]
        assert result["ok"] is True, (name, result)
        # the password reached the page as spelled (an NFD password stays NFD until account.js)
        assert result["value"]["received"] == case["password_utf8"], name
        assert result["value"]["loginSecret"] == case["login_secret"], name
        assert result["value"]["kek"] == KEK, name


def test_each_derived_kek_opens_a_private_key_python_encrypted(
    page: Page, derived: dict[str, Any]
) -> None:
    """The vector's encrypted private key, and the vector key encrypted under each case's KEK
    by keys.encrypt_private_key, open in the browser; a K that keys.wrap_content_key wrapped
    to the vector's public key proves the key that came out."""
    content_key = os.urandom(32)
    wrapped = keys.wrap_content_key(public_der(PKCS8), content_key)
    owner = ADDRESS.encode("utf-8")
    records = [record("ascii", VECTOR_KEY["encrypted_private_key"], wrapped)]
    for name, case in CASES.items():
        blob = keys.encrypt_private_key(bytes.fromhex(case["kek"]), PKCS8, owner)
        records.append(record(name, blob, wrapped))
    for result in page.call("open", records):
        assert result == {"ok": True, "value": {"key": PRIVATE_KEY, "K": content_key.hex()}}


def test_nfc_and_nfd_spellings_are_one_password(page: Page, derived: dict[str, Any]) -> None:
    nfc, nfd = CASES["nfc"], CASES["nfd"]
    assert nfc["password_utf8"] != nfd["password_utf8"]
    assert derived["nfc"]["value"]["loginSecret"] == derived["nfd"]["value"]["loginSecret"]
    # sealed under the NFD spelling's KEK in the browser; opens under the NFC one, there and here
    sealed = {"kek": "nfd", "pkcs8": PKCS8.hex(), "address": ADDRESS}
    blob, again = (bytes.fromhex(page.call("encrypt", sealed)) for _ in range(2))
    [opened] = page.call("open", [record("nfc", blob, None)])
    assert opened == {"ok": True, "value": {"key": PRIVATE_KEY}}
    owner = ADDRESS.encode("utf-8")
    assert keys.decrypt_private_key(bytes.fromhex(nfc["kek"]), blob, owner) == PKCS8
    # keys.encrypt_private_key's layout, with a fresh nonce each time
    assert blob[0] == again[0] == 1 and len(blob) == len(again) == 1 + 12 + len(PKCS8) + 16
    assert blob[1:13] != again[1:13]


# --- the other direction: an account made in the browser ----------------------------------


def test_an_account_made_in_the_browser_opens_in_python(page: Page) -> None:
    password = "Zo\u0065\u0308's n\u0065\u0301w p\u00e4ssword \U0001f510"  # partly decomposed
    salt, address = os.urandom(16), "zo\u00eb.m\u00fcller@example.org"
    made = page.call(
        "newAccount",
        {
            "name": "browser-made",
            "password": password,
            "salt": salt.hex(),
            "iterations": keys.PBKDF2_MIN_ITERATIONS,
            "address": address,
            "bits": 2048,
        },
    )
    derived = keys.account_keys(password, salt, keys.PBKDF2_MIN_ITERATIONS)
    assert made["loginSecret"] == derived.login_secret.hex()
    blob, public_key = bytes.fromhex(made["blob"]), bytes.fromhex(made["publicKey"])
    pkcs8 = keys.decrypt_private_key(derived.kek, blob, address.encode("utf-8"))
    assert blob[0] == 1 and len(blob) == 1 + 12 + len(pkcs8) + 16
    private_key = serialization.load_der_private_key(pkcs8, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    assert private_key.public_key().public_numbers().e == 65537
    assert public_der(pkcs8) == public_key

    # K wrapped by the gateway to the browser's public key opens in the browser ...
    content_key = os.urandom(32)
    wrapped = keys.wrap_content_key(public_key, content_key)
    [opened] = page.call("open", [record("browser-made", blob, wrapped, address)])
    assert opened == {"ok": True, "value": {"key": PRIVATE_KEY, "K": content_key.hex()}}

    # ... and K rewrapped in the browser opens in Python, to this key and to another one
    claimed, other = os.urandom(32), os.urandom(32)
    rewrapped = page.call(
        "rewrap",
        [
            {"publicKey": public_key.hex(), "K": claimed.hex()},
            {"publicKey": OTHER_KEY["public_key_spki"], "K": other.hex()},
        ],
    )
    assert all(result["ok"] for result in rewrapped), rewrapped
    assert keys.unwrap_content_key(pkcs8, bytes.fromhex(rewrapped[0]["value"])) == claimed
    other_pkcs8 = bytes.fromhex(OTHER_KEY["private_key_pkcs8"])
    assert keys.unwrap_content_key(other_pkcs8, bytes.fromhex(rewrapped[1]["value"])) == other


# --- refusals -----------------------------------------------------------------------------


def test_too_few_iterations_are_refused_before_any_work(page: Page) -> None:
    case = CASES["ascii"]
    too_few = {**case, "name": "too-few", "iterations": keys.PBKDF2_MIN_ITERATIONS - 1}
    fraction = {**case, "name": "fraction", "iterations": 600_000.5}
    results = page.call("derive", [too_few, fraction])
    refused(results[0], "UnlockError", "kdf", "at least 600000 iterations")
    assert "599999" in results[0]["error"]["message"]
    refused(results[1], "TypeError", None, "iterations must be an integer")


def test_a_damaged_private_key_is_refused(page: Page, derived: dict[str, Any]) -> None:
    blob = bytes.fromhex(VECTOR_KEY["encrypted_private_key"])
    damaged = {"truncated": blob[:28], "version 2": b"\x02" + blob[1:]}
    for offset, where in ((1, "nonce"), (13, "ciphertext"), (len(blob) // 2, "middle")):
        flipped = bytearray(blob)
        flipped[offset] ^= 0x01
        damaged[where] = bytes(flipped)
    damaged["tag"] = blob[:-1] + bytes([blob[-1] ^ 0x80])
    results = page.call("open", [record("ascii", b, None) for b in damaged.values()])
    outcomes = dict(zip(damaged, results, strict=True))
    for what in ("truncated", "version 2"):
        refused(outcomes[what], "UnlockError", "private-key", "damaged or of unknown version")
    for what in ("nonce", "ciphertext", "middle", "tag"):
        refused(outcomes[what], "UnlockError", "private-key", "wrong password, wrong address or")


def test_a_wrong_password_or_address_does_not_open_the_private_key(
    page: Page, derived: dict[str, Any]
) -> None:
    wrong = {**CASES["ascii"], "name": "wrong", "password": "correct horse battery stapler"}
    [derived_wrong] = page.call("derive", [wrong])
    assert derived_wrong["value"]["loginSecret"] != CASES["ascii"]["login_secret"]
    blob = VECTOR_KEY["encrypted_private_key"]
    results = page.call(
        "open",
        [
            record("wrong", blob, None),
            record("ascii", blob, None, address="bob@example.org"),
            record("ascii", blob, None, address=ADDRESS + "."),
            record("ascii", blob, None, address=VECTOR_KEY["address_as_entered"]),
            record("ascii", blob, None, address=f" {ADDRESS}"),
        ],
    )
    for result in results[:3]:
        refused(
            result, "UnlockError", "private-key", "does not open: wrong password, wrong address"
        )
    refused(results[3], "TypeError", None, "pass it as the server stores it (lower-cased)")
    refused(results[4], "TypeError", None, "the account's address as the server stores it")
    assert not any(wrong["password"] in str(result) for result in results)


def test_a_wrapped_key_that_is_not_a_32_byte_key_for_this_account_is_refused(
    page: Page, derived: dict[str, Any]
) -> None:
    public_key = public_der(PKCS8)
    wrapped = {
        "31 bytes": keys.wrap_content_key(public_key, os.urandom(31)),
        "33 bytes": keys.wrap_content_key(public_key, os.urandom(33)),
        "empty": keys.wrap_content_key(public_key, b""),
        "another key's": keys.wrap_content_key(keys.generate_key_pair().public_der, os.urandom(32)),
        "a 3072-bit key's": bytes.fromhex(OTHER_KEY["wrapped_content_key"]),
        "garbage": os.urandom(256),
    }
    blob = VECTOR_KEY["encrypted_private_key"]
    results = page.call("open", [record("ascii", blob, w) for w in wrapped.values()])
    outcomes = dict(zip(wrapped, results, strict=True))
    for what in ("31 bytes", "33 bytes", "empty"):
        refused(
            outcomes[what], "UnlockError", "unwrap", "the wrapped content key has the wrong length"
        )
    for what in ("another key's", "a 3072-bit key's", "garbage"):
        refused(outcomes[what], "UnlockError", "unwrap", "does not open with this account's key")


def test_rewrapping_and_key_generation_refuse_bad_arguments(page: Page) -> None:
    weak = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    good_key = OTHER_KEY["public_key_spki"]
    results = page.call(
        "rewrap",
        [
            {"publicKey": good_key, "K": os.urandom(31).hex()},
            {"publicKey": weak.hex(), "K": os.urandom(32).hex()},
            {"publicKey": os.urandom(64).hex(), "K": os.urandom(32).hex()},
        ],
    )
    refused(results[0], "TypeError", None, "K must be 32 bytes")
    refused(results[1], "RangeError", None, "fewer than 2048 bits")
    refused(results[2], "TypeError", None, "not an RSA SubjectPublicKeyInfo")
    refused(page.call("generate", 1024), "RangeError", None, "must be one of 2048, 3072, 4096")
