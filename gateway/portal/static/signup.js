// Creating an account from a message the reader opened with an emailed code (docs/accounts.md).
//
// The password never leaves this page: account.js derives the key-encryption key and the
// login secret from it and makes the key pair; the server gets the public key, the private
// key sealed under the KEK, the salt and the login secret. The authenticator app is enrolled
// in the same step (the server's QR code, then one code from the app). Once the account is
// made, its private key stays in this browser (keyring.js), so the inbox opens signed in.

import {
  decryptPrivateKey,
  deriveAccountKeys,
  encryptPrivateKey,
  generateAccountKeyPair,
} from "./account.js";
import { rememberKey } from "./keyring.js";
import { $, ApiError, gettext, postJson, setText } from "./pagekit.js";
import { b64urlEncode } from "./sealed.js";
import { checkPassword } from "./strength.js";

const ITERATIONS = 600000;
const SALT_SIZE = 16;

const flow = {
  api: null, // {enrol, create, address}
  created: null, // called with the account's public key once it exists (to claim the message)
  keys: null, // a promise of {upload, kek, sealed}: made while the user scans the QR code
  token: "",
  busy: false,
};

export function offerSignUp(api, created) {
  flow.api = api;
  flow.created = created;
  setText(
    "sg-signup-intro",
    gettext(
      "With an account for %(address)s, new secure messages open with your password and an authenticator app, without a code by email each time, and you find them all in one place.",
      { address: api.address },
    ),
  );
  $("sg-signup").hidden = false;
  $("sg-signup-start").addEventListener("click", () => {
    $("sg-signup-start").hidden = true;
    $("sg-signup-form").hidden = false;
    $("sg-signup-password").focus();
  });
  $("sg-signup-password").addEventListener("input", showStrength);
  $("sg-signup-form").addEventListener("submit", choosePassword);
  $("sg-signup-code-form").addEventListener("submit", createAccount);
}

async function showStrength() {
  const password = $("sg-signup-password").value;
  const verdict = password ? await checkPassword(password, { userInputs: inputs() }) : null;
  setText("sg-signup-strength", verdict && !verdict.ok ? verdict.problems.map((p) => gettext(p)).join(" ") : "");
}

function inputs() {
  const address = flow.api.address;
  return [address, address.split("@")[0], document.title];
}

async function choosePassword(event) {
  event.preventDefault();
  if (flow.busy) return;
  setText("sg-signup-error", "");
  const password = $("sg-signup-password").value;
  const verdict = await checkPassword(password, { userInputs: inputs() });
  if (!verdict.ok) {
    setText("sg-signup-error", verdict.problems.map((p) => gettext(p)).join(" "));
    $("sg-signup-password").focus();
    return;
  }
  if ($("sg-signup-repeat").value !== password) {
    setText("sg-signup-error", gettext("The two passwords are not the same."));
    $("sg-signup-repeat").focus();
    return;
  }
  setBusy(true, gettext("Preparing your account…"));
  flow.keys = makeKeys(password, flow.api.address);
  flow.keys.catch(() => {}); // reported when the account is created
  $("sg-signup-password").value = "";
  $("sg-signup-repeat").value = "";
  try {
    const enrolment = await postJson(flow.api.enrol, {});
    flow.token = enrolment.token;
    showQr(enrolment.svg);
    setText("sg-signup-secret", groups(enrolment.secret));
    $("sg-signup-form").hidden = true;
    $("sg-signup-enrol").hidden = false;
    $("sg-signup-code").focus();
  } catch (error) {
    setText("sg-signup-error", describeSignUp(error));
  } finally {
    setBusy(false, "");
  }
}

// The account's keys from the password: 600,000 PBKDF2 rounds and an RSA key pair (made in
// the background while the reader sets up the app), in the form the server takes them.
export async function makeKeys(password, address) {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_SIZE));
  const { kek, loginSecret } = await deriveAccountKeys(password, salt, ITERATIONS);
  const pair = await generateAccountKeyPair(2048);
  const sealed = await encryptPrivateKey(kek, pair.privateKeyPkcs8, address);
  pair.privateKeyPkcs8.fill(0);
  const upload = {
    kdf: "pbkdf2-sha256",
    iterations: ITERATIONS,
    salt: b64urlEncode(salt),
    login_secret: b64urlEncode(loginSecret),
    public_key: b64urlEncode(pair.publicKeyDer),
    encrypted_private_key: b64urlEncode(sealed),
  };
  loginSecret.fill(0);
  return { upload, kek, sealed, publicKeyDer: pair.publicKeyDer };
}

async function createAccount(event) {
  event.preventDefault();
  if (flow.busy) return;
  setText("sg-signup-error", "");
  const code = $("sg-signup-code").value.replace(/\s+/g, "");
  setBusy(true, gettext("Creating your account…"));
  try {
    const { upload, kek, sealed, publicKeyDer } = await flow.keys;
    const created = await postJson(flow.api.create, { ...upload, totp_token: flow.token, totp_code: code });
    showRecoveryCodes(created.recovery_codes);
    await flow.created?.(publicKeyDer).catch(() => {}); // the message stays readable by its link
    const privateKey = await decryptPrivateKey(kek, sealed, flow.api.address);
    await rememberKey(flow.api.address, privateKey, sealed).catch(() => {}); // a private window: sign in later
    $("sg-signup-enrol").hidden = true;
    $("sg-signup-done").hidden = false;
    $("sg-signup-heading").focus();
  } catch (error) {
    setText("sg-signup-error", describeSignUp(error));
    $("sg-signup-code").select();
  } finally {
    setBusy(false, "");
  }
}

function describeSignUp(error) {
  if (!(error instanceof ApiError)) return gettext("Something went wrong on our side. Try again later.");
  switch (error.code) {
    case "enrolment":
      return gettext("That code is not right. Enter the code the app shows now.");
    case "account-exists":
      return gettext("This address has an account already. Sign in to it instead.");
    case "verify":
      return gettext("To create an account, first confirm with a code sent to your email address.");
    default:
      return gettext("Something went wrong on our side. Try again later.");
  }
}

// Shown once: the server keeps only their HMACs.
function showRecoveryCodes(codes) {
  const list = $("sg-signup-codes");
  list.replaceChildren(
    ...(Array.isArray(codes) ? codes : []).map((code) => {
      const item = document.createElement("li");
      item.textContent = String(code);
      return item;
    }),
  );
}

// The server's QR code (an SVG without scripts or links) as a DOM node, never as HTML text.
function showQr(svgText) {
  const parsed = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const svg = parsed.documentElement;
  const box = $("sg-signup-qr");
  box.replaceChildren();
  if (svg.nodeName.toLowerCase() !== "svg" || svg.querySelector("script, foreignObject")) return;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", gettext("QR code for your authenticator app"));
  box.append(document.importNode(svg, true));
}

function groups(secret) {
  return String(secret).replace(/\s+/g, "").replace(/(.{4})(?=.)/g, "$1 ");
}

function setBusy(busy, status) {
  flow.busy = busy;
  for (const id of ["sg-signup-next", "sg-signup-create"]) $(id).disabled = busy;
  setText("sg-signup-status", status);
}
