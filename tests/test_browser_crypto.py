"""gateway/portal/static/sealed.js in a real browser, against the format v1 and v2 test vectors.

Chromium (launched once for the module) loads a test page from a small HTTP
server on 127.0.0.1 (tests/support/browser.py ``module_page``) that imports
sealed.js as a module, exactly as the portal serves it. The page's helpers
(TEST_JS below) run the vectors of tests/vectors/ through the module's exports
and hand plain results back; the assertions are all here. Blobs that Python
prepares (rebuilt large parts, keys encrypted for a test link, a 25 MB part)
are served from memory under /data/.

Replies go the other way: sealReply in the browser, ReplyKey.open in Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.envelope import keys, stream
from gateway.envelope.reply import ReplyContent, ReplyError, ReplyKey
from tests.support import browser
from tests.vectors import generate

pytestmark = pytest.mark.peers  # every test runs in chromium (the autouse `page`)


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((browser.VECTORS / name).read_text(encoding="ascii"))
    return document


RSA = load("rsa-keys.json")
PART_KEYS = load("part-key.json")
PARTS = load("parts.json")
GUEST = load("guest-kek.json")
ENVELOPE = load("envelope.json")
GUEST_WRAP = load("guest-wrap-v2.json")
ENVELOPE_V2 = load("envelope-v2.json")
INVALID = load("invalid.json")

# The page's side of the tests: runs sealed.js and returns plain JSON-able results.
TEST_JS = r"""
import * as sealed from "/static/sealed.js";

const { hexToBytes: h, bytesToHex: hex } = sealed;

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function getBytes(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function describe(error) {
  return { name: error.name, stage: error.stage ?? null, chunk: error.chunk ?? null,
           message: String(error.message) };
}

async function attempt(run) {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error: describe(error) };
  }
}

// A pull stream over `bytes` in pieces of the given sizes (cycled), counting what was pulled.
function piecewise(bytes, sizes) {
  const state = { pulled: 0 };
  let at = 0, turn = 0;
  state.stream = new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) { controller.close(); return; }
      const size = sizes[turn++ % sizes.length];
      const piece = bytes.slice(at, at + size);
      at += piece.length;
      state.pulled += piece.length;
      controller.enqueue(piece);
    },
  }, { highWaterMark: 0 });
  return state;
}

const ODD_SIZES = [1, 33, 65553, 7, 100000, 65552, 2];

// Open a part whole, from a fetch() body, and piecewise; report each way's result.
async function openThreeWays(K, envelopeId, partId, blob, url) {
  const whole = await attempt(async () => summary(await sealed.openPart(K, envelopeId, partId, blob)));
  const fetched = await attempt(async () => {
    const response = await fetch(url);
    return summary(await sealed.openPartStream(K, envelopeId, partId, response.body));
  });
  const source = piecewise(blob, ODD_SIZES);
  const progress = [];
  let lookahead = 0;
  const pieces = await attempt(async () => summary(await sealed.openPartStream(
    K, envelopeId, partId, source.stream, (p) => {
      progress.push(p);
      lookahead = Math.max(lookahead, source.pulled - p.sealedBytes);
    })));
  return { whole, fetched, pieces, progress, lookahead };
}

async function summary(chunks) {
  return { sha256: await sealed.sha256Hex(chunks), sizes: chunks.map((c) => c.length) };
}

function blobOf(segments, bases) {
  const pieces = segments.map((s) => "hex" in s ? h(s.hex) : h(bases[s.base].sealed).slice(s.start, s.end));
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const piece of pieces) { out.set(piece, at); at += piece.length; }
  return out;
}

// The portal's record for a link, as portal.js hands it on: no encrypted private key in v2.
function recordOf(link, server) {
  const v1 = server.encrypted_private_key !== undefined;
  return { linkId: link.linkId, secret: link.secret, envelopeId: server.envelope_id,
           readerId: server.reader_id,
           encryptedPrivateKey: v1 ? h(server.encrypted_private_key) : null,
           wrappedKey: h(server.wrapped_content_key) };
}

export function encodings({ values, badB64, badHex }) {
  return {
    b64: values.map((v) => sealed.b64urlEncode(h(v))),
    back: values.map((v) => hex(sealed.b64urlDecode(sealed.b64urlEncode(h(v))))),
    hexRoundTrip: values.map((v) => hex(h(v.toUpperCase()))),
    badB64: badB64.map((s) => { try { sealed.b64urlDecode(s); return false; } catch { return true; } }),
    badHex: badHex.map((s) => { try { sealed.hexToBytes(s); return false; } catch { return true; } }),
  };
}

export function links({ good, bad }) {
  const parse = (url) => { const l = sealed.parseLink(url);
    return { linkId: hex(l.linkId), secret: hex(l.secret), linkIdText: l.linkIdText }; };
  const refused = (url) => {
    try { sealed.parseLink(url); return null; } catch (error) { return describe(error); }
  };
  return { good: good.map(parse), bad: bad.map(refused) };
}

export async function unlock(records) {
  const results = [];
  for (const r of records) {
    results.push(await attempt(async () => hex(await sealed.unlockGuest({
      linkId: h(r.link_id), secret: h(r.secret), envelopeId: r.envelope_id, readerId: r.reader_id,
      encryptedPrivateKey: r.encrypted_private_key === null ? null : h(r.encrypted_private_key),
      wrappedKey: h(r.wrapped_key) }))));
  }
  return results;
}

export async function openParts(cases) {
  const results = [];
  for (const c of cases) {
    const blob = await getBytes(c.url);
    results.push(await openThreeWays(h(c.content_key), c.envelope_id, c.part_id, blob, c.url));
  }
  return results;
}

export async function envelope(name) {
  const vector = await getJson(`/vectors/${name}`);
  const server = vector.server;
  const link = sealed.parseLink(vector.link_url);
  const K = await sealed.unlockGuest(recordOf(link, server));
  const blobs = vector.parts.map((p) => h(p.sealed));
  const manifest = await sealed.readManifest(K, server.envelope_id, blobs[0]);
  const opened = [];
  for (const [index, blob] of blobs.entries()) {
    const chunks = await sealed.openPart(K, server.envelope_id, index, blob);
    const size = chunks.reduce((n, c) => n + c.length, 0);
    opened.push({ part: index, sha256: await sealed.sha256Hex(chunks), size,
                  plaintext: hex(new Uint8Array(await new Blob(chunks).arrayBuffer())) });
  }
  const entries = [manifest.original, ...manifest.attachments];
  const checks = entries.map((e) => ({ part: e.part, sha256: e.sha256 === opened[e.part].sha256,
                                       size: e.size === opened[e.part].size }));
  const wrongEnvelope = await attempt(() => sealed.readManifest(K, "00".repeat(16), blobs[0]));
  const notManifest = await attempt(() => sealed.readManifest(K, server.envelope_id, blobs[1]));
  return { K: hex(K), linkIdText: link.linkIdText, manifest, opened, checks, wrongEnvelope, notManifest };
}

export async function invalidParts() {
  const vector = await getJson("/vectors/invalid.json");
  const bases = [];
  for (const [name, base] of Object.entries(vector.bases)) {
    const chunks = await sealed.openPart(h(base.content_key), base.envelope_id, base.part_id, h(base.sealed));
    bases.push({ name, sha256: await sealed.sha256Hex(chunks), expected: base.plaintext_sha256 });
  }
  const parts = [];
  for (const c of vector.parts) {
    const blob = blobOf(c.blob, vector.bases);
    const K = h(c.open_as.content_key);
    const whole = await attempt(() => sealed.openPart(K, c.open_as.envelope_id, c.open_as.part_id, blob));
    const verified = [];
    const source = piecewise(blob, ODD_SIZES);
    const streamed = await attempt(() => sealed.openPartStream(
      K, c.open_as.envelope_id, c.open_as.part_id, source.stream, (p) => verified.push(p.chunks)));
    parts.push({ name: c.name, whole: whole.ok ? "opened" : whole.error,
                 streamed: streamed.ok ? "opened" : streamed.error, verified });
  }
  return { bases, parts };
}

export async function unlockingFailures({ cases, envelope }) {
  const vector = await getJson("/vectors/invalid.json");
  const { link_url: linkUrl, server } = await getJson(`/vectors/${envelope}`);
  const results = [];
  for (const c of vector[cases]) {
    const changed = { link_url: linkUrl, ...server, ...c.change };
    const outcome = await attempt(() => sealed.unlockGuest(recordOf(sealed.parseLink(changed.link_url), changed)));
    results.push({ name: c.name, outcome: outcome.ok ? "opened" : outcome.error });
  }
  return results;
}

export async function bigStream({ url, K, envelopeId, partId }) {
  let calls = 0, last = null;
  const response = await fetch(url);
  const started = performance.now();
  const chunks = await sealed.openPartStream(h(K), envelopeId, partId, response.body, (p) => {
    calls += 1;
    last = p;
  });
  const sha256 = await sealed.sha256Hex(chunks);
  return { sha256, calls, last, chunks: chunks.length, seconds: (performance.now() - started) / 1000 };
}

export async function lookahead({ url, K, envelopeId, partId, pieceSize }) {
  const blob = await getBytes(url);
  const source = piecewise(blob, [pieceSize]);
  let most = 0, pulledAtFirst = null;
  const chunks = await sealed.openPartStream(h(K), envelopeId, partId, source.stream, (p) => {
    pulledAtFirst ??= source.pulled;
    most = Math.max(most, source.pulled - p.sealedBytes);
  });
  return { most, pulledAtFirst, total: blob.length, sha256: await sealed.sha256Hex(chunks) };
}

export async function sealReply({ publicKey, content }) {
  const attachments = content.attachments.map((a) => ({ ...a, data: h(a.data) }));
  const blob = await sealed.sealReply(h(publicKey), { ...content, attachments });
  return sealed.b64urlEncode(blob);
}

export async function sealReplyCamelCase({ publicKey, inReplyTo }) {
  const blob = await sealed.sealReply(h(publicKey), {
    inReplyTo, subject: "camel", text: "from a Blob",
    attachments: [{ filename: "b.bin", contentType: "application/x-test",
                    data: new Blob([Uint8Array.of(1, 2, 3)]) }] });
  return sealed.b64urlEncode(blob);
}

export async function sealReplyRefused({ publicKey, inReplyTo }) {
  return attempt(() => sealed.sealReply(h(publicKey), { in_reply_to: inReplyTo, subject: "", text: "",
                                                       attachments: [] }));
}

window.sgTest = { encodings, links, unlock, openParts, envelope, invalidParts, unlockingFailures,
                  bigStream, lookahead, sealReply, sealReplyCamelCase, sealReplyRefused };
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encrypted_key_for(link: keys.Link, kek: bytes, pkcs8: bytes) -> dict[str, str]:
    """A guest record for ``link`` whose private key ``pkcs8`` is encrypted under ``kek``."""
    reader_id = os.urandom(16)
    return {
        "link_id": link.link_id.hex(),
        "secret": link.secret.hex(),
        "reader_id": reader_id.hex(),
        "encrypted_private_key": keys.encrypt_private_key(kek, pkcs8, reader_id).hex(),
    }


# --- encodings and links ----------------------------------------------------------------


def test_encodings(page: Page) -> None:
    values = [
        "",
        "00",
        "ff",
        "fbff",
        "fbfffb",
        "fbfffbff",
        os.urandom(37).hex(),
        bytes(range(256)).hex(),
    ]
    bad_b64 = ["A", "AA=", "A+", "A/", "AB", "AAAAA", "ab cd", "\u00e9A", "AQ==", "Ab"]
    bad_hex = ["0", "zz", "0g", "0x00", " 00"]
    result = page.call("encodings", {"values": values, "badB64": bad_b64, "badHex": bad_hex})
    assert result["b64"] == [keys.b64url(bytes.fromhex(v)) for v in values]
    assert result["back"] == values
    assert result["hexRoundTrip"] == values
    assert all(result["badB64"]), list(zip(bad_b64, result["badB64"], strict=True))
    assert all(result["badHex"]), list(zip(bad_hex, result["badHex"], strict=True))


def test_links_parse_as_the_vectors_say(page: Page) -> None:
    good = [case["url"] for case in GUEST["cases"]] + [
        ENVELOPE["link_url"],
        GUEST["cases"][0]["url"].replace("/m/", "/portal/m/").replace("#", "/?lang=nl#"),
    ]
    result = page.call("links", {"good": good, "bad": []})
    expected = [
        {"linkId": c["link_id"], "secret": c["secret"], "linkIdText": c["link_id_b64url"]}
        for c in GUEST["cases"]
    ]
    assert result["good"][: len(expected)] == expected
    assert result["good"][-2]["secret"] == ENVELOPE["expected"]["secret"]
    assert result["good"][-1] == expected[0]


def test_invalid_links_are_refused(page: Page) -> None:
    cases = INVALID["links"]
    result = page.call("links", {"good": [], "bad": [case["url"] for case in cases]})
    for case, refused in zip(cases, result["bad"], strict=True):
        assert refused is not None, case["name"]
        assert refused["name"] == "LinkError", case["name"]
        secret = case["url"].partition("#")[2]
        assert not secret or secret not in refused["message"]


# --- keys -------------------------------------------------------------------------------


def test_part_keys(page: Page) -> None:
    """Each vector part key, used directly to seal a part, opens through sealed.js's derivation."""
    plaintext = b"sealed with the vector's part key"
    cases = []
    for number, case in enumerate(PART_KEYS["cases"]):
        envelope_id, part_id = bytes.fromhex(case["envelope_id"]), case["part_id"]
        header = generate.part_header(envelope_id, part_id)
        chunk = AESGCM(bytes.fromhex(case["part_key"])).encrypt(
            generate.chunk_nonce(0, True), plaintext, header
        )
        url = page.serve(f"part-key-{number}", header + chunk)
        cases.append({**case, "url": url})
    for case, result in zip(cases, page.call("openParts", cases), strict=True):
        for way in ("whole", "fetched", "pieces"):
            assert result[way] == {
                "ok": True,
                "value": {"sha256": sha256(plaintext), "sizes": [33]},
            }, (
                case["part_id"],
                way,
            )


def test_guest_kek_and_private_key(page: Page) -> None:
    """The guest-kek vectors: the record given, and each link's KEK (via a key encrypted under it)."""
    given = GUEST["private_key"]
    first = GUEST["cases"][0]
    pkcs8 = bytes.fromhex(given["private_key_pkcs8"])
    wrapped = GUEST["wrapped_content_key"]["wrapped_content_key"]
    records = [
        {
            "link_id": first["link_id"],
            "secret": first["secret"],
            "reader_id": given["owner"],
            "encrypted_private_key": given["encrypted_private_key"],
            "wrapped_key": wrapped,
        }
    ]
    for case in GUEST["cases"]:
        link = keys.Link(bytes.fromhex(case["link_id"]), bytes.fromhex(case["secret"]))
        record = encrypted_key_for(link, bytes.fromhex(case["kek"]), pkcs8)
        records.append({**record, "wrapped_key": wrapped})
    results = page.call("unlock", records)
    assert results == [{"ok": True, "value": GUEST["wrapped_content_key"]["content_key"]}] * len(
        records
    )


def test_guest_wrap_v2(page: Page) -> None:
    """Each v2 wrap vector opens in the browser; so does a fresh wrap made by the gateway."""
    records = [
        {
            "link_id": case["link_id"],
            "secret": case["secret"],
            "envelope_id": case["envelope_id"],
            "reader_id": case["reader_id"],
            "encrypted_private_key": None,
            "wrapped_key": case["wrapped_content_key"],
        }
        for case in GUEST_WRAP["cases"]
    ]
    link, content_key = keys.Link.new(), os.urandom(32)
    envelope_id, reader_id = os.urandom(16), os.urandom(16)
    records.append(
        {
            "link_id": link.link_id.hex(),
            "secret": link.secret.hex(),
            "envelope_id": envelope_id.hex(),
            "reader_id": reader_id.hex(),
            "encrypted_private_key": None,
            "wrapped_key": keys.wrap_for_link(link, content_key, envelope_id, reader_id).hex(),
        }
    )
    results = page.call("unlock", records)
    expected = [case["content_key"] for case in GUEST_WRAP["cases"]] + [content_key.hex()]
    assert results == [{"ok": True, "value": value} for value in expected]


def test_rsa_keys_unwrap(page: Page) -> None:
    records = []
    for entry in RSA["keys"]:
        link = keys.Link.new()
        record = encrypted_key_for(link, link.kek(), bytes.fromhex(entry["private_key_pkcs8"]))
        records.append({**record, "wrapped_key": entry["wrapped_content_key"]})
    results = page.call("unlock", records)
    assert [r["value"] for r in results] == [e["content_key"] for e in RSA["keys"]], results


# --- parts ------------------------------------------------------------------------------


def vector_part(case: dict[str, Any]) -> bytes:
    """The sealed part of a parts.json case: given whole, or rebuilt and checked by hash."""
    if "sealed" in case:
        return bytes.fromhex(case["sealed"])
    sealed = generate.seal(
        bytes.fromhex(case["content_key"]),
        bytes.fromhex(case["envelope_id"]),
        case["part_id"],
        generate.pattern(case["plaintext_size"]),
    )
    assert sha256(sealed) == case["sealed_sha256"]
    return sealed


def test_parts_whole_and_streamed(page: Page) -> None:
    cases = [
        {**case, "url": page.serve(case["name"], vector_part(case))} for case in PARTS["cases"]
    ]
    results = page.call("openParts", cases)
    step = stream.CHUNK_SIZE + stream.TAG_SIZE
    for case, result in zip(cases, results, strict=True):
        expected = {
            "sha256": case["plaintext_sha256"],
            "sizes": [chunk["plaintext_size"] for chunk in case["chunks"]],
        }
        for way in ("whole", "fetched", "pieces"):
            assert result[way] == {"ok": True, "value": expected}, (case["name"], way)
        progress = result["progress"]
        assert [p["chunks"] for p in progress] == list(range(1, len(case["chunks"]) + 1))
        assert progress[-1]["bytes"] == case["plaintext_size"]
        assert progress[-1]["sealedBytes"] == case["sealed_size"]
        # bounded look-ahead: never more than one piece plus one read of the stream
        assert result["lookahead"] <= step + 100_000, case["name"]


def test_invalid_parts_fail_where_the_vectors_say(page: Page) -> None:
    result = page.call("invalidParts")
    for base in result["bases"]:
        assert base["sha256"] == base["expected"], base["name"]
    for case, outcome in zip(INVALID["parts"], result["parts"], strict=True):
        assert outcome["name"] == case["name"]
        expected = case["expected"]
        for way in ("whole", "streamed"):
            error = outcome[way]
            assert error != "opened", (case["name"], way)
            assert error["name"] == "SealedFormatError", (case["name"], way, error)
            assert error["stage"] == expected["stage"], (case["name"], way, error)
            assert error["chunk"] == expected.get("chunk"), (case["name"], way, error)
        # streamed: exactly the chunks before the failing one verified
        assert outcome["verified"] == list(range(1, expected.get("chunk", 0) + 1)), case["name"]


@pytest.mark.parametrize(
    ("cases", "envelope"), [("unlocking", "envelope.json"), ("unlocking_v2", "envelope-v2.json")]
)
def test_unlocking_failures(page: Page, cases: str, envelope: str) -> None:
    results = page.call("unlockingFailures", {"cases": cases, "envelope": envelope})
    assert len(results) == len(INVALID[cases])
    for case, result in zip(INVALID[cases], results, strict=True):
        assert result["name"] == case["name"]
        outcome = result["outcome"]
        assert outcome != "opened", case["name"]
        assert outcome["name"] == "UnlockError", (case["name"], outcome)
        assert outcome["stage"] == case["expected"]["stage"], (case["name"], outcome)


# --- a whole envelope -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["envelope.json", "envelope-v2.json"])
def test_guest_opens_the_whole_envelope(page: Page, name: str) -> None:
    result = page.call("envelope", name)
    expected = load(name)["expected"]
    assert result["K"] == expected["content_key"]
    assert result["manifest"] == expected["manifest"]
    assert [p["plaintext"] for p in result["opened"]] == [p["plaintext"] for p in expected["parts"]]
    assert result["checks"] == [
        {"part": 1, "sha256": True, "size": True},
        {"part": 2, "sha256": True, "size": True},
    ]
    assert result["wrongEnvelope"]["ok"] is False
    assert result["wrongEnvelope"]["error"]["name"] == "SealedFormatError"  # header names another
    assert result["notManifest"]["ok"] is False
    assert result["notManifest"]["error"]["stage"] == "header"  # part 1 is not part 0


def test_a_25_mb_part_streams_through_fetch(page: Page) -> None:
    content_key, envelope_id = os.urandom(32), os.urandom(16)
    plaintext = os.urandom(25 * 1024 * 1024 + 12345)
    header = stream.PartHeader(envelope_id, 2)
    sealed = b"".join(stream.seal_part(content_key, header, [plaintext]))
    url = page.serve("big", sealed)
    result = page.call(
        "bigStream",
        {"url": url, "K": content_key.hex(), "envelopeId": envelope_id.hex(), "partId": 2},
    )
    page.server.blobs.pop("big")
    chunks = -(-len(plaintext) // stream.CHUNK_SIZE)
    assert result["sha256"] == sha256(plaintext)
    assert result["chunks"] == result["calls"] == chunks
    assert result["last"] == {"chunks": chunks, "bytes": len(plaintext), "sealedBytes": len(sealed)}


def test_streaming_reads_only_one_piece_ahead(page: Page) -> None:
    content_key, envelope_id = os.urandom(32), os.urandom(16)
    plaintext = os.urandom(1024 * 1024)
    sealed = b"".join(stream.seal_part(content_key, stream.PartHeader(envelope_id, 3), [plaintext]))
    piece = 1000
    result = page.call(
        "lookahead",
        {
            "url": page.serve("lookahead", sealed),
            "K": content_key.hex(),
            "envelopeId": envelope_id.hex(),
            "partId": 3,
            "pieceSize": piece,
        },
    )
    assert result["sha256"] == sha256(plaintext)
    step = stream.CHUNK_SIZE + stream.TAG_SIZE
    assert result["pulledAtFirst"] <= stream.HEADER_SIZE + step + piece
    assert result["most"] <= step + piece


# --- secure replies ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def reply_key() -> ReplyKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ReplyKey.from_pem(pem)


def test_reply_sealed_in_the_browser_opens_in_python(page: Page, reply_key: ReplyKey) -> None:
    binary = bytes(range(256)) * 600 + os.urandom(1000)  # several chunks once in base64
    envelope_id = ENVELOPE["server"]["envelope_id"]
    content = {
        "in_reply_to": envelope_id,
        "subject": "Re: Quartalszahlen f\u00fcr Q2",
        "text": "Danke! \u2603 \U0001f510\nZweite Zeile",
        "attachments": [
            {
                "filename": "figures.bin",
                "content_type": "application/octet-stream",
                "data": binary.hex(),
            },
            {"filename": "leer.txt", "content_type": "text/plain", "data": ""},
        ],
    }
    blob = keys.b64url_decode(
        page.call("sealReply", {"publicKey": reply_key.public_der.hex(), "content": content})
    )
    assert blob[:8] == b"SGREPLY1"
    opened = reply_key.open(blob, max_plaintext=1024 * 1024)
    assert opened.in_reply_to == envelope_id
    assert opened.subject == content["subject"]
    assert opened.text == content["text"]
    assert [(a.filename, a.content_type, a.data) for a in opened.attachments] == [
        ("figures.bin", "application/octet-stream", binary),
        ("leer.txt", "text/plain", b""),
    ]
    with pytest.raises(ReplyError, match="too big"):
        reply_key.open(blob, max_plaintext=200_000)
    prefix = 8 + 16 + 2 + 256
    for offset in (
        0,
        8,
        20,
        25,
        100,
        prefix,
        prefix + 20,
        prefix + 40,
        len(blob) // 2,
        len(blob) - 1,
    ):
        tampered = bytearray(blob)
        tampered[offset] ^= 0x01
        with pytest.raises(ReplyError) as refused:
            reply_key.open(bytes(tampered), max_plaintext=1024 * 1024)
        assert "Danke" not in str(refused.value)
    with pytest.raises(ReplyError):
        reply_key.open(blob[:-1], max_plaintext=1024 * 1024)


def test_reply_in_camel_case_with_a_blob(page: Page, reply_key: ReplyKey) -> None:
    envelope_id = "ab" * 16
    blob = keys.b64url_decode(
        page.call(
            "sealReplyCamelCase",
            {"publicKey": reply_key.public_der.hex(), "inReplyTo": envelope_id},
        )
    )
    opened = reply_key.open(blob, max_plaintext=4096)
    assert opened == ReplyContent(
        in_reply_to=envelope_id,
        subject="camel",
        text="from a Blob",
        attachments=opened.attachments,
    )
    assert [(a.filename, a.content_type, a.data) for a in opened.attachments] == [
        ("b.bin", "application/x-test", b"\x01\x02\x03")
    ]


def test_reply_refuses_a_weak_key_and_a_bad_envelope_id(page: Page, reply_key: ReplyKey) -> None:
    weak = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    refused = page.call("sealReplyRefused", {"publicKey": weak.hex(), "inReplyTo": "ab" * 16})
    assert refused["ok"] is False
    for bad_id in ("AB" * 16, "ab" * 15, "../x"):
        refused = page.call(
            "sealReplyRefused", {"publicKey": reply_key.public_der.hex(), "inReplyTo": bad_id}
        )
        assert refused["ok"] is False
        assert refused["error"]["name"] == "TypeError"
