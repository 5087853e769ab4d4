// The portal's front page: sign in to an account, then its inbox (docs/accounts.md).
//
// Sign-in: the server gives the salt and round count for the address (made up, and the same
// each time, for one without an account); account.js derives the login secret and the KEK from
// the password here; the server checks the login secret and the authenticator code, and sends
// the private key sealed under the KEK, which is opened into a non-extractable key and kept in
// this browser (keyring.js) for the messages of the inbox. The password goes nowhere.

import { decryptPrivateKey, deriveAccountKeys, reencryptPrivateKey } from "./account.js";
import {
  codeOf,
  expectTextCode,
  notAPhone,
  proof,
  setUpFactorSettings,
  showFactors,
  textMeACode,
} from "./factors.js";
import { forgetKey, recallKey, rememberKey } from "./keyring.js";
import { $, ApiError, NetworkError, formatDate, formatSize, gettext, postJson, setText, setup } from "./pagekit.js";
import { b64urlDecode, b64urlEncode } from "./sealed.js";
import { makeKeys } from "./signup.js";
import { checkPassword } from "./strength.js";

const state = { page: null, busy: false, searchTimer: null, reset: null };

function showStep(name) {
  for (const step of ["sign-in", "reset", "inbox"]) $(`sg-step-${step}`).hidden = step !== name;
  $(`sg-step-${name}`).querySelector("h1")?.focus();
}

function setError(message) {
  setText("sg-error", message);
}

function describe(error) {
  if (error instanceof NetworkError) {
    return gettext("There is no connection to the server. Check your internet connection and try again.");
  }
  if (error instanceof ApiError) {
    if (error.code === "sign-in") return gettext("The address, password or code is not right.");
    if (error.status === 429) return gettext("Too many attempts. Wait a minute and try again.");
    if (error.code === "phone") return notAPhone();
    if (error.code === "code") return gettext("That code is not right. Check it and try again.");
    if (error.code === "factor-off") return gettext("This way of signing in is not offered here.");
    if (error.code === "unavailable") return gettext("The text message could not be sent. Try again later.");
  }
  return gettext("Something went wrong on our side. Try again later.");
}

async function signIn(event) {
  event.preventDefault();
  const second = codeOf("sg-totp");
  if (!second.code) {
    setError(gettext("Fill in your email address, password and code."));
    return;
  }
  await signInWith(async () => second);
}

// A code by text instead of the app's: sent only if the password is right.
async function textMeOnSignIn() {
  if (state.busy) return;
  setError("");
  const address = $("sg-address").value.trim().toLowerCase();
  const password = $("sg-password").value;
  if (!address.includes("@") || !password) {
    setError(gettext("Fill in your email address and password first."));
    return;
  }
  setBusy(true, gettext("Sending a code…"));
  try {
    expectTextCode("sg-totp", "sg-totp-label", await textMeACode(state.page.api, address, password));
    notice(gettext("If the password is right and your account has a phone number, a code is on its way to it."));
  } catch (error) {
    setError(describe(error));
  } finally {
    setBusy(false, "");
  }
}

// The same in a settings form, whose password field proves it is the owner asking.
async function textMeInForm(passwordId, codeId, labelId) {
  setError("");
  const kept = await recallKey();
  const password = $(passwordId).value;
  if (!kept || !password) {
    setError(gettext("Fill in your password first."));
    return;
  }
  try {
    expectTextCode(codeId, labelId, await textMeACode(state.page.api, kept.address, password));
    notice(gettext("If the password is right, a code is on its way to your phone."));
  } catch (error) {
    setError(describe(error));
  }
}

// The second factor from this device's passkey, instead of a code.
async function signInWithPasskey() {
  await signInWith(async () => {
    const { options, token } = await postJson(state.page.api.passkey_sign_in, {});
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const credential = await navigator.credentials.get({ publicKey });
    return { passkey: { token, assertion: credential.toJSON() } };
  });
}

// Sign in with the password and the second factor `factor()` gives, once the password is in.
async function signInWith(factor) {
  if (state.busy) return;
  setError("");
  const address = $("sg-address").value.trim().toLowerCase();
  const password = $("sg-password").value;
  if (!address.includes("@") || !password) {
    setError(gettext("Fill in your email address, password and code."));
    return;
  }
  setBusy(true, gettext("Signing in…"));
  try {
    const unlocking = await postJson(state.page.api.unlocking, { address });
    const salt = b64urlDecode(unlocking.salt);
    const { kek, loginSecret } = await deriveAccountKeys(password, salt, unlocking.iterations);
    const second = await factor();
    const answer = await postJson(state.page.api.sign_in, {
      address,
      login_secret: b64urlEncode(loginSecret),
      ...second,
    });
    loginSecret.fill(0);
    const privateKey = await decryptPrivateKey(kek, b64urlDecode(answer.encrypted_private_key), answer.address);
    await rememberKey(answer.address, privateKey, b64urlDecode(answer.encrypted_private_key));
    $("sg-password").value = "";
    $("sg-totp").value = "";
    delete $("sg-totp").dataset.textToken;
    notice("");
    await afterSignIn();
  } catch (error) {
    setError(describe(error));
  } finally {
    setBusy(false, "");
  }
}

async function afterSignIn() {
  const next = new URLSearchParams(location.search).get("next");
  if (next && /^\/inbox\/[0-9a-f]{32}$/.test(next)) {
    location.assign(next);
    return;
  }
  await showInbox();
}

async function showInbox() {
  let listed;
  try {
    listed = await postJson(state.page.api.inbox, { sender: $("sg-search").value.trim() || null });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      await forgetKey();
      showStep("sign-in");
      return;
    }
    setError(describe(error));
    return;
  }
  setText("sg-inbox-address", gettext("Signed in as %(address)s", { address: listed.address }));
  const list = $("sg-inbox-list");
  list.replaceChildren(...listed.messages.map(entry));
  $("sg-inbox-empty").hidden = listed.messages.length > 0;
  if ($("sg-step-inbox").hidden) showStep("inbox");
}

function entry(message) {
  const item = $("sg-inbox-template").content.firstElementChild.cloneNode(true);
  const sender = message.sender_name ? `${message.sender_name} <${message.sender}>` : message.sender;
  item.querySelector(".sg-inbox-sender").textContent = sender;
  const open = item.querySelector(".sg-inbox-open");
  if (message.opens_here) {
    open.href = `/inbox/${message.envelope_id}`;
  } else {
    open.replaceWith(open.firstElementChild); // not a link: it opens with the link in its email
    item.querySelector(".sg-inbox-link-only").textContent = gettext(
      "Sent before your account existed: open it with the link in its email.",
    );
  }
  if (!message.read) item.classList.add("sg-unread");
  item.querySelector(".sg-inbox-meta").textContent = [
    formatDate(message.sent_at),
    formatSize(message.size),
    message.read ? gettext("Read") : gettext("Unread"),
    gettext("Available until %(date)s", { date: formatDate(message.expires_at) }),
  ].join(" · ");
  return item;
}

// --- password and account -------------------------------------------------------------------

async function changePassword(event) {
  event.preventDefault();
  if (state.busy) return;
  setError("");
  const kept = await recallKey();
  const password = $("sg-new-password").value;
  const verdict = await checkPassword(password, { userInputs: [kept?.address || "", document.title] });
  if (!verdict.ok) {
    setError(verdict.problems.map((p) => gettext(p)).join(" "));
    return;
  }
  if ($("sg-new-repeat").value !== password) {
    setError(gettext("The two passwords are not the same."));
    return;
  }
  if (!kept?.sealed) {
    await signOut(false); // signed in before the key was kept with its sealed form
    return;
  }
  state.busy = true;
  setText("sg-password-status", gettext("Changing your password…"));
  try {
    const current = await proof(state.page.api, kept.address, $("sg-current-password").value);
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const fresh = await deriveAccountKeys(password, salt, 600000);
    const sealed = await reencryptPrivateKey(current.kek, kept.sealed, fresh.kek, kept.address);
    await postJson(state.page.api.password, {
      login_secret: current.loginSecret,
      ...codeOf("sg-password-code"),
      new: {
        kdf: "pbkdf2-sha256",
        iterations: 600000,
        salt: b64urlEncode(salt),
        login_secret: b64urlEncode(fresh.loginSecret),
        encrypted_private_key: b64urlEncode(sealed),
      },
    });
    fresh.loginSecret.fill(0);
    await rememberKey(kept.address, kept.privateKey, sealed);
    $("sg-password-form").reset();
    notice(gettext("Your password has been changed. You are signed out on your other devices."));
  } catch (error) {
    setError(describe(error));
  } finally {
    state.busy = false;
    setText("sg-password-status", "");
  }
}

async function deleteAccount(event) {
  event.preventDefault();
  if (state.busy || !$("sg-delete-confirm").checked) return;
  setError("");
  const kept = await recallKey();
  if (!kept) return;
  state.busy = true;
  try {
    const current = await proof(state.page.api, kept.address, $("sg-delete-password").value);
    await postJson(state.page.api.delete, {
      login_secret: current.loginSecret,
      ...codeOf("sg-delete-code"),
    });
    await forgetKey();
    $("sg-delete-form").reset();
    showStep("sign-in");
    notice(gettext("Your account has been deleted."));
  } catch (error) {
    setError(describe(error));
  } finally {
    state.busy = false;
  }
}

// --- where the account is signed in -----------------------------------------------------

async function showSessions() {
  let listed;
  try {
    listed = await postJson(state.page.api.sessions, {});
  } catch (error) {
    setError(describe(error));
    return;
  }
  $("sg-session-list").replaceChildren(...listed.sessions.map(sessionItem));
}

function sessionItem(session) {
  const item = $("sg-session-template").content.firstElementChild.cloneNode(true);
  let what = session.kind === "device" ? gettext("A remembered device (code by email)") : gettext("Signed in");
  if (session.current) what = gettext("This browser");
  item.querySelector(".sg-session-what").textContent = what;
  const seen = session.last_seen_at || session.created_at;
  item.querySelector(".sg-session-when").textContent = gettext("since %(date)s, last used %(last)s", {
    date: formatDate(session.created_at),
    last: formatDate(seen),
  });
  const end = item.querySelector(".sg-session-end");
  if (session.current) end.remove();
  else end.addEventListener("click", () => endSession(session.id));
  return item;
}

async function endSession(id) {
  try {
    await postJson(state.page.api.end_session, { id });
  } catch (error) {
    setError(describe(error));
  }
  await showSessions();
}

async function addPasskey() {
  setError("");
  try {
    const { options, token } = await postJson(state.page.api.passkey_options, {});
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    const credential = await navigator.credentials.create({ publicKey });
    await postJson(state.page.api.passkey, { token, credential: credential.toJSON() });
    notice(gettext("Your passkey has been added. You can sign in with it instead of a code."));
  } catch (error) {
    setError(error instanceof ApiError || error instanceof NetworkError
      ? describe(error) : gettext("The passkey was not added."));
  }
}

// --- a forgotten password -----------------------------------------------------------------

async function askResetCode(event) {
  event.preventDefault();
  if (state.busy) return;
  setError("");
  const address = $("sg-reset-address").value.trim().toLowerCase();
  if (!address.includes("@")) return;
  state.busy = true;
  try {
    const asked = await postJson(state.page.api.reset_code, { address });
    state.reset = { address, token: asked.token };
    $("sg-reset-ask-form").hidden = true;
    $("sg-reset-form").hidden = false;
    notice(gettext("If %(address)s has an account, a code is on its way there.", { address }));
    $("sg-reset-email-code").focus();
  } catch (error) {
    setError(describe(error));
  } finally {
    state.busy = false;
  }
}

async function resetPassword(event) {
  event.preventDefault();
  if (state.busy || !state.reset) return;
  setError("");
  const { address, token } = state.reset;
  const password = $("sg-reset-password").value;
  const verdict = await checkPassword(password, { userInputs: [address, document.title] });
  if (!verdict.ok) {
    setError(verdict.problems.map((p) => gettext(p)).join(" "));
    return;
  }
  if ($("sg-reset-repeat").value !== password) {
    setError(gettext("The two passwords are not the same."));
    return;
  }
  state.busy = true;
  setText("sg-reset-status", gettext("Preparing your account…"));
  try {
    const { upload, kek, sealed } = await makeKeys(password, address);
    await postJson(state.page.api.reset, {
      ...upload,
      address,
      token,
      email_code: $("sg-reset-email-code").value.replace(/\s+/g, ""),
      ...codeOf("sg-reset-code"),
    });
    await rememberKey(address, await decryptPrivateKey(kek, sealed, address), sealed);
    $("sg-reset-form").reset();
    notice(gettext("Your new password is set."));
    await showInbox();
  } catch (error) {
    setError(error instanceof ApiError && error.code === "reset"
      ? gettext("The code from the email or from your authenticator app is not right.")
      : describe(error));
  } finally {
    state.busy = false;
    setText("sg-reset-status", "");
  }
}

// The reset's second code by text: sent only if the emailed code is right.
async function textMeOnReset() {
  if (!state.reset) return;
  setError("");
  const emailCode = $("sg-reset-email-code").value.replace(/\s+/g, "");
  if (!emailCode) {
    setError(gettext("Fill in the code from the email first."));
    return;
  }
  try {
    const asked = await postJson(state.page.api.reset_text, { ...state.reset, email_code: emailCode });
    expectTextCode("sg-reset-code", "sg-reset-code-label", asked.token);
    notice(gettext("If the code from the email is right, a code is on its way to your phone."));
  } catch (error) {
    setError(describe(error));
  }
}

function notice(text) {
  setText("sg-notice", text);
  $("sg-notice").hidden = !text;
}

async function signOut(everywhere) {
  try {
    await postJson(state.page.api.sign_out, { everywhere });
  } catch {
    // no session any more: what signing out wants
  }
  await forgetKey();
  location.assign("/");
}

function setBusy(busy, status) {
  state.busy = busy;
  $("sg-sign-in-submit").disabled = busy;
  setText("sg-sign-in-status", status);
}

async function main() {
  state.page = JSON.parse($("sg-page").textContent);
  setup({
    strings: state.page.strings,
    lang: document.documentElement.lang || "en",
    csrf: document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") || "",
  });
  $("sg-sign-in-form").addEventListener("submit", signIn);
  $("sg-sign-out").addEventListener("click", () => signOut(false));
  $("sg-sign-out-everywhere").addEventListener("click", () => signOut(true));
  $("sg-search").addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(showInbox, 300);
  });
  $("sg-search-form").addEventListener("submit", (event) => event.preventDefault());
  $("sg-use-recovery").addEventListener("click", () => {
    const input = $("sg-totp");
    input.inputMode = "text"; // letters and digits: ABCDE-FGHJK
    input.autocomplete = "off";
    input.classList.remove("sg-code-input");
    setText("sg-totp-label", gettext("Recovery code"));
    $("sg-use-recovery").hidden = true;
    input.focus();
  });
  $("sg-settings").addEventListener("toggle", () => {
    if (!$("sg-settings").open) return;
    showSessions();
    showFactors().catch((error) => setError(describe(error)));
  });
  setUpFactorSettings(state.page.api, (error, text) => {
    if (typeof error === "string") setError(error);
    else if (error) setError(describe(error));
    else {
      setError("");
      notice(text);
    }
  });
  for (const id of ["sg-text-me", "sg-reset-text-me"]) $(id).hidden = !state.page.texts;
  $("sg-text-me").addEventListener("click", textMeOnSignIn);
  $("sg-reset-text-me").addEventListener("click", textMeOnReset);
  $("sg-password-text-me").addEventListener("click",
    () => textMeInForm("sg-current-password", "sg-password-code", "sg-password-code-label"));
  $("sg-delete-text-me").addEventListener("click",
    () => textMeInForm("sg-delete-password", "sg-delete-code", "sg-delete-code-label"));
  const passkeys = state.page.passkeys && typeof PublicKeyCredential?.parseRequestOptionsFromJSON === "function";
  $("sg-passkey-sign-in").hidden = !passkeys;
  $("sg-passkey-section").hidden = !passkeys;
  $("sg-passkey-sign-in").addEventListener("click", signInWithPasskey);
  $("sg-passkey-add").addEventListener("click", addPasskey);
  $("sg-forgot").addEventListener("click", () => {
    $("sg-reset-address").value = $("sg-address").value;
    showStep("reset");
  });
  $("sg-reset-ask-form").addEventListener("submit", askResetCode);
  $("sg-reset-form").addEventListener("submit", resetPassword);
  $("sg-password-form").addEventListener("submit", changePassword);
  $("sg-delete-form").addEventListener("submit", deleteAccount);
  $("sg-new-password").addEventListener("input", async () => {
    const password = $("sg-new-password").value;
    const verdict = password ? await checkPassword(password) : null;
    setText("sg-new-strength", verdict && !verdict.ok ? verdict.problems.map((p) => gettext(p)).join(" ") : "");
  });
  if (await recallKey()) await afterSignIn();
  else showStep("sign-in");
}

main();
