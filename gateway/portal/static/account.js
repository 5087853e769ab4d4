// Sealgate's browser crypto for account holders (docs/envelope-format.md §6, §7.1, §7.3, §9.2),
// with WebCrypto only; the Python twin is gateway/envelope/keys.py. The password-derived keys,
// the account key pair made in the browser, its private key sealed under the password, and the
// content key K unwrapped with it or wrapped to it.
//
// Nothing here talks to the network or the page. The password, the PBKDF2 master key and the
// KEK's bytes stay in this module's locals and are overwritten once used; the KEK and the
// opened private key are CryptoKeys that cannot be exported. The login secret is the one
// derived value meant for the server: it proves the password, and the server keeps only an
// Argon2id hash of it.
//
// An account's address is the owner in its private key's AAD, as the server stores it
// (lower-cased by Python's str.lower() at creation). Pass that string byte for byte: this
// module does not lower-case it (JavaScript's and Python's case mappings can differ, §7.1),
// and refuses one with ASCII capitals, which the server never stores.
//
// Failures are Error objects named as in sealed.js:
//   UnlockError  `stage` "kdf" (the account's PBKDF2 parameters are too weak), "private-key"
//                (wrong password, wrong address or tampering) or "unwrap" (the wrapped K does
//                not open with this key, or is not 32 bytes)
//   TypeError, RangeError  an argument of the wrong kind
// Messages never contain the password or key material.

import { asBytes, concat, failure, hkdf, sizedBytes } from "./sealed.js";

const KEY_SIZE = 32;
const NONCE_SIZE = 12;
const TAG_SIZE = 16;
const PRIVATE_KEY_VERSION = 1;
const PBKDF2_MIN_ITERATIONS = 600000;
const RSA_SIZES = [2048, 3072, 4096];
const RSA_OAEP = { name: "RSA-OAEP", hash: "SHA-256" };

const encoder = new TextEncoder();
const LABEL = {
  kek: encoder.encode("sealgate v1 account kek"),
  login: encoder.encode("sealgate v1 account login"),
  privateKey: encoder.encode("sealgate v1 private key "),
};

const unlockError = (stage, message) => failure("UnlockError", message, { stage });

/** The owner in the private key's AAD (§7.1): the stored address's UTF-8, not re-cased. */
function ownerBytes(address) {
  if (typeof address !== "string" || address === "" || address !== address.trim()) {
    throw new TypeError("the address must be the account's address as the server stores it");
  }
  if (/[A-Z]/.test(address)) {
    throw new TypeError("the address has capitals: pass it as the server stores it (lower-cased)");
  }
  return encoder.encode(address);
}

function aesGcm(nonce, owner) {
  return { name: "AES-GCM", iv: nonce, additionalData: concat(LABEL.privateKey, owner),
           tagLength: 128 };
}

function checkKey(key, type, usage, what) {
  if (!(key instanceof CryptoKey) || key.type !== type || !key.usages.includes(usage)) {
    throw new TypeError(`${what} must be a CryptoKey for ${usage}`);
  }
}

/**
 * The account's key-encryption key and login secret from its password (docs §7.3):
 * master = PBKDF2-HMAC-SHA256(UTF-8(NFC(password)), salt, iterations, 32 bytes), then
 * KEK = HKDF(master, "sealgate v1 account kek"), login secret = HKDF(master, "sealgate v1
 * account login"). Rejects with an UnlockError (`stage` "kdf") below 600,000 iterations,
 * before any work.
 * @param {string} password  as typed; composed and decomposed spellings are one password
 * @param {Uint8Array} salt  the account's kdf_salt
 * @param {number} iterations  the account's kdf_iterations
 * @returns {Promise<{kek: CryptoKey, loginSecret: Uint8Array}>}
 *   kek: AES-GCM, not extractable, for encryptPrivateKey and decryptPrivateKey only;
 *   loginSecret: 32 bytes, to send to the server at login
 */
export async function deriveAccountKeys(password, salt, iterations) {
  if (typeof password !== "string") throw new TypeError("the password must be a string");
  if (!Number.isSafeInteger(iterations)) throw new TypeError("iterations must be an integer");
  if (iterations < PBKDF2_MIN_ITERATIONS) {
    throw unlockError("kdf", `PBKDF2 needs at least ${PBKDF2_MIN_ITERATIONS} iterations; ` +
                             `the account asks for ${iterations}`);
  }
  const secret = encoder.encode(password.normalize("NFC"));
  const passwordKey = await crypto.subtle.importKey("raw", secret, "PBKDF2", false, ["deriveBits"])
    .finally(() => secret.fill(0));
  const params = { name: "PBKDF2", hash: "SHA-256", salt: asBytes(salt, "salt"), iterations };
  const master = new Uint8Array(await crypto.subtle.deriveBits(params, passwordKey, 256));
  try {
    const kekBytes = await hkdf(master, LABEL.kek);
    // unwrapKey, not decrypt: the private key's PKCS#8 never reaches JavaScript on the way in.
    const kek = await crypto.subtle.importKey("raw", kekBytes, "AES-GCM", false,
                                              ["encrypt", "unwrapKey"])
      .finally(() => kekBytes.fill(0));
    return { kek, loginSecret: await hkdf(master, LABEL.login) };
  } finally {
    master.fill(0);
  }
}

/**
 * The KEK of an account that signs in with single sign-on, as the server derived it from the
 * key secret the organisation's identity provider released (docs/identity.md), imported like
 * a password's KEK; the bytes are overwritten once imported.
 * @param {Uint8Array} raw  32 bytes
 * @returns {Promise<CryptoKey>}  AES-GCM, not extractable
 */
export async function importKek(raw) {
  const bytes = sizedBytes(raw, KEY_SIZE, "kek");
  return crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "unwrapKey"])
    .finally(() => bytes.fill(0));
}

/**
 * A new account key pair (RSA-OAEP, SHA-256, e = 65537), as DER for the server and for
 * {@link encryptPrivateKey}. The caller encrypts the private key and then overwrites
 * `privateKeyPkcs8` (`.fill(0)`); it is never sent anywhere in the clear.
 * @param {number} [bits]  2048, 3072 or 4096
 * @returns {Promise<{publicKeyDer: Uint8Array, privateKeyPkcs8: Uint8Array}>}
 *   publicKeyDer: SubjectPublicKeyInfo; privateKeyPkcs8: PKCS#8
 */
export async function generateAccountKeyPair(bits = 2048) {
  if (!RSA_SIZES.includes(bits)) {
    throw new RangeError(`RSA key size must be one of ${RSA_SIZES.join(", ")}`);
  }
  const algorithm = { ...RSA_OAEP, modulusLength: bits, publicExponent: Uint8Array.of(1, 0, 1) };
  const pair = await crypto.subtle.generateKey(algorithm, true, ["encrypt", "decrypt"]);
  const [spki, pkcs8] = await Promise.all([
    crypto.subtle.exportKey("spki", pair.publicKey),
    crypto.subtle.exportKey("pkcs8", pair.privateKey),
  ]);
  return { publicKeyDer: new Uint8Array(spki), privateKeyPkcs8: new Uint8Array(pkcs8) };
}

/**
 * The account's private key as the server stores it (docs §7.1):
 * `0x01 ‖ nonce ‖ AES-256-GCM(KEK, nonce, aad = "sealgate v1 private key " ‖ address, pkcs8)`.
 * @param {CryptoKey} kek  from {@link deriveAccountKeys}
 * @param {Uint8Array} pkcs8  from {@link generateAccountKeyPair}
 * @param {string} address  the account's address as the server stores it
 * @returns {Promise<Uint8Array>}
 */
export async function encryptPrivateKey(kek, pkcs8, address) {
  checkKey(kek, "secret", "encrypt", "the KEK");
  const owner = ownerBytes(address);
  const plaintext = asBytes(pkcs8, "private key");
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_SIZE));
  const sealed = await crypto.subtle.encrypt(aesGcm(nonce, owner), kek, plaintext);
  return concat(Uint8Array.of(PRIVATE_KEY_VERSION), nonce, new Uint8Array(sealed));
}

/**
 * Open the account's encrypted private key (docs §7.1, §9.2 step 4) into a CryptoKey that
 * cannot be exported and only decrypts. Rejects with an UnlockError (`stage` "private-key")
 * on a damaged blob, another version, a wrong password (KEK) or another address.
 * @param {CryptoKey} kek  from {@link deriveAccountKeys}
 * @param {Uint8Array} blob  the account's encrypted private key
 * @param {string} address  the account's address as the server stores it
 * @returns {Promise<CryptoKey>}  RSA-OAEP SHA-256 private key, usage "decrypt"
 */
export async function decryptPrivateKey(kek, blob, address) {
  checkKey(kek, "secret", "unwrapKey", "the KEK");
  const owner = ownerBytes(address);
  const data = asBytes(blob, "encrypted private key");
  if (data.length < 1 + NONCE_SIZE + TAG_SIZE || data[0] !== PRIVATE_KEY_VERSION) {
    throw unlockError("private-key", "the encrypted private key is damaged or of unknown version");
  }
  const params = aesGcm(data.subarray(1, 1 + NONCE_SIZE), owner);
  try {
    return await crypto.subtle.unwrapKey("pkcs8", data.subarray(1 + NONCE_SIZE), kek, params,
                                         RSA_OAEP, false, ["decrypt"]);
  } catch {
    throw unlockError("private-key",
                      "the private key does not open: wrong password, wrong address or tampering");
  }
}

/**
 * K from an account reader's wrapped key (docs §6, §9.2 step 5): RSA-OAEP-SHA256 with an
 * empty label. Rejects with an UnlockError (`stage` "unwrap") if it does not open or is not
 * 32 bytes.
 * @param {CryptoKey} privateKey  from {@link decryptPrivateKey}
 * @param {Uint8Array} wrapped  the reader record's wrapped K
 * @returns {Promise<Uint8Array>} K, 32 bytes, as openPart and readManifest take it
 */
export async function unwrapAccountContentKey(privateKey, wrapped) {
  checkKey(privateKey, "private", "decrypt", "the private key");
  const data = asBytes(wrapped, "wrapped key");
  let K;
  try {
    K = new Uint8Array(await crypto.subtle.decrypt({ name: "RSA-OAEP" }, privateKey, data));
  } catch {
    throw unlockError("unwrap", "the wrapped content key does not open with this account's key");
  }
  if (K.length !== KEY_SIZE) {
    K.fill(0);
    throw unlockError("unwrap", "the wrapped content key has the wrong length");
  }
  return K;
}

/**
 * K wrapped to an account's public key (docs §6), e.g. to claim a guest's message into the
 * account: the gateway's keys.unwrap_content_key opens it with the account's private key.
 * @param {Uint8Array} publicKeyDer  the account's public key, SubjectPublicKeyInfo (RSA ≥ 2048)
 * @param {Uint8Array} K  the content key, 32 bytes
 * @returns {Promise<Uint8Array>} the wrapped K
 */
export async function rewrapContentKey(publicKeyDer, K) {
  const contentKey = sizedBytes(K, KEY_SIZE, "K");
  const der = asBytes(publicKeyDer, "public key");
  let publicKey;
  try {
    publicKey = await crypto.subtle.importKey("spki", der, RSA_OAEP, false, ["encrypt"]);
  } catch {
    throw new TypeError("the public key is not an RSA SubjectPublicKeyInfo");
  }
  if (publicKey.algorithm.modulusLength < RSA_SIZES[0]) {
    throw new RangeError(`the account key has fewer than ${RSA_SIZES[0]} bits`);
  }
  return new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, contentKey));
}

/**
 * The encrypted private key under a new password's KEK (changing the password, docs/accounts.md):
 * opened with the old KEK into a key that exists only for this call, exported, sealed under the
 * new KEK for the same owner, and the plaintext bytes overwritten. Rejects as
 * {@link decryptPrivateKey} when the old KEK does not open it.
 * @param {CryptoKey} oldKek  from {@link deriveAccountKeys} with the current password
 * @param {Uint8Array} blob  the account's encrypted private key
 * @param {CryptoKey} newKek  from {@link deriveAccountKeys} with the new password and salt
 * @param {string} address  the account's address as the server stores it
 * @returns {Promise<Uint8Array>} the private key sealed under newKek
 */
export async function reencryptPrivateKey(oldKek, blob, newKek, address) {
  checkKey(oldKek, "secret", "unwrapKey", "the old KEK");
  checkKey(newKek, "secret", "encrypt", "the new KEK");
  const owner = ownerBytes(address);
  const data = asBytes(blob, "encrypted private key");
  if (data.length < 1 + NONCE_SIZE + TAG_SIZE || data[0] !== PRIVATE_KEY_VERSION) {
    throw unlockError("private-key", "the encrypted private key is damaged or of unknown version");
  }
  const params = aesGcm(data.subarray(1, 1 + NONCE_SIZE), owner);
  let opened;
  try {
    opened = await crypto.subtle.unwrapKey("pkcs8", data.subarray(1 + NONCE_SIZE), oldKek, params,
                                           RSA_OAEP, true, ["decrypt"]);
  } catch {
    throw unlockError("private-key",
                      "the private key does not open: wrong password, wrong address or tampering");
  }
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", opened));
  try {
    return await encryptPrivateKey(newKek, pkcs8, address);
  } finally {
    pkcs8.fill(0);
  }
}
