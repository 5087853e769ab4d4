// Sealgate recipient portal: from the notification link to the decrypted message.
//
// The page (message.html) carries its data in <script type="application/json" id="sg-page">.
// The secret lives only in the link's fragment: it is parsed here, used by sealed.js to
// unlock the content key, and never sent, stored or logged. Message data is shown with
// textContent only; the message's HTML goes into a sandboxed iframe (srcdoc) without scripts.

import {
  b64urlDecode,
  b64urlEncode,
  openPartStream,
  parseLink,
  readManifest,
  sealReply,
  sha256Hex,
  unlockGuest,
} from "./sealed.js";
import {
  $,
  ApiError,
  NetworkError,
  formatDate,
  formatDuration,
  formatSize,
  gettext,
  post,
  postJson,
  setText,
  setup,
} from "./pagekit.js";
import { rewrapContentKey, unwrapAccountContentKey } from "./account.js";
import { forgetKey, recallKey } from "./keyring.js";
import { offerSignUp } from "./signup.js";

const STEPS = ["boot", "link", "fatal", "method", "code", "loading", "message", "signed-out"];
const INLINE_IMAGE_MAX = 5 * 1024 * 1024; // per inline image shown in the HTML (as a data: URL)
const INLINE_TYPES = /^image\/(png|jpe?g|gif|webp|bmp|avif)$/i;
const SIMPLE_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;

class IntegrityError extends Error {}

const state = {
  page: null,
  link: null, // {linkId, secret}: never leaves this module
  method: null, // the verification method chosen
  session: null, // {K, info, manifest} once the message is open
  accountKey: null, // the signed-in account's private key (a non-extractable CryptoKey)
  busy: false,
  pendingReply: null, // {fingerprint, blob}: a sealed reply not yet confirmed by the server
  lockUntil: 0,
  lockTimer: null,
  resendUntil: 0, // no new code can be sent before this; the codes sent still work
  resendTimer: null,
};

// --- words, numbers, dates ----------------------------------------------------------------

// --- page state -------------------------------------------------------------------------

function showStep(name) {
  for (const step of STEPS) {
    const element = $(`sg-step-${step}`);
    if (element) element.hidden = step !== name;
  }
  setError("");
  const heading = $(`sg-step-${name}`)?.querySelector("h1, h2");
  if (heading) heading.focus();
}

function setError(message) {
  $("sg-error").textContent = message || "";
}

function locked() {
  return Date.now() < state.lockUntil;
}

function updateControls() {
  const disabled = state.busy || locked();
  for (const button of document.querySelectorAll("[data-method], #sg-code-submit, #sg-resend")) {
    button.disabled = disabled;
  }
  if (Date.now() < state.resendUntil) $("sg-resend").disabled = true;
  $("sg-other-method").disabled = state.busy;
}

function setBusy(busy) {
  state.busy = busy;
  updateControls();
}

function startLock(seconds) {
  state.lockUntil = Date.now() + Math.max(1, seconds) * 1000;
  clearInterval(state.lockTimer);
  const tick = () => {
    const left = (state.lockUntil - Date.now()) / 1000;
    if (left <= 0) {
      clearInterval(state.lockTimer);
      state.lockTimer = null;
      setText("sg-wait", "");
    } else {
      setText("sg-wait", gettext("You can try again in %(time)s.", { time: formatDuration(left) }));
    }
    updateControls();
  };
  tick();
  state.lockTimer = setInterval(tick, 1000);
}

// The hour's codes were sent: only asking for another waits; entering one does not.
function startResendWait(seconds) {
  state.resendUntil = Date.now() + Math.max(1, seconds) * 1000;
  clearTimeout(state.resendTimer);
  state.resendTimer = setTimeout(updateControls, state.resendUntil - Date.now() + 50);
  updateControls();
}

// --- the server -------------------------------------------------------------------------

function describe(error) {
  if (error instanceof NetworkError) {
    return gettext("There is no connection to the server. Check your internet connection and try again.");
  }
  if (!(error instanceof ApiError)) return gettext("Something went wrong on our side. Try again later.");
  switch (error.code) {
    case "wrong-code": {
      const left = Number(error.data.attempts_left);
      if (Number.isFinite(left) && left <= 0) {
        return gettext("That code is not correct, and there are no attempts left. Ask for a new code.");
      }
      return gettext("That code is not correct. Attempts left: %(attempts)s.", {
        attempts: Number.isFinite(left) ? left : "?",
      });
    }
    case "locked":
      return gettext("Too many attempts. Wait %(time)s and try again.", {
        time: formatDuration(Number(error.data.retry_after) || 60),
      });
    case "send-limit":
      return gettext(
        "We cannot send another code yet. A code we already sent you still works until it expires. You can ask for a new code in %(time)s.",
        { time: formatDuration(Number(error.data.retry_after) || 60) },
      );
    case "closed":
      return gettext(
        "Too many wrong access codes were entered for this message, so the access code no longer works here. Confirm another way, such as a code by email.",
      );
    case "too-large":
      return gettext("This is too large to send.");
    case "method":
      return gettext("This way of confirming is not available to you. Choose another way.");
    case "csrf":
      return gettext("This page has expired. Reload the page and try again.");
    case "verify":
      return gettext("Please confirm again that it is you.");
    case "bad-request":
      return gettext("Something in the request was not accepted. Reload the page and try again.");
    default:
      break;
  }
  if (error.status === 413) return gettext("This is too large to send.");
  if (error.status === 429) {
    return gettext("Too many attempts. Wait %(time)s and try again.", { time: formatDuration(60) });
  }
  if (error.status === 400) {
    return gettext("Something in the request was not accepted. Reload the page and try again.");
  }
  if (typeof error.data.message === "string" && error.data.message) return error.data.message;
  return gettext("Something went wrong on our side. Try again later.");
}

// Handle the errors every request can meet; returns true when the page moved on.
function handleCommon(error) {
  if (!(error instanceof ApiError)) return false;
  if (error.status === 410) {
    // expired, revoked or unknown: the page itself now renders gone.html
    location.reload();
    return true;
  }
  if (error.status === 401 && error.code !== "wrong-code") {
    forgetMessage();
    if (state.page.account) toSignIn();
    else startVerify(gettext("Please confirm again that it is you."));
    return true;
  }
  if (error.code === "send-limit") {
    startResendWait(Number(error.data.retry_after) || 60);
  } else if (error.status === 429) {
    startLock(Number(error.data.retry_after) || 60);
  }
  // A short wait after a wrong access code: the button counts it down, no 429 for a retry.
  if (error.code === "wrong-code" && Number(error.data.retry_after) > 0) {
    startLock(Number(error.data.retry_after));
  }
  return false;
}

// --- verifying ----------------------------------------------------------------------------

function methodButtons() {
  return Array.from(document.querySelectorAll("[data-method]"));
}

function startVerify(message = "") {
  const methods = methodButtons().map((button) => button.dataset.method);
  if (methods.length === 0) {
    fatal(gettext("This way of confirming is not available to you. Choose another way."));
    return;
  }
  if (methods.length === 1 && methods[0] === "access-code") {
    showCodeStep("access-code", null);
  } else {
    showStep("method");
  }
  setError(message);
}

async function chooseMethod(method) {
  if (state.busy || locked()) return;
  if (method === "access-code") {
    showCodeStep(method, null);
    return;
  }
  setError("");
  setText("sg-method-status", gettext("Sending the code…"));
  setBusy(true);
  try {
    const sent = await postJson(state.page.api.code, { method });
    showCodeStep(method, sent);
  } catch (error) {
    // Over the hour's limit: the codes sent already work, so the code step opens anyway.
    if (error instanceof ApiError && error.code === "send-limit") showCodeStep(method, null);
    if (!handleCommon(error)) setError(describe(error));
  } finally {
    setText("sg-method-status", "");
    setBusy(false);
  }
}

function describeSent(method, sent) {
  const fallback = method === "sms" ? state.page.phone_masked : state.page.recipient_masked;
  const masked = (sent && typeof sent.sent_to === "string" && sent.sent_to) || fallback || "";
  setText(
    "sg-code-hint",
    method === "sms"
      ? gettext("Enter the %(length)s-digit code we sent by text message to %(masked)s.", {
          length: state.page.code_length,
          masked,
        })
      : gettext("Enter the %(length)s-digit code we sent to %(masked)s.", {
          length: state.page.code_length,
          masked,
        }),
  );
  const seconds = Number(sent?.expires_in);
  setText(
    "sg-code-valid",
    Number.isFinite(seconds) && seconds > 0
      ? gettext("The code is valid for %(minutes)s minutes.", {
          minutes: Math.max(1, Math.round(seconds / 60)),
        })
      : "",
  );
}

function showCodeStep(method, sent) {
  state.method = method;
  const input = $("sg-code");
  input.value = "";
  if (method === "access-code") {
    setText("sg-code-label", gettext("Access code"));
    input.inputMode = "text";
    input.autocomplete = "off";
    setText("sg-code-hint", gettext("Enter the access code that the sender gave you."));
    setText("sg-code-valid", "");
  } else {
    setText("sg-code-label", gettext("Code"));
    input.inputMode = "numeric";
    input.autocomplete = "one-time-code";
    describeSent(method, sent);
  }
  $("sg-resend").hidden = method === "access-code";
  $("sg-other-method").hidden = methodButtons().length < 2;
  setText("sg-code-status", "");
  showStep("code");
}

async function resendCode() {
  if (state.busy || locked() || !state.method || state.method === "access-code") return;
  setError("");
  setText("sg-code-status", gettext("Sending the code…"));
  setBusy(true);
  try {
    const sent = await postJson(state.page.api.code, { method: state.method });
    describeSent(state.method, sent);
    setText("sg-code-status", gettext("We sent a new code."));
  } catch (error) {
    setText("sg-code-status", "");
    if (!handleCommon(error)) setError(describe(error));
  } finally {
    setBusy(false);
  }
}

async function submitCode(event) {
  event.preventDefault();
  if (state.busy || locked()) return;
  const input = $("sg-code");
  const code =
    state.method === "access-code" ? input.value.trim() : input.value.replace(/[\s-]+/g, "");
  if (!code) {
    setError(gettext("Enter the code first."));
    input.focus();
    return;
  }
  setError("");
  setText("sg-code-status", gettext("Checking the code…"));
  setBusy(true);
  let verified = false;
  try {
    await postJson(state.page.api.verify, {
      method: state.method,
      code,
      remember: Boolean($("sg-remember")?.checked),
    });
    verified = true;
  } catch (error) {
    setText("sg-code-status", "");
    if (!handleCommon(error)) {
      setError(describe(error));
      input.focus();
      input.select();
    }
  } finally {
    setBusy(false);
  }
  if (verified) {
    input.value = "";
    setText("sg-code-status", "");
    await openMessage();
  }
}

// --- opening ------------------------------------------------------------------------------

function setProgress(text, fraction) {
  setText("sg-progress-text", text);
  const bar = $("sg-progress");
  if (fraction === null || fraction === undefined) bar.removeAttribute("value");
  else bar.value = Math.min(1, Math.max(0, fraction));
}

function cannotOpen() {
  return gettext(
    "This message could not be opened with this link. Open the link from the email again. If that does not help, ask the sender to send the message again.",
  );
}

function fatal(message) {
  forgetMessage();
  setText("sg-fatal-text", message);
  showStep("fatal");
}

async function openMessage() {
  showStep("loading");
  $("sg-retry").hidden = true;
  setProgress(gettext("Opening the message…"), null);
  let info;
  try {
    info = await postJson(state.page.api.open, {});
  } catch (error) {
    openFailed(error);
    return;
  }
  let K;
  try {
    setProgress(gettext("Decrypting the message…"), null);
    K = await contentKey(info);
  } catch {
    fatal(cannotOpen());
    return;
  }
  let sealed;
  try {
    const response = await post(`${state.page.api.part}0`, {});
    sealed = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    openFailed(error instanceof ApiError ? error : new NetworkError("network"));
    return;
  }
  let manifest;
  try {
    manifest = await readManifest(K, info.envelope_id, sealed);
  } catch {
    fatal(cannotOpen());
    return;
  }
  state.session = { K, info, manifest };
  render(state.session);
}

// K: with the link's secret for a guest, with the signed-in account's private key otherwise.
async function contentKey(info) {
  if (state.page.account) {
    return unwrapAccountContentKey(state.accountKey, b64urlDecode(info.wrapped_key));
  }
  return unlockGuest({
    linkId: state.link.linkId,
    secret: state.link.secret,
    envelopeId: info.envelope_id,
    readerId: info.reader_id,
    encryptedPrivateKey:
      info.encrypted_private_key === null ? null : b64urlDecode(info.encrypted_private_key),
    wrappedKey: b64urlDecode(info.wrapped_key),
  });
}

// The account's session or key is gone: sign in again, and come back to this message.
function toSignIn() {
  forgetKey().finally(() => location.assign(state.page.account.sign_in));
}

async function openAccountMessage() {
  const kept = await recallKey();
  if (!kept) {
    toSignIn();
    return;
  }
  state.accountKey = kept.privateKey;
  $("sg-forget").hidden = true; // no device to forget: the account signs out everywhere it asks
  await openMessage();
}

function openFailed(error) {
  if (handleCommon(error)) return;
  setProgress("", 0);
  setError(describe(error));
  $("sg-retry").hidden = false;
}

// Fetch part n and decrypt it as it arrives; onFraction gets 0..1 of the sealed bytes.
async function fetchPart(session, n, onFraction) {
  const response = await post(`${state.page.api.part}${n}`, {});
  const listed = (session.info.parts || []).find((part) => part.part === n);
  const total = Number(response.headers.get("Content-Length")) || Number(listed?.sealed_size) || 0;
  let received = 0;
  const counted = response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        received += chunk.byteLength;
        if (onFraction && total > 0) onFraction(Math.min(1, received / total));
        controller.enqueue(chunk);
      },
    }),
  );
  return openPartStream(session.K, session.info.envelope_id, n, counted);
}

async function checkEntry(entry, chunks) {
  const size = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  if (size !== Number(entry.size)) throw new IntegrityError("size");
  const digest = await sha256Hex(chunks);
  if (digest !== String(entry.sha256).toLowerCase()) throw new IntegrityError("sha256");
}

// --- showing the message ------------------------------------------------------------------

function joined(list) {
  return Array.isArray(list) ? list.filter((item) => typeof item === "string").join(", ") : "";
}

function render(session) {
  const { info, manifest } = session;
  const headers = manifest.headers && typeof manifest.headers === "object" ? manifest.headers : {};
  setText("sg-subject", headers.subject || gettext("(no subject)"));
  setText("sg-from", joined(headers.from) || info.sender || state.page.sender);
  setText("sg-to", joined(headers.to));
  const cc = joined(headers.cc);
  setText("sg-cc", cc);
  $("sg-cc-row").hidden = !cc;
  setText("sg-date", headers.date ? formatDate(headers.date) : "");
  $("sg-date-row").hidden = !headers.date;
  setText(
    "sg-available",
    gettext("Available until %(date)s", { date: formatDate(info.expires_at || state.page.expires_at) }),
  );
  $("sg-problems").hidden = !(Array.isArray(manifest.problems) && manifest.problems.length);

  const text = typeof manifest.text === "string" ? manifest.text : "";
  const html = typeof manifest.html === "string" && manifest.html.trim() ? manifest.html : "";
  $("sg-html-block").hidden = !html;
  $("sg-text").hidden = Boolean(html) || !text;
  $("sg-text-details").hidden = !(html && text);
  setText(html ? "sg-text-alt" : "sg-text", text);
  setText(html ? "sg-text" : "sg-text-alt", "");

  const attachments = Array.isArray(manifest.attachments) ? manifest.attachments : [];
  const shownInline = html ? inlineReferences(html, attachments) : new Map();
  const list = $("sg-attachment-list");
  list.replaceChildren();
  for (const entry of attachments) {
    if ([...shownInline.values()].includes(entry)) continue;
    const item = $("sg-attachment-template").content.firstElementChild.cloneNode(true);
    wireFile(item, entry, gettext("Download %(name)s", { name: entry.filename }));
    list.append(item);
  }
  $("sg-attachments").hidden = list.children.length === 0;

  const original = manifest.original;
  $("sg-original-section").hidden = !(original && Number.isInteger(original.part));
  if (original && Number.isInteger(original.part)) {
    const item = $("sg-original").cloneNode(true); // drops listeners of an earlier render
    $("sg-original").replaceWith(item);
    wireFile(item, original, null);
  }

  const reply = info.reply && typeof info.reply.public_key === "string" ? info.reply : null;
  $("sg-reply").hidden = !reply;
  if (reply) {
    const limit = Number(reply.max_size) || Number(state.page.reply_max_size) || 0;
    setText(
      "sg-reply-limit",
      limit ? gettext("Text and files together may be at most %(size)s.", { size: formatSize(limit) }) : "",
    );
  }

  showStep("message");
  if (html) showHtml(session, html, shownInline);
  else $("sg-html").removeAttribute("srcdoc");
  if (info.account_public_key) {
    $("sg-claim").hidden = false;
  } else if (state.page.signup) {
    offerSignUp(state.page.signup, (publicKeyDer) => claimMessage(publicKeyDer));
  }
}

// Add the open message to the reader's account: K wrapped to the account's public key here,
// so that the inbox opens it too (the link keeps working).
async function claimMessage(publicKeyDer) {
  const { K } = state.session;
  const wrapped = await rewrapContentKey(publicKeyDer, K);
  const answer = await postJson(state.page.api.claim, { wrapped_key: b64urlEncode(wrapped) });
  return answer.added;
}

async function claimClicked() {
  const button = $("sg-claim-button");
  button.disabled = true;
  try {
    const added = await claimMessage(b64urlDecode(state.session.info.account_public_key));
    setText(
      "sg-claim-status",
      added ? gettext("Added to your account.") : gettext("This message is in your account already."),
    );
  } catch (error) {
    button.disabled = false;
    setText("sg-claim-status", describe(error));
  }
}

// The inline images the HTML refers to by cid:, keyed by content id.
function inlineReferences(html, attachments) {
  const byId = new Map();
  for (const entry of attachments) {
    if (typeof entry.content_id === "string" && entry.content_id && INLINE_TYPES.test(entry.content_type)) {
      byId.set(entry.content_id.toLowerCase(), entry);
    }
  }
  const used = new Map();
  if (!byId.size || !/cid:/i.test(html)) return used;
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const { value } of cidAttributes(doc)) {
    const entry = byId.get(value);
    if (entry && Number(entry.size) <= INLINE_IMAGE_MAX) used.set(value, entry);
  }
  return used;
}

function* cidAttributes(doc) {
  for (const element of doc.querySelectorAll("[src], [background]")) {
    for (const name of ["src", "background"]) {
      const raw = element.getAttribute(name);
      if (!raw || !/^\s*cid:/i.test(raw)) continue;
      let value = raw.trim().slice(4);
      try {
        value = decodeURIComponent(value);
      } catch {
        // keep it as written
      }
      yield { element, name, value: value.replace(/^<|>$/g, "").toLowerCase() };
    }
  }
}

function dataUrl(chunks, type) {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return `data:${type};base64,${toBase64(bytes)}`;
}

// The HTML goes into <iframe sandbox srcdoc>: no scripts, an opaque origin. Inline images
// become data: URLs (blob: URLs of this page do not load in the opaque-origin frame). Links
// get target=_blank, which the sandbox (no allow-popups) then refuses: a click does nothing,
// instead of navigating the frame away from the message.
async function showHtml(session, html, inline) {
  const urls = new Map();
  for (const [cid, entry] of inline) {
    try {
      const chunks = await fetchPart(session, entry.part);
      await checkEntry(entry, chunks);
      urls.set(cid, dataUrl(chunks, entry.content_type.toLowerCase()));
    } catch (error) {
      if (handleCommon(error)) return;
      // the image stays missing; the original message still has it
    }
  }
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const { element, name, value } of cidAttributes(doc)) {
    if (urls.has(value)) element.setAttribute(name, urls.get(value));
  }
  for (const link of doc.querySelectorAll("a[href], area[href]")) {
    link.setAttribute("target", "_blank");
    link.setAttribute("rel", "noopener noreferrer");
  }
  if (state.session === session) {
    $("sg-html").srcdoc = `<!doctype html>\n${doc.documentElement.outerHTML}`;
  }
}

function wireFile(item, entry, buttonLabel) {
  item.querySelector(".sg-file-name").textContent = entry.filename || "";
  item.querySelector(".sg-file-size").textContent = formatSize(entry.size);
  const button = item.querySelector(".sg-download");
  if (buttonLabel) button.setAttribute("aria-label", buttonLabel);
  button.addEventListener("click", () => download(item, entry));
}

async function download(item, entry) {
  const session = state.session;
  if (!session) return;
  const button = item.querySelector(".sg-download");
  const bar = item.querySelector(".sg-file-progress");
  const status = item.querySelector(".sg-file-status");
  const problem = item.querySelector(".sg-file-error");
  const name = entry.filename || "";
  let shown = -1;
  const progress = (fraction) => {
    bar.value = fraction;
    const percent = Math.floor(fraction * 4) * 25; // announce in quarters, not every chunk
    if (percent !== shown) {
      shown = percent;
      status.textContent = gettext("Downloading %(name)s: %(percent)s%%", { name, percent });
    }
  };
  button.disabled = true;
  problem.textContent = "";
  bar.hidden = false;
  bar.removeAttribute("value");
  progress(0);
  try {
    const chunks = await fetchPart(session, entry.part, progress);
    await checkEntry(entry, chunks);
    save(chunks, name, entry.content_type);
    status.textContent = gettext("%(name)s has been downloaded.", { name });
  } catch (error) {
    status.textContent = "";
    if (error instanceof ApiError || error instanceof NetworkError) {
      if (!handleCommon(error)) problem.textContent = describe(error);
    } else {
      problem.textContent = gettext(
        "%(name)s could not be opened safely. Try again, or ask the sender to send it again.",
        { name },
      );
    }
  } finally {
    button.disabled = false;
    bar.hidden = true;
  }
}

function save(chunks, filename, type) {
  const blob = new Blob(chunks, { type: SIMPLE_TYPE.test(type || "") ? type : "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = filename || "download";
  anchor.hidden = true;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// --- replying -----------------------------------------------------------------------------

function toBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

async function sealForReply(session, reply, text, files) {
  const attachments = [];
  for (const file of files) {
    attachments.push({
      filename: file.name,
      content_type: SIMPLE_TYPE.test(file.type) ? file.type : "application/octet-stream",
      data: new Uint8Array(await file.arrayBuffer()),
    });
  }
  const content = {
    format: 1,
    in_reply_to: session.info.envelope_id,
    subject: replySubject(session.manifest.headers?.subject),
    text,
    attachments,
  };
  return sealReply(b64urlDecode(reply.public_key), content);
}

function replySubject(subject) {
  const text = typeof subject === "string" ? subject.trim() : "";
  if (/^re\s*:/i.test(text)) return text;
  return text ? `Re: ${text}` : "Re:";
}

async function sendReply(event) {
  event.preventDefault();
  const session = state.session;
  const reply = session?.info?.reply;
  if (!reply || state.busy) return;
  const form = $("sg-reply-form");
  const text = $("sg-reply-text").value;
  const files = Array.from($("sg-reply-files").files || []);
  setText("sg-reply-error", "");
  setText("sg-reply-status", "");
  if (!text.trim() && files.length === 0) {
    setText("sg-reply-error", gettext("Write a message or add a file first."));
    $("sg-reply-text").focus();
    return;
  }
  const limit = Number(reply.max_size) || Number(state.page.reply_max_size) || 0;
  const tooLarge = () => {
    const size = formatSize(limit);
    setText("sg-reply-error", gettext("Your reply is too large. The limit is %(size)s.", { size }));
  };
  // base64 makes files 4/3 larger: refuse early what cannot fit, before reading it
  const estimate = files.reduce((sum, file) => sum + Math.ceil(file.size / 3) * 4, 0) + text.length;
  if (limit && estimate > limit) {
    tooLarge();
    return;
  }
  const button = $("sg-reply-send");
  button.disabled = true;
  state.busy = true;
  setText("sg-reply-status", gettext("Encrypting and sending your reply…"));
  // A retry after a lost answer sends the same sealed reply (same reply id), which the
  // server takes once; only a changed reply is sealed afresh.
  const fingerprint = JSON.stringify([text, files.map((f) => [f.name, f.size, f.lastModified])]);
  try {
    let blob = state.pendingReply?.fingerprint === fingerprint ? state.pendingReply.blob : null;
    if (!blob) {
      blob = await sealForReply(session, reply, text, files);
      if (limit && blob.byteLength > limit) {
        setText("sg-reply-status", "");
        tooLarge();
        return;
      }
      state.pendingReply = { fingerprint, blob };
    }
    await post(state.page.api.reply, blob);
    state.pendingReply = null;
    form.reset();
    setText("sg-reply-status", gettext("Your reply has been sent securely."));
  } catch (error) {
    setText("sg-reply-status", "");
    if (error instanceof ApiError || error instanceof NetworkError) {
      if (!handleCommon(error)) setText("sg-reply-error", describe(error));
    } else {
      setText("sg-reply-error", gettext("Something went wrong on our side. Try again later."));
    }
  } finally {
    state.busy = false;
    button.disabled = false;
  }
}

// --- signing out --------------------------------------------------------------------------

function forgetMessage() {
  state.session = null;
  for (const id of ["sg-subject", "sg-from", "sg-to", "sg-cc", "sg-date", "sg-text", "sg-text-alt"]) {
    setText(id, "");
  }
  $("sg-html").removeAttribute("srcdoc");
  $("sg-attachment-list").replaceChildren();
}

async function signOut(forgetDevice) {
  if (state.busy) return;
  setBusy(true);
  setError("");
  try {
    await postJson(state.page.api.logout, { forget_device: forgetDevice });
  } catch (error) {
    // 401/410: there is no session (any more), which is what signing out wants
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 410))) {
      setError(describe(error));
      setBusy(false);
      return;
    }
  }
  setBusy(false);
  forgetMessage();
  if (state.page.account) {
    await forgetKey();
    location.assign("/");
    return;
  }
  $("sg-reply-form").reset();
  state.page.session = false;
  state.page.device = false;
  showStep("signed-out");
}

// --- start --------------------------------------------------------------------------------

function keepFragmentOnLanguageLink() {
  // ?lang= reloads the page: keep the fragment so the link still opens (it is not sent).
  const link = $("sg-lang");
  if (link && location.hash) link.setAttribute("href", link.getAttribute("href") + location.hash);
}

function wire() {
  for (const button of methodButtons()) {
    button.addEventListener("click", () => chooseMethod(button.dataset.method));
  }
  $("sg-code-form").addEventListener("submit", submitCode);
  $("sg-resend").addEventListener("click", resendCode);
  $("sg-other-method").addEventListener("click", () => {
    if (!state.busy) startVerify();
  });
  $("sg-retry").addEventListener("click", () => openMessage());
  $("sg-reply-form").addEventListener("submit", sendReply);
  $("sg-logout").addEventListener("click", () => signOut(false));
  $("sg-forget").addEventListener("click", () => signOut(true));
  $("sg-claim-button").addEventListener("click", claimClicked);
}

function main() {
  const data = $("sg-page");
  if (!data) return;
  state.page = JSON.parse(data.textContent);
  setup({
    strings: state.page.strings,
    lang: document.documentElement.lang || "en",
    csrf: document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") || "",
  });
  keepFragmentOnLanguageLink();
  setText("sg-expiry", gettext("Available until %(date)s", { date: formatDate(state.page.expires_at) }));

  if (!window.isSecureContext || !window.crypto?.subtle || typeof TransformStream !== "function") {
    setText(
      "sg-fatal-text",
      gettext("Your browser cannot open secure messages. Use a recent version of Firefox, Chrome, Edge or Safari."),
    );
    showStep("fatal");
    return;
  }
  if (state.page.account) {
    wire();
    openAccountMessage();
    return;
  }
  try {
    state.link = parseLink(location.href);
  } catch {
    showStep("link");
    return;
  }
  wire();
  if (state.page.session || state.page.device) openMessage();
  else startVerify();
}

main();
