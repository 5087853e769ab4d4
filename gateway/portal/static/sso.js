// After the organisation's single sign-on (docs/identity.md): the account's key, opened or made
// in this browser with the KEK the server derived from the key secret for this sign-in only.
//
// The page carries, never cached, the mode and what it needs (gateway/identity/ssoaccounts.py):
//   signed-in  open the private key with `kek`
//   rotate     open it with `kek` (the previous secret's), seal it under `new_kek`, send it back
//   convert    open it with the account's password, typed once, seal it under `new_kek`
//   new-key    after a warning, a new key pair sealed under `new_kek` (what was sealed to the old
//              key can no longer be read)
//   create     the first sign-in: a new key pair sealed under `new_kek`
// Then the key is kept (keyring.js) and the browser goes on to the page it came for.

import {
  decryptPrivateKey,
  deriveAccountKeys,
  encryptPrivateKey,
  generateAccountKeyPair,
  importKek,
  reencryptPrivateKey,
} from "./account.js";
import { rememberKey } from "./keyring.js";
import { $, ApiError, NetworkError, gettext, postJson, setText, setup } from "./pagekit.js";
import { b64urlDecode, b64urlEncode } from "./sealed.js";

const element = $("sg-page");
const page = JSON.parse(element.textContent);
element.remove(); // the keys leave the page once read

function show(id) {
  for (const section of ["sg-sso-working", "sg-sso-convert", "sg-sso-new-key"]) $(section).hidden = section !== id;
  $(id).querySelector("h1")?.focus();
}

function fail(error) {
  show("sg-sso-working");
  setText("sg-sso-status", "");
  if (error instanceof NetworkError) {
    setText("sg-error", gettext("There is no connection to the server. Check your internet connection and try again."));
  } else if (error?.name === "UnlockError" && error.stage === "private-key") {
    setText("sg-error", gettext("The password is not right."));
    show("sg-sso-convert");
  } else if (error instanceof ApiError && error.status === 401) {
    setText("sg-error", gettext("This sign-in took too long. Sign in again."));
  } else {
    setText("sg-error", gettext("Something went wrong on our side. Try again later."));
  }
}

async function done(privateKey, sealed) {
  await rememberKey(page.address, privateKey, sealed);
  location.replace(page.next || "/");
}

async function openKey() {
  const sealed = b64urlDecode(page.encrypted_private_key);
  await done(await decryptPrivateKey(await importKek(b64urlDecode(page.kek)), sealed, page.address), sealed);
}

// The same key pair, sealed under the new KEK, sent back with the renew token.
async function reseal(oldKek) {
  const newKek = await importKek(b64urlDecode(page.new_kek));
  const sealed = await reencryptPrivateKey(oldKek, b64urlDecode(page.encrypted_private_key), newKek, page.address);
  await postJson(page.api.renew, {
    address: page.address,
    token: page.renew_token,
    encrypted_private_key: b64urlEncode(sealed),
  });
  await done(await decryptPrivateKey(newKek, sealed, page.address), sealed);
}

async function newKey() {
  setText("sg-sso-status", gettext("Making your key…"));
  show("sg-sso-working");
  const kek = await importKek(b64urlDecode(page.new_kek));
  const pair = await generateAccountKeyPair(2048);
  const sealed = await encryptPrivateKey(kek, pair.privateKeyPkcs8, page.address);
  pair.privateKeyPkcs8.fill(0);
  await postJson(page.api.new_key, {
    address: page.address,
    token: page.new_key_token,
    public_key: b64urlEncode(pair.publicKeyDer),
    encrypted_private_key: b64urlEncode(sealed),
  });
  await done(await decryptPrivateKey(kek, sealed, page.address), sealed);
}

async function convert(event) {
  event.preventDefault();
  setText("sg-error", "");
  const password = $("sg-sso-password").value;
  if (!password) return;
  $("sg-sso-convert-submit").disabled = true;
  try {
    const unlocking = await postJson(page.api.unlocking, { address: page.address });
    const { kek, loginSecret } = await deriveAccountKeys(password, b64urlDecode(unlocking.salt), unlocking.iterations);
    loginSecret.fill(0);
    $("sg-sso-password").value = "";
    await reseal(kek);
  } catch (error) {
    fail(error);
  } finally {
    $("sg-sso-convert-submit").disabled = false;
  }
}

async function main() {
  setup({
    strings: page.strings,
    lang: document.documentElement.lang || "en",
    csrf: document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") || "",
  });
  $("sg-sso-convert-form").addEventListener("submit", convert);
  $("sg-sso-forgot").addEventListener("click", () => show("sg-sso-new-key"));
  $("sg-sso-new-key-submit").addEventListener("click", () => newKey().catch(fail));
  try {
    if (page.mode === "signed-in") await openKey();
    else if (page.mode === "rotate") await reseal(await importKek(b64urlDecode(page.kek)));
    else if (page.mode === "create") await newKey();
    else if (page.mode === "convert") show("sg-sso-convert");
    else show("sg-sso-new-key");
  } catch (error) {
    fail(error);
  }
}

main();
