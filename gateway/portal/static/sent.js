// The sender's page (docs/senders.md): "Send the notification again" for a recipient who lost
// it. The new link is made here: K comes from the sender's own copy, opened with the account's
// key kept in this browser (keyring.js), and is wrapped under a fresh link for that recipient;
// the server swaps the recipient's link for it and sends the notification. The old link stops
// working. Without JavaScript, or without the key in this browser, the button stays hidden.

import { unwrapAccountContentKey } from "./account.js";
import { recallKey } from "./keyring.js";
import { $, ApiError, gettext, postJson, setText, setup } from "./pagekit.js";
import { b64urlDecode, b64urlEncode, wrapForLink } from "./sealed.js";

const page = JSON.parse($("sg-page").textContent);

function report(error, notice) {
  setText("sg-error", error);
  setText("sg-notice", notice);
  $("sg-notice").hidden = !notice;
}

async function resend(button) {
  button.disabled = true;
  report("", "");
  try {
    const kept = await recallKey();
    const copy = await postJson(page.api.open, {});
    const K = await unwrapAccountContentKey(kept.privateKey, b64urlDecode(copy.wrapped_key));
    const linkId = crypto.getRandomValues(new Uint8Array(16));
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const readerId = button.dataset.reader;
    const wrapped = await wrapForLink({ linkId, secret, envelopeId: page.envelope_id, readerId, K });
    K.fill(0);
    await postJson(page.api.resend, {
      reader_id: readerId,
      link_id: b64urlEncode(linkId),
      secret: b64urlEncode(secret),
      wrapped_key: b64urlEncode(wrapped),
    });
    secret.fill(0);
    report("", gettext("A new notification is on its way to %(address)s. The old link no longer works.",
                       { address: button.dataset.address }));
  } catch (error) {
    button.disabled = false;
    report(error instanceof ApiError && error.status === 503
      ? gettext("The notification could not be sent now. The old link still works. Try again later.")
      : gettext("Something went wrong on our side. Try again later."), "");
  }
}

async function main() {
  setup({
    strings: page.strings,
    lang: document.documentElement.lang || "en",
    csrf: document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") || "",
  });
  if (!(await recallKey())) return; // the key is not in this browser: nothing to wrap with
  for (const button of document.querySelectorAll(".sg-resend")) {
    button.hidden = false;
    button.addEventListener("click", () => resend(button));
  }
}

main();
