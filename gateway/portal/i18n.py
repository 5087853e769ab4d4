"""The portal's words, in English and Dutch.

``strings(lang)`` is every string the templates use (``t`` in a template);
``page_strings(lang)`` is the part portal.js needs, which the app puts into
``page["strings"]``. Placeholders in braces (``{masked}``, ``{days}``) are
filled in by the template or by portal.js, never by ``str.format`` on user data.
``choose()`` picks the language: ``?lang=``, then the cookie, then the
browser's Accept-Language, then the default.
"""

from __future__ import annotations

LANGUAGES = ("en", "nl")

# The keys portal.js reads from page["strings"].
JS_KEYS = (
    "access_code_hint",
    "access_code_label",
    "available_until",
    "code_label",
    "code_missing",
    "code_resent",
    "code_sent_email",
    "code_sent_sms",
    "code_valid",
    "decrypting",
    "download_failed",
    "download_named",
    "download_progress",
    "download_ready",
    "error_bad_request",
    "error_cannot_open",
    "error_closed",
    "error_csrf",
    "error_locked",
    "error_method",
    "error_network",
    "error_no_attempts",
    "error_server",
    "error_too_large",
    "error_unsupported",
    "error_verify",
    "error_wrong_code",
    "locked_wait",
    "no_subject",
    "opening",
    "reply_empty",
    "reply_limit",
    "reply_sending",
    "reply_sent",
    "reply_too_large",
    "sending_code",
    "verifying",
)

_EN: dict[str, str] = {
    # base.html
    "site_title": "Secure message",
    "skip_link": "Skip to content",
    "switch_language": "Nederlands",
    "switch_language_label": "Lees deze pagina in het Nederlands",
    "footer": "Secure messages are decrypted in your own browser. "
    "Nobody else can read them on the way.",
    # message.html
    "noscript": "This secure message is decrypted in your browser, so JavaScript is needed. "
    "Turn on JavaScript and reload this page.",
    "loading": "Loading the secure message…",
    "intro": "{sender} sent you a secure message.",
    "method_heading": "Confirm that it is you",
    "method_text": "To open the message, we first check that you are {recipient}. "
    "How would you like to get a code?",
    "method_email": "Email me a code at {masked}",
    "method_sms": "Text me a code at {phone}",
    "method_access_code": "I have an access code from the sender",
    "method_no_link_note": "No code is sent until you choose.",
    "code_heading": "Enter your code",
    "code_label": "Code",
    "access_code_label": "Access code",
    "remember_device": "Remember this device for {days} days",
    "remember_hint": "Only tick this on a device that you do not share with others.",
    "code_submit": "Open message",
    "code_resend": "Send a new code",
    "code_other_method": "Choose another way",
    "opening_heading": "Opening the message",
    "retry": "Try again",
    "label_from": "From",
    "label_to": "To",
    "label_cc": "Cc",
    "label_date": "Date",
    "html_frame_title": "Message content",
    "html_links_note": "Links in the message cannot be clicked here. Copy a link if you trust it.",
    "text_version": "Plain text version",
    "problems_note": "Some parts of this message cannot be shown here. "
    "Download the original message to see everything.",
    "attachments_heading": "Attachments",
    "download": "Download",
    "original_heading": "Original message",
    "original_text": "The complete message as it was sent, to open in your email program.",
    "original_download": "Download original (.eml)",
    "reply_heading": "Reply securely",
    "reply_intro": "Your reply is encrypted in your browser and sent to {sender}.",
    "reply_text_label": "Your reply",
    "reply_files_label": "Attach files (optional)",
    "reply_send": "Send reply",
    "signout_heading": "When you are done",
    "signout": "Sign out",
    "forget_device": "Sign out and forget this device",
    "signed_out_heading": "You have signed out",
    "signed_out_text": "To read the message again, open the link in the email.",
    "link_error_heading": "This link is incomplete",
    "fatal_heading": "The message cannot be opened",
    # JavaScript (page["strings"])
    "access_code_hint": "Enter the access code that the sender gave you.",
    "available_until": "Available until {date}",
    "code_missing": "Enter the code first.",
    "code_resent": "We sent a new code.",
    "code_sent_email": "Enter the {length}-digit code we sent to {masked}.",
    "code_sent_sms": "Enter the {length}-digit code we sent by text message to {masked}.",
    "code_valid": "The code is valid for {minutes} minutes.",
    "decrypting": "Decrypting the message…",
    "download_failed": "{name} could not be opened safely. "
    "Try again, or ask the sender to send it again.",
    "download_named": "Download {name}",
    "download_progress": "Downloading {name}: {percent}%",
    "download_ready": "{name} has been downloaded.",
    "error_bad_request": "Something in the request was not accepted. "
    "Reload the page and try again.",
    "error_cannot_open": "This message could not be opened with this link. "
    "Open the link from the email again. If that does not help, "
    "ask the sender to send the message again.",
    "error_closed": "Too many wrong access codes were entered for this message, so the "
    "access code no longer works here. Confirm another way, such as a code by email.",
    "error_csrf": "This page has expired. Reload the page and try again.",
    "error_link": "This link is incomplete — open it from the email again.",
    "error_locked": "Too many attempts. Wait {time} and try again.",
    "error_method": "This way of confirming is not available to you. Choose another way.",
    "error_network": "There is no connection to the server. "
    "Check your internet connection and try again.",
    "error_no_attempts": "That code is not correct, and there are no attempts left. "
    "Ask for a new code.",
    "error_server": "Something went wrong on our side. Try again later.",
    "error_too_large": "This is too large to send.",
    "error_unsupported": "Your browser cannot open secure messages. "
    "Use a recent version of Firefox, Chrome, Edge or Safari.",
    "error_verify": "Please confirm again that it is you.",
    "error_wrong_code": "That code is not correct. Attempts left: {attempts}.",
    "locked_wait": "You can try again in {time}.",
    "no_subject": "(no subject)",
    "opening": "Opening the message…",
    "reply_empty": "Write a message or add a file first.",
    "reply_limit": "Text and files together may be at most {size}.",
    "reply_sending": "Encrypting and sending your reply…",
    "reply_sent": "Your reply has been sent securely.",
    "reply_too_large": "Your reply is too large. The limit is {size}.",
    "sending_code": "Sending the code…",
    "verifying": "Checking the code…",
    # gone.html
    "gone_expired_heading": "This message has expired",
    "gone_expired_text": "Secure messages can be read for a limited time only, "
    "and this one is no longer available.",
    "gone_revoked_heading": "This message was withdrawn",
    "gone_revoked_text": "The sender has withdrawn this message. It can no longer be read.",
    "gone_unknown_heading": "This message is not available",
    "gone_unknown_text": "We cannot find this message. The link may be wrong, "
    "or the message may have been removed.",
    "gone_contact": "If you still need the message, contact {sender}.",
    "gone_contact_unknown": "If you still need the message, contact the person who sent it.",
    # error.html
    "error_status": "Error {status}",
    "error_not_found_heading": "Page not found",
    "error_not_found_text": "Check the address, or open the link from the email again.",
    "error_too_large_heading": "Too large",
    "error_too_large_text": "What was sent to this page is too large.",
    "error_bad_request_heading": "This request was not understood",
    "error_bad_request_text": "Go back and try again.",
    "error_forbidden_heading": "Not allowed",
    "error_forbidden_text": "This page cannot be used like this. Reload the page and try again.",
    "error_server_heading": "Something went wrong",
    "error_server_text": "Something went wrong on our side. Try again later.",
    # revoke.html
    "revoke_title": "Withdraw a secure message",
    "revoke_text": "After you withdraw it, nobody can open this message any more. "
    "This cannot be undone.",
    "revoke_recipients": "Sent to",
    "revoke_reference": "Message reference",
    "revoke_button": "Withdraw message",
    "revoke_done_heading": "The message has been withdrawn",
    "revoke_done_text": "The recipients can no longer open it.",
    "revoke_gone_heading": "This message is no longer available",
    "revoke_gone_text": "It has already expired or been withdrawn.",
    # release.html
    "release_title": "Release a held message",
    "release_text": "Your secure message has been held for these recipients, "
    "because something needed to send them a code is missing.",
    "release_missing": "Missing: {items}",
    "missing_phone": "mobile phone number",
    "release_phone_label": "Mobile phone number for {address}",
    "release_phone_hint": "International format, for example +31 6 12345678.",
    "release_button": "Send the message",
    "release_cancel": "Do not send it to these recipients",
    "release_done_heading": "Thank you",
    "release_done_text": "Your choice has been saved.",
    "release_gone_heading": "This message is no longer held",
    "release_gone_text": "It has already been sent, cancelled or expired.",
}

_NL: dict[str, str] = {
    # base.html
    "site_title": "Beveiligd bericht",
    "skip_link": "Naar de inhoud",
    "switch_language": "English",
    "switch_language_label": "Read this page in English",
    "footer": "Beveiligde berichten worden in uw eigen browser ontsleuteld. "
    "Niemand anders kan ze onderweg lezen.",
    # message.html
    "noscript": "Dit beveiligde bericht wordt in uw browser ontsleuteld, daarvoor is "
    "JavaScript nodig. Zet JavaScript aan en laad deze pagina opnieuw.",
    "loading": "Het beveiligde bericht wordt geladen…",
    "intro": "{sender} heeft u een beveiligd bericht gestuurd.",
    "method_heading": "Bevestig dat u het bent",
    "method_text": "Om het bericht te openen, controleren we eerst of u {recipient} bent. "
    "Hoe wilt u een code ontvangen?",
    "method_email": "Mail mij een code op {masked}",
    "method_sms": "Sms mij een code op {phone}",
    "method_access_code": "Ik heb een toegangscode van de afzender",
    "method_no_link_note": "Er wordt pas een code verstuurd als u kiest.",
    "code_heading": "Vul uw code in",
    "code_label": "Code",
    "access_code_label": "Toegangscode",
    "remember_device": "Dit apparaat {days} dagen onthouden",
    "remember_hint": "Vink dit alleen aan op een apparaat dat u niet met anderen deelt.",
    "code_submit": "Bericht openen",
    "code_resend": "Stuur een nieuwe code",
    "code_other_method": "Kies een andere manier",
    "opening_heading": "Het bericht wordt geopend",
    "retry": "Opnieuw proberen",
    "label_from": "Van",
    "label_to": "Aan",
    "label_cc": "Cc",
    "label_date": "Datum",
    "html_frame_title": "Inhoud van het bericht",
    "html_links_note": "Links in het bericht kunt u hier niet aanklikken. "
    "Kopieer een link als u die vertrouwt.",
    "text_version": "Versie zonder opmaak",
    "problems_note": "Sommige delen van dit bericht kunnen hier niet worden getoond. "
    "Download het originele bericht om alles te zien.",
    "attachments_heading": "Bijlagen",
    "download": "Downloaden",
    "original_heading": "Origineel bericht",
    "original_text": "Het volledige bericht zoals het is verstuurd, om te openen in uw "
    "e-mailprogramma.",
    "original_download": "Origineel downloaden (.eml)",
    "reply_heading": "Beveiligd antwoorden",
    "reply_intro": "Uw antwoord wordt in uw browser versleuteld en naar {sender} gestuurd.",
    "reply_text_label": "Uw antwoord",
    "reply_files_label": "Bestanden toevoegen (niet verplicht)",
    "reply_send": "Antwoord versturen",
    "signout_heading": "Als u klaar bent",
    "signout": "Afmelden",
    "forget_device": "Afmelden en dit apparaat vergeten",
    "signed_out_heading": "U bent afgemeld",
    "signed_out_text": "Open de link in de e-mail om het bericht opnieuw te lezen.",
    "link_error_heading": "Deze link is niet compleet",
    "fatal_heading": "Het bericht kan niet worden geopend",
    # JavaScript (page["strings"])
    "access_code_hint": "Vul de toegangscode in die u van de afzender hebt gekregen.",
    "available_until": "Beschikbaar tot {date}",
    "code_missing": "Vul eerst de code in.",
    "code_resent": "We hebben een nieuwe code gestuurd.",
    "code_sent_email": "Vul de {length}-cijferige code in die we naar {masked} hebben gestuurd.",
    "code_sent_sms": "Vul de {length}-cijferige code in die we per sms naar {masked} "
    "hebben gestuurd.",
    "code_valid": "De code is {minutes} minuten geldig.",
    "decrypting": "Het bericht wordt ontsleuteld…",
    "download_failed": "{name} kon niet veilig worden geopend. "
    "Probeer het opnieuw, of vraag de afzender om het opnieuw te sturen.",
    "download_named": "{name} downloaden",
    "download_progress": "{name} wordt gedownload: {percent}%",
    "download_ready": "{name} is gedownload.",
    "error_bad_request": "Iets in het verzoek werd niet geaccepteerd. "
    "Laad de pagina opnieuw en probeer het nog eens.",
    "error_cannot_open": "Dit bericht kon met deze link niet worden geopend. "
    "Open de link uit de e-mail opnieuw. Helpt dat niet, vraag de afzender dan "
    "om het bericht opnieuw te sturen.",
    "error_closed": "Er zijn te veel verkeerde toegangscodes ingevuld voor dit bericht; "
    "de toegangscode werkt hier niet meer. Bevestig op een andere manier, bijvoorbeeld "
    "met een code per e-mail.",
    "error_csrf": "Deze pagina is verlopen. Laad de pagina opnieuw en probeer het nog eens.",
    "error_link": "Deze link is niet compleet — open hem opnieuw vanuit de e-mail.",
    "error_locked": "Te veel pogingen. Wacht {time} en probeer het dan opnieuw.",
    "error_method": "Deze manier van bevestigen is voor u niet beschikbaar. "
    "Kies een andere manier.",
    "error_network": "Er is geen verbinding met de server. "
    "Controleer uw internetverbinding en probeer het opnieuw.",
    "error_no_attempts": "Die code klopt niet en er zijn geen pogingen meer over. "
    "Vraag een nieuwe code aan.",
    "error_server": "Er ging bij ons iets mis. Probeer het later opnieuw.",
    "error_too_large": "Dit is te groot om te versturen.",
    "error_unsupported": "Uw browser kan geen beveiligde berichten openen. "
    "Gebruik een recente versie van Firefox, Chrome, Edge of Safari.",
    "error_verify": "Bevestig opnieuw dat u het bent.",
    "error_wrong_code": "Die code klopt niet. Pogingen over: {attempts}.",
    "locked_wait": "U kunt het over {time} opnieuw proberen.",
    "no_subject": "(geen onderwerp)",
    "opening": "Het bericht wordt geopend…",
    "reply_empty": "Schrijf eerst een bericht of voeg een bestand toe.",
    "reply_limit": "Tekst en bestanden samen mogen hoogstens {size} zijn.",
    "reply_sending": "Uw antwoord wordt versleuteld en verstuurd…",
    "reply_sent": "Uw antwoord is beveiligd verstuurd.",
    "reply_too_large": "Uw antwoord is te groot. De grens is {size}.",
    "sending_code": "De code wordt verstuurd…",
    "verifying": "De code wordt gecontroleerd…",
    # gone.html
    "gone_expired_heading": "Dit bericht is verlopen",
    "gone_expired_text": "Beveiligde berichten zijn maar een beperkte tijd te lezen, "
    "en dit bericht is niet meer beschikbaar.",
    "gone_revoked_heading": "Dit bericht is ingetrokken",
    "gone_revoked_text": "De afzender heeft dit bericht ingetrokken. Het is niet meer te lezen.",
    "gone_unknown_heading": "Dit bericht is niet beschikbaar",
    "gone_unknown_text": "We kunnen dit bericht niet vinden. De link klopt misschien niet, "
    "of het bericht is verwijderd.",
    "gone_contact": "Hebt u het bericht nog nodig? Neem dan contact op met {sender}.",
    "gone_contact_unknown": "Hebt u het bericht nog nodig? Neem dan contact op met de afzender.",
    # error.html
    "error_status": "Fout {status}",
    "error_not_found_heading": "Pagina niet gevonden",
    "error_not_found_text": "Controleer het adres, of open de link uit de e-mail opnieuw.",
    "error_too_large_heading": "Te groot",
    "error_too_large_text": "Wat naar deze pagina is gestuurd, is te groot.",
    "error_bad_request_heading": "Dit verzoek werd niet begrepen",
    "error_bad_request_text": "Ga terug en probeer het opnieuw.",
    "error_forbidden_heading": "Niet toegestaan",
    "error_forbidden_text": "Deze pagina kan zo niet worden gebruikt. "
    "Laad de pagina opnieuw en probeer het nog eens.",
    "error_server_heading": "Er ging iets mis",
    "error_server_text": "Er ging bij ons iets mis. Probeer het later opnieuw.",
    # revoke.html
    "revoke_title": "Een beveiligd bericht intrekken",
    "revoke_text": "Als u het intrekt, kan niemand dit bericht nog openen. "
    "Dit kunt u niet ongedaan maken.",
    "revoke_recipients": "Verstuurd aan",
    "revoke_reference": "Kenmerk van het bericht",
    "revoke_button": "Bericht intrekken",
    "revoke_done_heading": "Het bericht is ingetrokken",
    "revoke_done_text": "De ontvangers kunnen het niet meer openen.",
    "revoke_gone_heading": "Dit bericht is niet meer beschikbaar",
    "revoke_gone_text": "Het is al verlopen of ingetrokken.",
    # release.html
    "release_title": "Een vastgehouden bericht vrijgeven",
    "release_text": "Uw beveiligde bericht is voor deze ontvangers vastgehouden, "
    "omdat er iets ontbreekt om hun een code te sturen.",
    "release_missing": "Ontbreekt: {items}",
    "missing_phone": "mobiel telefoonnummer",
    "release_phone_label": "Mobiel nummer van {address}",
    "release_phone_hint": "Internationaal formaat, bijvoorbeeld +31 6 12345678.",
    "release_button": "Bericht versturen",
    "release_cancel": "Niet naar deze ontvangers sturen",
    "release_done_heading": "Dank u",
    "release_done_text": "Uw keuze is opgeslagen.",
    "release_gone_heading": "Dit bericht wordt niet meer vastgehouden",
    "release_gone_text": "Het is al verstuurd, geannuleerd of verlopen.",
}

_STRINGS: dict[str, dict[str, str]] = {"en": _EN, "nl": _NL}


def strings(lang: str) -> dict[str, str]:
    """Every UI string in ``lang`` (English for a language we do not have)."""
    return dict(_STRINGS.get(lang, _EN))


def page_strings(lang: str) -> dict[str, str]:
    """The strings portal.js needs: what goes into ``page["strings"]``."""
    table = _STRINGS.get(lang, _EN)
    return {key: table[key] for key in JS_KEYS}


def _from_accept_language(header: str) -> str | None:
    """The first of LANGUAGES the browser asks for, by q-value, RFC 9110 §12.5.4."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:50]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 < quality <= 1.0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else None


def choose(
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    default: str = "en",
) -> str:
    """The page language: ``?lang=`` > cookie > Accept-Language > ``default``."""
    for explicit in (query, cookie):
        if explicit is not None and explicit.strip().lower() in LANGUAGES:
            return explicit.strip().lower()
    if accept_language:
        wanted = _from_accept_language(accept_language)
        if wanted is not None:
            return wanted
    return default if default in LANGUAGES else LANGUAGES[0]
