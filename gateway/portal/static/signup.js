// Creating an account from a message the reader opened with an emailed code (docs/accounts.md).
//
// The password never leaves this page: account.js derives the key-encryption key and the
// login secret from it and makes the key pair; the server gets the public key, the private
// key sealed under the KEK, the salt and the login secret. The second factor is set up in the
// same step: an authenticator app (the server's QR code, then one code from the app) or a
// phone (a code by text), as the person chooses among those the installation offers. Once the
// account is made, its private key stays in this browser (keyring.js), so the inbox opens
// signed in.

import {
  decryptPrivateKey,
  deriveAccountKeys,
  encryptPrivateKey,
  generateAccountKeyPair,
} from "./account.js";
import { rememberKey } from "./keyring.js";
import { groups, normalPhone, notAPhone, showQr } from "./factors.js";
import { $, ApiError, gettext, postJson, setText } from "./pagekit.js";
import { b64urlEncode } from "./sealed.js";
import { checkPassword } from "./strength.js";

const ITERATIONS = 600000;
const SALT_SIZE = 16;

const flow = {
  api: null, // {enrol, phone, create, address, totp, texts}
  created: null, // called with the account's public key once it exists (to claim the message)
  keys: null, // a promise of {upload, kek, sealed}: made while the user scans the QR code
  token: "", // the enrolment's: the app's seed, sealed, or the texted code's HMAC
  phone: "",
  busy: false,
};

export function offerSignUp(api, created) {
  flow.api = api;
  flow.created = created;
  setText(
    "sg-signup-intro",
    gettext(
      "With an account for %(address)s, new secure messages open with your password and a code from your phone, without a code by email each time, and you find them all in one place.",
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
  $("sg-signup-factor").hidden = !(api.totp && api.texts);
  if (!api.totp) $("sg-signup-factor-sms").checked = true;
  $("sg-signup-form").addEventListener("submit", choosePassword);
  $("sg-signup-code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("sg-signup-code").value.replace(/\s+/g, "");
    createAccount({ totp_token: flow.token, totp_code: code }, "sg-signup-code");
  });
  $("sg-signup-phone-form").addEventListener("submit", textMeACode);
  $("sg-signup-text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("sg-signup-text-code").value.replace(/\s+/g, "");
    createAccount({ phone: flow.phone, text_token: flow.token, text_code: code }, "sg-signup-text-code");
  });
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
  if ($("sg-signup-factor-sms").checked) {
    setBusy(false, "");
    $("sg-signup-form").hidden = true;
    $("sg-signup-text").hidden = false;
    $("sg-signup-phone").focus();
    return;
  }
  try {
    const enrolment = await postJson(flow.api.enrol, {});
    flow.token = enrolment.token;
    showQr($("sg-signup-qr"), enrolment.svg);
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

// A code by text to the number typed in, to prove it is the person's phone.
async function textMeACode(event) {
  event.preventDefault();
  if (flow.busy) return;
  setText("sg-signup-error", "");
  const phone = normalPhone($("sg-signup-phone").value);
  if (!phone) {
    setText("sg-signup-error", notAPhone());
    $("sg-signup-phone").focus();
    return;
  }
  setBusy(true, gettext("Sending a code…"));
  try {
    const sent = await postJson(flow.api.phone, { phone });
    flow.token = sent.token;
    flow.phone = phone;
    setText("sg-signup-status", gettext("A code is on its way to %(phone)s.", { phone: sent.sent_to }));
    $("sg-signup-text-form").hidden = false;
    $("sg-signup-text-code").focus();
  } catch (error) {
    setText("sg-signup-status", "");
    setText("sg-signup-error", describeSignUp(error));
  } finally {
    flow.busy = false;
    for (const id of BUTTONS) $(id).disabled = false;
  }
}

// Create the account with the second factor's proof (`factor`), the code typed in `codeId`.
async function createAccount(factor, codeId) {
  if (flow.busy) return;
  setText("sg-signup-error", "");
  setBusy(true, gettext("Creating your account…"));
  try {
    const { upload, kek, sealed, publicKeyDer } = await flow.keys;
    const created = await postJson(flow.api.create, { ...upload, ...factor });
    showRecoveryCodes(created.recovery_codes);
    await flow.created?.(publicKeyDer).catch(() => {}); // the message stays readable by its link
    const privateKey = await decryptPrivateKey(kek, sealed, flow.api.address);
    await rememberKey(flow.api.address, privateKey, sealed).catch(() => {}); // a private window: sign in later
    $("sg-signup-enrol").hidden = true;
    $("sg-signup-text").hidden = true;
    $("sg-signup-done").hidden = false;
    $("sg-signup-heading").focus();
  } catch (error) {
    setText("sg-signup-error", describeSignUp(error));
    $(codeId).select();
  } finally {
    setBusy(false, "");
  }
}

function describeSignUp(error) {
  if (!(error instanceof ApiError)) return gettext("Something went wrong on our side. Try again later.");
  if (error.status === 429) return gettext("Too many attempts. Wait a minute and try again.");
  switch (error.code) {
    case "enrolment":
      return gettext("That code is not right. Check it and try again.");
    case "phone":
      return notAPhone();
    case "unavailable":
      return gettext("The text message could not be sent. Try again later.");
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

const BUTTONS = ["sg-signup-next", "sg-signup-create", "sg-signup-phone-submit", "sg-signup-text-create"];

function setBusy(busy, status) {
  flow.busy = busy;
  for (const id of BUTTONS) $(id).disabled = busy;
  setText("sg-signup-status", status);
}
