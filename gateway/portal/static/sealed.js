// Sealgate's browser crypto: the reading side of the sealed envelope formats v2 and v1
// (docs/envelope-format.md §3, §5, §6, §7.1, §7.2, §9.1, §15) and the sealing side of
// secure replies (docs/envelope-format.md "Secure replies"), with WebCrypto only.
//
// Nothing here talks to the network or the page: callers pass bytes in and get
// bytes out. The link secret and every key stay in this module's locals.
//
// Failures are Error objects with a `name` saying which step refused:
//   LinkError          the link is not a well-formed Sealgate link (§3)
//   UnlockError        `stage` "private-key" (v1: wrong link or tampered record) or "unwrap"
//                      (v2: the wrapped K does not open; v1: RSA-OAEP)
//   SealedFormatError  `stage` "header" or "chunk", and `chunk` (the index that failed) for "chunk"
//   ManifestError      part 0 is not a format 1 manifest of this envelope
// Messages never contain key material or plaintext.

const HEADER_SIZE = 34;
const TAG_SIZE = 16;
const CHUNK_SIZE = 65536;
const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
const ID_SIZE = 16;
const KEY_SIZE = 32;
const NONCE_SIZE = 12;
const PRIVATE_KEY_VERSION = 1;
const GUEST_WRAP_VERSION = 2;
const GUEST_WRAPPED_SIZE = 1 + NONCE_SIZE + KEY_SIZE + TAG_SIZE;
const REPLY_MAGIC = "SGREPLY1";
const MIN_RSA_BITS = 2048;
const DEFAULT_TYPE = "application/octet-stream";

const encoder = new TextEncoder();
const LABEL = {
  magic: encoder.encode("SEALGATE"),
  partKey: encoder.encode("sealgate v1 part key"),
  guestKek: encoder.encode("sealgate v1 guest kek"),
  guestWrap: encoder.encode("sealgate v2 guest wrap"),
  guestWrapAad: encoder.encode("sealgate v2 content key "),
  privateKey: encoder.encode("sealgate v1 private key "),
};
const RSA_OAEP = { name: "RSA-OAEP", hash: "SHA-256" };
const B64URL = /^[A-Za-z0-9_-]*$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

// --- errors -------------------------------------------------------------------

/**
 * An Error whose `name` says which step refused, with extra fields (`stage`, ...).
 * Shared with account.js, whose failures follow the same conventions.
 * @param {string} name
 * @param {string} message  never key material or plaintext
 * @param {object} [fields]
 * @returns {Error}
 */
export function failure(name, message, fields = {}) {
  const error = new Error(message);
  error.name = name;
  return Object.assign(error, fields);
}

const linkError = (message) => failure("LinkError", `not a Sealgate link: ${message}`);
const headerError = (message) => failure("SealedFormatError", message, { stage: "header" });
const chunkError = (index, message) =>
  failure("SealedFormatError", `chunk ${index} ${message}`, { stage: "chunk", chunk: index });
const unlockError = (stage, message) => failure("UnlockError", message, { stage });

// --- bytes --------------------------------------------------------------------

/**
 * The pieces one after another, in a new array.
 * @param {...Uint8Array} pieces
 * @returns {Uint8Array}
 */
export function concat(...pieces) {
  const out = new Uint8Array(pieces.reduce((total, piece) => total + piece.length, 0));
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

function uint32be(value) {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

function uint16be(value) {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value);
  return bytes;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/**
 * A Uint8Array view of bytes given as a Uint8Array, ArrayBuffer or other view; TypeError otherwise.
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} value
 * @param {string} what  names the argument in the error
 * @returns {Uint8Array}
 */
export function asBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(`${what} must be bytes (Uint8Array)`);
}

/**
 * {@link asBytes}, and a TypeError unless there are exactly `size` of them.
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} value
 * @param {number} size
 * @param {string} what
 * @returns {Uint8Array}
 */
export function sizedBytes(value, size, what) {
  const bytes = asBytes(value, what);
  if (bytes.length !== size) throw new TypeError(`${what} must be ${size} bytes`);
  return bytes;
}

/** 16 raw bytes from an id given as 32 hex characters (or already as bytes). */
function idBytes(id, what) {
  return sizedBytes(typeof id === "string" ? hexToBytes(id) : id, ID_SIZE, what);
}

/** Bytes as a "binary string" for btoa, in slices: large inputs must not overflow the stack. */
function binaryString(bytes) {
  const slice = 0x8000;
  const parts = [];
  for (let at = 0; at < bytes.length; at += slice) {
    parts.push(String.fromCharCode.apply(null, bytes.subarray(at, at + slice)));
  }
  return parts.join("");
}

/** Standard base64 (with padding), as secure replies carry attachments. */
function base64Encode(bytes) {
  const slice = 3 * 0x4000; // a multiple of 3: the encoded slices join without padding inside
  const parts = [];
  for (let at = 0; at < bytes.length; at += slice) {
    parts.push(btoa(binaryString(bytes.subarray(at, at + slice))));
  }
  return parts.join("");
}

/**
 * Strict base64url without padding (RFC 4648 §5): one spelling per value.
 * Throws on foreign characters, padding, an impossible length or non-zero unused bits.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function b64urlDecode(text) {
  if (typeof text !== "string" || !B64URL.test(text) || text.length % 4 === 1) {
    throw new Error("not valid base64url");
  }
  const standard = text.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(standard + "=".repeat((4 - (text.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  if (b64urlEncode(bytes) !== text) throw new Error("not valid base64url (non-canonical)");
  return bytes;
}

/**
 * base64url without padding.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function b64urlEncode(bytes) {
  const standard = base64Encode(asBytes(bytes, "data"));
  return standard.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Bytes from hexadecimal (either case); throws on an odd length or a non-hex character.
 * @param {string} hex
 * @returns {Uint8Array}
 */
export function hexToBytes(hex) {
  if (typeof hex !== "string" || !HEX.test(hex)) throw new Error("not valid hexadecimal");
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * Lower-case hexadecimal.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function bytesToHex(bytes) {
  return Array.from(asBytes(bytes, "data"), (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- primitives (docs §1) -------------------------------------------------------

/**
 * HKDF-SHA256 with an empty salt, 32 bytes out (docs §1).
 * @param {Uint8Array} ikm
 * @param {Uint8Array} info
 * @returns {Promise<Uint8Array>}
 */
export async function hkdf(ikm, info) {
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info },
    key,
    256,
  );
  return new Uint8Array(bits);
}

function aesKey(raw, usage) {
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, [usage]);
}

async function aesDecrypt(key, iv, additionalData, sealed) {
  const params = { name: "AES-GCM", iv, additionalData, tagLength: 128 };
  return new Uint8Array(await crypto.subtle.decrypt(params, key, sealed));
}

async function aesEncrypt(key, iv, additionalData, plaintext) {
  const params = { name: "AES-GCM", iv, additionalData, tagLength: 128 };
  return new Uint8Array(await crypto.subtle.encrypt(params, key, plaintext));
}

// --- the link (§3) ------------------------------------------------------------

/**
 * Parse a notification link `PORTAL/m/<link id>#<secret>` (docs §3). Throws a LinkError on
 * anything the specification says to refuse. The secret must never be sent anywhere.
 * @param {string} href  usually `location.href`
 * @returns {{linkId: Uint8Array, secret: Uint8Array, linkIdText: string}}
 */
export function parseLink(href) {
  let url;
  try {
    url = new URL(href);
  } catch {
    throw linkError("not a URL");
  }
  const segments = url.pathname.replace(/\/+$/, "").split("/");
  const linkIdText = segments.at(-1);
  if (segments.length < 2 || segments.at(-2) !== "m" || !linkIdText) {
    throw linkError("expected /m/LINK-ID");
  }
  const secretText = url.hash.slice(1);
  if (!secretText) throw linkError("the secret after # is missing");
  const linkId = decodeLinkField(linkIdText, ID_SIZE, "link id");
  const secret = decodeLinkField(secretText, KEY_SIZE, "secret");
  return { linkId, secret, linkIdText };
}

function decodeLinkField(text, size, what) {
  let bytes;
  try {
    bytes = b64urlDecode(text);
  } catch {
    throw linkError(`the ${what} is not canonical base64url`);
  }
  if (bytes.length !== size) throw linkError(`the ${what} has the wrong length`);
  return bytes;
}

// --- unlocking: guest KEK, private key, K (§6, §7.1, §7.2) -------------------------

function guestKek(secret, linkId) {
  return hkdf(secret, concat(LABEL.guestKek, linkId));
}

async function decryptPrivateKey(kekBytes, blob, owner) {
  if (blob.length < 1 + NONCE_SIZE + TAG_SIZE || blob[0] !== PRIVATE_KEY_VERSION) {
    throw unlockError("private-key", "the encrypted private key is damaged or of unknown version");
  }
  const kek = await aesKey(kekBytes, "decrypt");
  const nonce = blob.subarray(1, 1 + NONCE_SIZE);
  const sealed = blob.subarray(1 + NONCE_SIZE);
  try {
    return await aesDecrypt(kek, nonce, concat(LABEL.privateKey, owner), sealed);
  } catch {
    throw unlockError("private-key", "the private key does not open: wrong link or tampering");
  }
}

async function unwrapContentKey(pkcs8, wrapped) {
  let K;
  try {
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, RSA_OAEP, false, ["decrypt"]);
    K = new Uint8Array(await crypto.subtle.decrypt({ name: "RSA-OAEP" }, privateKey, wrapped));
  } catch {
    throw unlockError("unwrap", "the wrapped content key does not open with this reader's key");
  }
  if (K.length !== KEY_SIZE) {
    throw unlockError("unwrap", "the wrapped content key has the wrong length");
  }
  return K;
}

// Format v2 (§15): K wrapped directly under a key derived from the link.
async function unwrapForLink(secret, linkId, envelopeId, readerId, wrapped) {
  if (wrapped.length !== GUEST_WRAPPED_SIZE || wrapped[0] !== GUEST_WRAP_VERSION) {
    throw unlockError("unwrap", "the wrapped content key is damaged or of unknown version");
  }
  const wrappingKey = await hkdf(secret, concat(LABEL.guestWrap, linkId));
  const key = await aesKey(wrappingKey, "decrypt").finally(() => wrappingKey.fill(0));
  const nonce = wrapped.subarray(1, 1 + NONCE_SIZE);
  try {
    return await aesDecrypt(key, nonce, concat(LABEL.guestWrapAad, envelopeId, readerId),
                            wrapped.subarray(1 + NONCE_SIZE));
  } catch {
    throw unlockError("unwrap", "the wrapped content key does not open: wrong link or tampering");
  }
}

/**
 * K wrapped for a new guest link (docs §15, format v2): what the sealing does for a guest,
 * done here when a sender sends a recipient a new link. The inverse of unwrapForLink.
 * @param {{linkId: Uint8Array, secret: Uint8Array, envelopeId: string, readerId: string,
 *          K: Uint8Array}} parts  ids in hex
 * @returns {Promise<Uint8Array>} the wrapped key, as the reader record keeps it
 */
export async function wrapForLink({ linkId, secret, envelopeId, readerId, K }) {
  secret = sizedBytes(secret, KEY_SIZE, "secret");
  linkId = sizedBytes(linkId, ID_SIZE, "link id");
  const wrappingKey = await hkdf(secret, concat(LABEL.guestWrap, linkId));
  const key = await aesKey(wrappingKey, "encrypt").finally(() => wrappingKey.fill(0));
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_SIZE));
  const aad = concat(LABEL.guestWrapAad, idBytes(envelopeId, "envelope id"), idBytes(readerId, "reader id"));
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: aad }, key, sizedBytes(K, KEY_SIZE, "K")));
  return concat(Uint8Array.of(GUEST_WRAP_VERSION), nonce, sealed);
}

/**
 * A guest's way from the link to the content key K (docs §9.1 steps 3-5, §15).
 * A format v2 reader record has no encrypted private key: K is wrapped under the
 * link itself. A v1 record has one: the link opens the reader's private key, which
 * unwraps K. Rejects with an UnlockError whose `stage` is "private-key" or "unwrap".
 * @param {{linkId: Uint8Array, secret: Uint8Array, envelopeId: string, readerId: string,
 *          encryptedPrivateKey: Uint8Array|null, wrappedKey: Uint8Array}} record
 *   linkId and secret from {@link parseLink}; the rest from the portal (ids in hex)
 * @returns {Promise<Uint8Array>} K, 32 bytes
 */
export async function unlockGuest({
  linkId, secret, envelopeId, readerId, encryptedPrivateKey, wrappedKey,
}) {
  const owner = idBytes(readerId, "reader id");
  secret = sizedBytes(secret, KEY_SIZE, "secret");
  linkId = sizedBytes(linkId, ID_SIZE, "link id");
  const wrapped = asBytes(wrappedKey, "wrapped key");
  if (encryptedPrivateKey === null || encryptedPrivateKey === undefined) {
    return unwrapForLink(secret, linkId, idBytes(envelopeId, "envelope id"), owner, wrapped);
  }
  const kek = await guestKek(secret, linkId);
  const blob = asBytes(encryptedPrivateKey, "encrypted private key");
  const pkcs8 = await decryptPrivateKey(kek, blob, owner).finally(() => kek.fill(0));
  try {
    return await unwrapContentKey(pkcs8, wrapped);
  } finally {
    pkcs8.fill(0); // drop the private key (§9.1 step 5)
  }
}

// --- sealed parts (§5) ----------------------------------------------------------

function partHeader(envelopeId, partId) {
  const versionAndSuite = Uint8Array.of(1, 1);
  return concat(LABEL.magic, versionAndSuite, uint32be(CHUNK_SIZE), envelopeId, uint32be(partId));
}

/** Checks §5.6 step 2; returns the chunk size. */
function checkHeader(header, envelopeId, partId) {
  const fields = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
  const chunkSize = fields.getUint32(10);
  if (!equalBytes(header.subarray(0, 8), LABEL.magic)) {
    throw headerError("not a Sealgate sealed part (bad magic)");
  }
  if (header[8] !== 1 || header[9] !== 1) {
    throw headerError(`unsupported sealed format ${header[8]}.${header[9]}`);
  }
  if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    throw headerError(`implausible chunk size ${chunkSize}`);
  }
  if (!equalBytes(header.subarray(14, 30), envelopeId) || fields.getUint32(30) !== partId) {
    throw headerError("sealed part belongs to another envelope or part");
  }
  return chunkSize;
}

async function partKey(K, envelopeId, partId, usage) {
  const info = concat(LABEL.partKey, envelopeId, uint32be(partId));
  return aesKey(await hkdf(sizedBytes(K, KEY_SIZE, "K"), info), usage);
}

function chunkNonce(index, last) {
  return concat(new Uint8Array(7), uint32be(index), Uint8Array.of(last ? 1 : 0));
}

async function openChunk(key, header, index, last, sealed) {
  if (sealed.length < TAG_SIZE) throw chunkError(index, "is truncated");
  try {
    return await aesDecrypt(key, chunkNonce(index, last), header, sealed);
  } catch {
    throw chunkError(index, "failed authentication (tampered, truncated or reordered)");
  }
}

function checkPartId(partId) {
  if (!Number.isInteger(partId) || partId < 0 || partId > 0xffffffff) {
    throw new TypeError("part id must be an integer from 0 to 2^32 - 1");
  }
  return partId;
}

/**
 * Open a sealed part held whole in memory (docs §5.6).
 * Rejects with a SealedFormatError (`stage` "header" or "chunk", `chunk`) on any failure;
 * the part is valid only when this resolves.
 * @param {Uint8Array} K  the content key
 * @param {string} envelopeId  32 hex characters, from the portal (not from the blob)
 * @param {number} partId
 * @param {Uint8Array} blob  the sealed part
 * @returns {Promise<Uint8Array[]>} the plaintext chunks, in order
 */
export async function openPart(K, envelopeId, partId, blob) {
  const E = idBytes(envelopeId, "envelope id");
  const data = asBytes(blob, "sealed part");
  checkPartId(partId);
  if (data.length < HEADER_SIZE) throw headerError("sealed part is shorter than its header");
  const header = data.slice(0, HEADER_SIZE);
  const step = checkHeader(header, E, partId) + TAG_SIZE;
  const key = await partKey(K, E, partId, "decrypt");
  const body = data.subarray(HEADER_SIZE);
  const count = Math.max(1, Math.ceil(body.length / step));
  const chunks = [];
  for (let index = 0; index < count; index++) {
    const sealed = body.subarray(index * step, (index + 1) * step);
    chunks.push(await openChunk(key, header, index, index === count - 1, sealed));
  }
  return chunks;
}

/** The front of a byte stream: pieces as they arrived, taken out in exact sizes. */
class ByteQueue {
  constructor() {
    this.pieces = [];
    this.offset = 0; // bytes of pieces[0] already taken
    this.length = 0;
  }

  push(piece) {
    if (piece.length === 0) return;
    this.pieces.push(piece);
    this.length += piece.length;
  }

  take(size) {
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const piece = this.pieces[0];
      const n = Math.min(size - at, piece.length - this.offset);
      out.set(piece.subarray(this.offset, this.offset + n), at);
      at += n;
      this.offset += n;
      if (this.offset === piece.length) {
        this.pieces.shift();
        this.offset = 0;
      }
    }
    this.length -= size;
    return out;
  }
}

/** Reads a ReadableStream into a ByteQueue on demand. */
class StreamSource {
  constructor(readable) {
    this.reader = readable.getReader();
    this.queue = new ByteQueue();
    this.ended = false;
  }

  /** Read until at least `size` bytes are queued or the stream ended. */
  async fill(size) {
    while (!this.ended && this.queue.length < size) {
      const { value, done } = await this.reader.read();
      if (done) this.ended = true;
      else this.queue.push(asBytes(value, "stream data"));
    }
  }

  async close() {
    if (!this.ended) await this.reader.cancel().catch(() => {});
    this.reader.releaseLock();
  }
}

/**
 * Open a sealed part as it arrives, chunk by chunk (docs §5.6, streaming reader). It reads
 * just past each piece to learn whether that piece is the last, so it holds at most one
 * piece plus one read of the stream besides the plaintext it returns.
 *
 * Rejects with a SealedFormatError (`stage`, `chunk`) on any failure, after cancelling the
 * stream; then nothing it released (via onProgress) may be used. Only a resolved promise
 * means the whole part verified.
 *
 * With fetch: `openPartStream(K, envelopeId, n, (await fetch(url, {method: "POST", ...})).body)`
 * after checking `response.ok`.
 *
 * @param {Uint8Array} K  the content key
 * @param {string} envelopeId  32 hex characters, from the portal (not from the blob)
 * @param {number} partId
 * @param {ReadableStream<Uint8Array>} readable  the sealed part, e.g. `response.body`
 * @param {(progress: {chunks: number, bytes: number, sealedBytes: number}) => void} [onProgress]
 *   called after each chunk verified: chunks and plaintext bytes so far, sealed bytes consumed
 * @returns {Promise<Uint8Array[]>} the plaintext chunks, in order
 */
export async function openPartStream(K, envelopeId, partId, readable, onProgress) {
  const E = idBytes(envelopeId, "envelope id");
  checkPartId(partId);
  const source = new StreamSource(readable);
  try {
    await source.fill(HEADER_SIZE);
    if (source.queue.length < HEADER_SIZE) {
      throw headerError("sealed part is shorter than its header");
    }
    const header = source.queue.take(HEADER_SIZE);
    const step = checkHeader(header, E, partId) + TAG_SIZE;
    const key = await partKey(K, E, partId, "decrypt");
    const chunks = [];
    let bytes = 0;
    let sealedBytes = HEADER_SIZE;
    for (let index = 0; ; index++) {
      await source.fill(step + 1); // one byte past this piece says whether it is the last
      const last = source.queue.length <= step;
      const sealed = source.queue.take(Math.min(step, source.queue.length));
      const plaintext = await openChunk(key, header, index, last, sealed);
      chunks.push(plaintext);
      bytes += plaintext.length;
      sealedBytes += sealed.length;
      onProgress?.({ chunks: index + 1, bytes, sealedBytes });
      if (last) return chunks;
    }
  } finally {
    await source.close();
  }
}

/**
 * Open part 0 and parse it as the manifest (docs §8, §9.1 step 6): UTF-8 JSON with
 * `format` 1 and this `envelope_id`. Rejects with a SealedFormatError or a ManifestError.
 * @param {Uint8Array} K
 * @param {string} envelopeId  32 hex characters
 * @param {Uint8Array} blob  sealed part 0
 * @returns {Promise<object>}
 */
export async function readManifest(K, envelopeId, blob) {
  const expectedId = bytesToHex(idBytes(envelopeId, "envelope id"));
  const chunks = await openPart(K, envelopeId, 0, blob);
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(concat(...chunks)));
  } catch {
    throw failure("ManifestError", "the manifest is not UTF-8 JSON");
  }
  if (manifest === null || typeof manifest !== "object" || Array.isArray(manifest)) {
    throw failure("ManifestError", "the manifest is not a JSON object");
  }
  if (manifest.format !== 1) throw failure("ManifestError", "the manifest is not format 1");
  if (manifest.envelope_id !== expectedId) {
    throw failure("ManifestError", "the manifest belongs to another envelope");
  }
  return manifest;
}

/**
 * SHA-256 of the concatenated chunks, as lower-case hex (to compare with the manifest).
 * @param {Uint8Array[]} chunks
 * @returns {Promise<string>}
 */
export async function sha256Hex(chunks) {
  const data = chunks instanceof Uint8Array ? chunks : concat(...chunks);
  return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data)));
}

// --- secure replies ------------------------------------------------------------

async function sealPart(K, envelopeId, partId, plaintext) {
  const header = partHeader(envelopeId, partId);
  const key = await partKey(K, envelopeId, partId, "encrypt");
  const count = Math.max(1, Math.ceil(plaintext.length / CHUNK_SIZE));
  const pieces = [header];
  for (let index = 0; index < count; index++) {
    const chunk = plaintext.subarray(index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE);
    pieces.push(await aesEncrypt(key, chunkNonce(index, index === count - 1), header, chunk));
  }
  return pieces;
}

async function replyPublicKey(publicKeyDer) {
  const der = asBytes(publicKeyDer, "public key");
  const key = await crypto.subtle.importKey("spki", der, RSA_OAEP, false, ["encrypt"]);
  if (key.algorithm.modulusLength < MIN_RSA_BITS) throw new Error("the reply key is too small");
  return key;
}

async function attachmentBytes(data) {
  if (typeof Blob !== "undefined" && data instanceof Blob) {
    return new Uint8Array(await data.arrayBuffer());
  }
  return asBytes(data, "attachment data");
}

/** The reply's plaintext document; accepts snake_case (as on the wire) or camelCase names. */
async function replyDocument(content) {
  const inReplyTo = content.in_reply_to ?? content.inReplyTo;
  if (typeof inReplyTo !== "string" || !/^[0-9a-f]{32}$/.test(inReplyTo)) {
    throw new TypeError("in_reply_to must be the envelope id: 32 lower-case hex characters");
  }
  const attachments = [];
  for (const attachment of content.attachments ?? []) {
    attachments.push({
      filename: String(attachment.filename ?? ""),
      content_type: String(attachment.content_type ?? attachment.contentType ?? DEFAULT_TYPE),
      data: base64Encode(await attachmentBytes(attachment.data)),
    });
  }
  return {
    format: 1,
    in_reply_to: inReplyTo,
    subject: String(content.subject ?? ""),
    text: String(content.text ?? ""),
    attachments,
  };
}

/**
 * @typedef {object} ReplyAttachment
 * @property {string} filename  as the reader named it (the gateway sanitises it)
 * @property {string} [content_type]  e.g. `file.type`; application/octet-stream if absent
 * @property {Uint8Array|ArrayBuffer|Blob} data  a File from an <input type=file> will do
 */

/**
 * Seal a secure reply to the gateway's reply key (docs "Secure replies"):
 * `"SGREPLY1" ‖ reply id ‖ uint16be(len(wrapped K)) ‖ wrapped K ‖ sealed part 0`.
 * The camelCase spellings inReplyTo and contentType are accepted too.
 * @param {Uint8Array} publicKeyDer  the reply key, SubjectPublicKeyInfo DER (RSA, ≥ 2048 bits)
 * @param {{in_reply_to: string, subject?: string, text?: string,
 *          attachments?: ReplyAttachment[]}} content
 *   in_reply_to: the envelope id being answered, 32 lower-case hex characters
 * @returns {Promise<Uint8Array>} the reply blob, to POST as application/octet-stream
 */
export async function sealReply(publicKeyDer, content) {
  const publicKey = await replyPublicKey(publicKeyDer);
  const plaintext = encoder.encode(JSON.stringify(await replyDocument(content)));
  const K = crypto.getRandomValues(new Uint8Array(KEY_SIZE));
  const replyId = crypto.getRandomValues(new Uint8Array(ID_SIZE));
  const wrapped = new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, K));
  const sealed = await sealPart(K, replyId, 0, plaintext);
  return concat(encoder.encode(REPLY_MAGIC), replyId, uint16be(wrapped.length), wrapped, ...sealed);
}
