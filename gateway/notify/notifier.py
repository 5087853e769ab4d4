"""The messages Sealgate writes: notifications, receipts, codes, notices, secure replies."""

from __future__ import annotations

import email.utils
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Template

from gateway.identity.secondfactor import MIN_ACCESS_CODE_LENGTH
from gateway.locale import translations
from gateway.mail.instructions import Expiry
from gateway.mail.message import MESSAGE_ID
from gateway.notify import mime, note, templates
from gateway.notify.original import (
    Original,
    bounded_references,
    clean_text,
    parse_address,
)
from gateway.notify.settings import LANGUAGES, Settings, check_url

_CODE = re.compile(r"[0-9A-Za-z]{4,32}")
_ENVELOPE_ID = re.compile(r"[0-9a-f]{1,64}")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_MAX_FILENAME = 200


def _missing_text(missing: tuple[str, ...], reason: str, lang: str) -> str:
    """What a held recipient waits for, in ``lang``: the factors, else the rule's words."""
    if missing:
        return " / ".join(_missing(m, lang) or m for m in missing)
    return clean_text(reason, 200) or "?"


class Notifier:
    """Writes every message Sealgate sends in its own name, as bytes ready for SMTP (CRLF)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._from = parse_address(settings.from_address, "from_address")
        self._subjects: dict[str, Template] = {
            lang: templates.subject_template(source)
            for lang, source in (settings.subject or {}).items()
        }
        self._domains = sorted(
            ((key.lower().strip("."), value) for key, value in settings.domain_languages.items()),
            key=lambda item: -len(item[0]),
        )
        brand = settings.branding
        self._org = {
            "name": brand.organisation,
            "logo_url": brand.logo_url,
            "colour": brand.colour.lower(),
            "ink": templates.ink(brand.colour),
        }

    # -- language -------------------------------------------------------------

    def language(self, original: Original | None, recipient: str) -> str:
        """Configured language > the sender's Content-Language > recipient domain > default."""
        if self.settings.language in LANGUAGES:
            return self.settings.language
        if original is not None and original.content_language:
            for tag in original.content_language.split(","):
                primary = tag.strip().split("-")[0]
                if primary in LANGUAGES:
                    return primary
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        for key, lang in self._domains:  # longest suffix first
            if domain == key or domain.endswith("." + key):
                return lang
        return self.settings.default_language

    # -- messages ---------------------------------------------------------------

    def notification(
        self,
        original: Original,
        recipient: str,
        link_url: str,
        expires: datetime,
        account: bool = False,
    ) -> bytes:
        """The message that gives one protected recipient their personal link; with
        ``account``, to a recipient whose account opens it (sign-in, not a code).

        ValueError if the recipient's address cannot be written.
        """
        to = parse_address(recipient, "recipient")
        check_url(link_url, "link_url")
        lang = self.language(original, recipient)
        reply_to = self._reply_to(original.sender)
        context = self._context(
            lang,
            sender=original.sender,
            sender_name=original.sender_name or "",
            subject=original.subject or "",
            recipient=recipient,
            link_url=link_url,
            portal_host=urlsplit(link_url).hostname or "",
            expires=templates.when(expires, lang),
            reply="none" if reply_to is None else self.settings.reply_to,
            account=account,
            personal_note=self._note(original, lang),
        )
        rendered = templates.render("notification", lang, context, self._subjects.get(lang))
        name = f"{original.shown} via {self.settings.branding.organisation}"
        return self._write(
            lang,
            rendered,
            sender=self._named(name),
            to=to,
            reply_to=reply_to,
            original=original,
        )

    def receipt(
        self,
        original: Original,
        envelope_id: str,
        recipients: Sequence[str],
        revoke_url: str,
        expires: datetime,
        *,
        weak_access_code: bool = False,
        expiry: Expiry | None = None,
    ) -> bytes:
        """To the sender: the message went out securely; who got it, until when, how to revoke;
        with ``weak_access_code``, that the access code given was too weak to be used; and
        with an ``expiry`` that was adjusted, why the message is readable for another time
        than the sender asked (X-Sealgate-Expires)."""
        to = parse_address(original.sender, "sender")
        check_url(revoke_url, "revoke_url")
        if not recipients:
            raise ValueError("recipients: at least one")
        lang = self.language(original, original.sender)
        context = self._context(
            lang,
            envelope_id=_envelope_id(envelope_id),
            recipients=[clean_text(r, 320) or "?" for r in recipients],
            revoke_url=revoke_url,
            expires=templates.when(expires, lang),
            weak_access_code=weak_access_code,
            min_access_code=MIN_ACCESS_CODE_LENGTH,
            expiry_adjusted=expiry.adjusted if expiry is not None else "",
            expiry_days=expiry.limit_days if expiry is not None else 0,
        )
        rendered = templates.render("receipt", lang, context)
        return self._write(lang, rendered, to=to, reply_to=self._fixed(), original=original)

    def code_email(
        self,
        recipient: str,
        code: str,
        minutes: int,
        sender: str,
        language: str,
        purpose: str = "read",
    ) -> bytes:
        """A verification code, valid ``minutes`` minutes; deliberately without a link.
        ``purpose``: "read" a message (from ``sender``), or "reset" an account's password."""
        to = parse_address(recipient, "recipient")
        if not _CODE.fullmatch(code):
            raise ValueError("code: expected 4 to 32 letters or digits")
        lang = _language(language)
        reply_to = self._reply_to(sender)
        context = self._context(
            lang,
            code=code,
            minutes=max(1, int(minutes)),
            sender=clean_text(sender, 320) or "",
            purpose=purpose,
        )
        rendered = templates.render("code", lang, context)
        return self._write(lang, rendered, to=to, reply_to=reply_to)

    def read_notice(
        self, original_sender: str, reader: str, envelope_id: str, when: datetime, language: str
    ) -> bytes:
        """To the sender: a reader opened the protected message."""
        to = parse_address(original_sender, "sender")
        lang = _language(language)
        context = self._context(
            lang,
            reader=clean_text(reader, 320) or "?",
            envelope_id=_envelope_id(envelope_id),
            when=templates.when(when, lang),
        )
        rendered = templates.render("read", lang, context)
        return self._write(lang, rendered, to=to, reply_to=self._fixed())

    def held_notice(
        self,
        original: Original,
        recipients: Sequence[tuple[str, tuple[str, ...], str]],
        release_url: str,
        language: str,
    ) -> bytes:
        """To the sender: what is missing per held recipient, and where to release or cancel.

        ``recipients``: (address, missing factors, reason). Missing factors
        ("phone", "access-code") are said in the message's language; a recipient
        a rule holds is shown with the rule's words.
        """
        to = parse_address(original.sender, "sender")
        check_url(release_url, "release_url")
        if not recipients:
            raise ValueError("recipients: at least one")
        lang = _language(language)
        held = [
            {
                "address": clean_text(address, 320) or "?",
                "missing": _missing_text(missing, reason, lang),
            }
            for address, missing, reason in recipients
        ]
        context = self._context(lang, recipients=held, release_url=release_url)
        rendered = templates.render("held", lang, context)
        return self._write(lang, rendered, to=to, reply_to=self._fixed(), original=original)

    def secure_reply(
        self,
        *,
        to: str,
        reader: str,
        subject: str,
        text: str,
        attachments: Sequence[tuple[str, str, bytes]],
        in_reply_to: str | None,
        references: Sequence[str],
        envelope_id: str,
        message_id: str,
        language: str,
    ) -> bytes:
        """A reader's secure reply, delivered as a normal message into the sender's mailbox."""
        recipient = parse_address(to, "to")
        author = parse_address(reader, "reader")
        if not MESSAGE_ID.fullmatch(message_id):
            raise ValueError("message_id: expected <id@host>")
        lang = _language(language)
        title = clean_text(subject, templates.MAX_SUBJECT - 4) or ""
        if not title.lower().startswith("re:"):
            title = f"Re: {title}" if title else "Re:"
        footer = templates.environment(lang).get_template("reply.txt")
        body = _plain(text) + "\n" + footer.render(self._context(lang, reader=author.addr_spec))
        name = f"{author.addr_spec} (secure reply)"
        policy = _policy(self._from, recipient, author)
        msg = EmailMessage(policy=policy)
        msg["From"] = self._named(name)
        msg["To"] = recipient
        msg["Reply-To"] = author
        msg["Subject"] = title
        msg["Date"] = email.utils.format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = message_id
        parent = in_reply_to if in_reply_to and MESSAGE_ID.fullmatch(in_reply_to) else None
        thread = bounded_references([*references, *([parent] if parent else [])])
        if parent:
            msg["In-Reply-To"] = parent
        if thread:
            msg["References"] = " ".join(thread)
        msg["X-Sealgate-Secure-Reply"] = _envelope_id(envelope_id)
        msg.set_content(body, charset="utf-8", cte="quoted-printable")
        for filename, content_type, data in attachments:
            maintype, subtype = _content_type(content_type)
            msg.add_attachment(
                data, maintype=maintype, subtype=subtype, filename=_filename(filename)
            )
        msg["Content-Language"] = lang  # after the body: setting content clears Content-*
        return msg.as_bytes()

    # -- helpers ----------------------------------------------------------------

    def _note(self, original: Original, lang: str) -> str | None:
        """The sender's note as the notification shows it, or None (none, or notes off)."""
        if not self.settings.allow_note:
            return None
        # Translators: takes the place of a link in the sender's note (links are not shown).
        removed = translations(lang).gettext("[link removed]")
        return note.shown(original.note, self.settings.max_note_length, removed)

    def _context(self, lang: str, **values: Any) -> dict[str, Any]:
        return {
            "lang": lang,
            "org": self._org,
            "organisation": self.settings.branding.organisation,
            **values,
        }

    def _named(self, name: str) -> Address:
        """The From address with ``name`` (cleaned) as its display name."""
        shown = clean_text(name, 200) or ""
        return Address(display_name=shown, username=self._from.username, domain=self._from.domain)

    def _fixed(self) -> Address | None:
        """Reply-To for a message to the sender (receipt, notices): only a configured address.

        They come from the organisation, not from a person; "sender" would point
        the sender at themselves.
        """
        if self.settings.reply_to in ("sender", "none"):
            return None
        return parse_address(self.settings.reply_to, "reply_to")

    def _reply_to(self, sender: str) -> Address | None:
        """Reply-To for a message to a recipient: the sender's address, a fixed one, or none."""
        if self.settings.reply_to == "none":
            return None
        if self.settings.reply_to != "sender":
            return parse_address(self.settings.reply_to, "reply_to")
        try:
            return parse_address(sender, "sender")
        except ValueError:  # the null sender, or one that cannot be written
            return None

    def _write(
        self,
        lang: str,
        rendered: templates.Rendered,
        *,
        to: Address,
        sender: Address | None = None,
        reply_to: Address | None = None,
        original: Original | None = None,
    ) -> bytes:
        """A multipart/alternative message (text, then HTML) with the usual header fields.

        Without ``sender`` it comes from the organisation (its name as display name).
        """
        if sender is None:
            sender = self._named(self.settings.branding.organisation)
        utf8 = mime.needs_utf8(sender, to, reply_to)
        fields = [("From", mime.address(sender, utf8)), ("To", mime.address(to, utf8))]
        if reply_to is not None:
            fields.append(("Reply-To", mime.address(reply_to, utf8)))
        fields += [
            ("Subject", mime.unstructured("Subject", rendered.subject, utf8)),
            ("Date", email.utils.format_datetime(datetime.now().astimezone())),
            ("Message-ID", email.utils.make_msgid("sealgate", domain=self.settings.hostname)),
        ]
        if original is not None:
            if original.message_id:
                fields.append(("In-Reply-To", original.message_id))
            if original.thread:
                fields.append(("References", mime.ids(original.thread)))
        fields += [("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All")]
        return mime.alternative(fields, rendered.text, rendered.html, lang)


def _policy(*addresses: Address | None) -> Any:
    """SMTP, or SMTPUTF8 when an address has non-ASCII characters (RFC 6532)."""
    ascii_only = all(a.addr_spec.isascii() for a in addresses if a is not None)
    return SMTP if ascii_only else SMTPUTF8


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


def _missing(key: str, lang: str) -> str | None:
    """What a held recipient lacks, in words, for the keys the policy uses; else None."""
    words = translations(lang)
    if key == "phone":
        return words.gettext("a mobile phone number")
    if key == "access-code":
        return words.gettext(
            "an access code of at least %(length)s characters (not a run like 12345678)"
        ) % {"length": MIN_ACCESS_CODE_LENGTH}
    return None


def _envelope_id(value: str) -> str:
    if not _ENVELOPE_ID.fullmatch(value):
        raise ValueError("envelope_id: expected lower-case hex")
    return value


def _plain(text: str) -> str:
    """The reader's text: newlines normalised, other control characters dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    return kept.rstrip() + "\n"


def _content_type(value: str) -> tuple[str, str]:
    value = value.split(";")[0].strip().lower()
    if not _CONTENT_TYPE.fullmatch(value) or value.startswith(("multipart/", "message/")):
        return "application", "octet-stream"
    maintype, _, subtype = value.partition("/")
    return maintype, subtype


def _filename(name: str) -> str:
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    kept = kept.replace("/", "_").replace("\\", "_").strip().strip(".").strip()
    return kept[:_MAX_FILENAME] or "attachment"
