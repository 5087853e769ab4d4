// An account's codes for signing in (docs/accounts.md): codes by text message, the
// authenticator app, and what the settings show of them.
//
// A code by text is asked for with the password's login secret (or, in a reset, with the
// emailed code): the server texts it only when that is right, and answers the same either
// way with a token; the code typed in then goes back with that token.

import { deriveAccountKeys } from "./account.js";
import { $, gettext, postJson, setText } from "./pagekit.js";
import { b64urlDecode, b64urlEncode } from "./sealed.js";

// The login secret and KEK of `password`, with the account's salt (asked each time: it
// changes with the password), for the server to check before it signs in or changes anything.
export async function proof(api, address, password) {
  const unlocking = await postJson(api.unlocking, { address });
  const derived = await deriveAccountKeys(password, b64urlDecode(unlocking.salt), unlocking.iterations);
  const loginSecret = b64urlEncode(derived.loginSecret);
  derived.loginSecret.fill(0);
  return { kek: derived.kek, loginSecret };
}

// Ask for a sign-in code by text; the token that goes back with it.
export async function textMeACode(api, address, password) {
  const { loginSecret } = await proof(api, address, password);
  const asked = await postJson(api.sign_in_text, { address, login_secret: loginSecret });
  return asked.token;
}

// A code field switched over to the code by text: its label says so, and the field
// remembers the token (`data-text-token`) that goes back with the code.
export function expectTextCode(inputId, labelId, token) {
  const input = $(inputId);
  input.dataset.textToken = token;
  input.inputMode = "numeric";
  input.autocomplete = "one-time-code";
  input.value = "";
  setText(labelId, gettext("Code from the text message"));
  input.focus();
}

// The second factor of a code field, for the server: {code} or {code, text_token}.
export function codeOf(inputId) {
  const input = $(inputId);
  const code = input.value.replace(/\s+/g, "");
  return input.dataset.textToken ? { code, text_token: input.dataset.textToken } : { code };
}

// `text` as an E.164 number (+31612345678), or null: the same rule as the server's, checked
// here first so a typo costs no round trip.
export function normalPhone(text) {
  const compact = String(text).replace(/[\s().-]/g, "");
  return /^\+[1-9][0-9]{6,14}$/.test(compact) ? compact : null;
}

export function notAPhone() {
  return gettext("That is not a mobile number with its country code, like +31 6 12345678.");
}

// The server's QR code (an SVG without scripts or links) into `box`, as a DOM node, never as
// HTML text.
export function showQr(box, svgText) {
  const parsed = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const svg = parsed.documentElement;
  box.replaceChildren();
  if (svg.nodeName.toLowerCase() !== "svg" || svg.querySelector("script, foreignObject")) return;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", gettext("QR code for your authenticator app"));
  box.append(document.importNode(svg, true));
}

export function groups(secret) {
  return String(secret).replace(/\s+/g, "").replace(/(.{4})(?=.)/g, "$1 ");
}

// --- the settings -------------------------------------------------------------------------

const settings = { api: null, report: null, appToken: "", phone: "", phoneToken: "", factors: null };

// `report(error | null, notice)`: how the page shows an outcome (an error from the server,
// or the words of one found here).
export function setUpFactorSettings(api, report) {
  settings.api = api;
  settings.report = report;
  $("sg-app-add").addEventListener("click", startApp);
  $("sg-app-form").addEventListener("submit", finishApp);
  $("sg-phone-form").addEventListener("submit", sendPhoneCode);
  $("sg-phone-code-form").addEventListener("submit", finishPhone);
}

// What the account has; the "text me a code" buttons of the settings' forms follow it.
export async function showFactors() {
  const factors = await postJson(settings.api.factors, {});
  settings.factors = factors;
  // Signed in through the organisation: no password, no codes here; the organisation keeps those.
  for (const id of ["sg-factors-section", "sg-password-form", "sg-delete-form", "sg-passkey-section"]) {
    if (factors.sso) $(id).hidden = true;
  }
  setText("sg-factor-app", factors.totp
    ? gettext("Authenticator app: set up.")
    : gettext("No authenticator app is set up."));
  $("sg-app-add").hidden = !factors.can_add.includes("totp");
  setText("sg-app-add", factors.totp ? gettext("Move to another authenticator app") : gettext("Set up an authenticator app"));
  setText("sg-factor-phone", factors.phone
    ? gettext("Codes by text go to %(phone)s.", { phone: factors.phone })
    : gettext("No phone number for codes by text."));
  $("sg-phone-form").hidden = !factors.can_add.includes("sms");
  setText("sg-phone-submit", factors.phone ? gettext("Change the number: text me a code") : gettext("Text me a code"));
  setText("sg-factor-recovery", gettext("Recovery codes left: %(count)s", { count: factors.recovery_codes }));
  for (const id of ["sg-password-text-me", "sg-delete-text-me"]) $(id).hidden = !factors.phone;
  return factors;
}

async function startApp() {
  try {
    const enrolment = await postJson(settings.api.totp_enrol, {});
    settings.appToken = enrolment.token;
    showQr($("sg-app-qr"), enrolment.svg);
    setText("sg-app-secret", groups(enrolment.secret));
    $("sg-app-enrol").hidden = false;
    $("sg-app-add").hidden = true;
    $("sg-app-code").focus();
  } catch (error) {
    settings.report(error);
  }
}

async function finishApp(event) {
  event.preventDefault();
  try {
    await postJson(settings.api.totp, { token: settings.appToken, code: $("sg-app-code").value.replace(/\s+/g, "") });
    $("sg-app-form").reset();
    $("sg-app-enrol").hidden = true;
    settings.report(null, gettext("Your authenticator app is set up. Use its codes to sign in."));
    await showFactors();
  } catch (error) {
    settings.report(error);
    $("sg-app-code").select();
  }
}

async function sendPhoneCode(event) {
  event.preventDefault();
  settings.phone = normalPhone($("sg-phone").value);
  if (!settings.phone) {
    settings.report(notAPhone());
    $("sg-phone").focus();
    return;
  }
  try {
    const sent = await postJson(settings.api.phone_code, { phone: settings.phone });
    settings.phoneToken = sent.token;
    $("sg-phone-code-form").hidden = false;
    settings.report(null, gettext("A code is on its way to %(phone)s.", { phone: sent.sent_to }));
    $("sg-phone-code").focus();
  } catch (error) {
    settings.report(error);
  }
}

async function finishPhone(event) {
  event.preventDefault();
  try {
    await postJson(settings.api.phone, {
      phone: settings.phone,
      token: settings.phoneToken,
      code: $("sg-phone-code").value.replace(/\s+/g, ""),
    });
    $("sg-phone-form").reset();
    $("sg-phone-code-form").reset();
    $("sg-phone-code-form").hidden = true;
    settings.report(null, gettext("Codes by text now go to this phone."));
    await showFactors();
  } catch (error) {
    settings.report(error);
    $("sg-phone-code").select();
  }
}
